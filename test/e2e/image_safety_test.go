package e2e

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kumocloud/kumo/api"
	"github.com/kumocloud/kumo/client"
)

// TestImageSafety, against a real server: disks that name host files
// (external data file, backing file, json: backing; as a vm-disk or as a
// vm-kernel image's disk.qcow2) are refused with a 400 that says why; an
// archive that expands past --max-image-size is refused though it is
// small; an image shows its unpacked and virtual sizes; a share is usable
// only once the receiving project accepts it (kumo image share).
func TestImageSafety(t *testing.T) {
	if _, err := exec.LookPath("qemu-img"); err != nil {
		t.Skip("qemu-img is not installed (make test installs qemu-utils)")
	}
	s := startServer(t, "--max-image-size", "40MiB")
	root := []string{"KUMO_SOCKET=" + s.socket}
	c := client.Socket(s.socket)
	ctx := context.Background()
	dir := t.TempDir()
	host := filepath.Join(dir, "host-file")
	os.WriteFile(host, []byte("host secret"), 0o600)
	qcow2 := func(name string, opts ...string) []byte {
		p := filepath.Join(dir, name)
		if out, err := exec.Command("qemu-img", append(append([]string{"create", "-q", "-f", "qcow2"}, opts...), p, "64M")...).CombinedOutput(); err != nil {
			t.Fatalf("qemu-img: %v %s", err, out)
		}
		b, _ := os.ReadFile(p)
		return b
	}
	targz := func(members map[string][]byte) []byte {
		var buf bytes.Buffer
		zw := gzip.NewWriter(&buf)
		tw := tar.NewWriter(zw)
		for _, n := range []string{"vmlinuz", "disk.qcow2", "zeros"} {
			if b, ok := members[n]; ok {
				tw.WriteHeader(&tar.Header{Name: n, Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(b))})
				tw.Write(b)
			}
		}
		tw.Close()
		zw.Close()
		return buf.Bytes()
	}
	dataFile := qcow2("data.qcow2", "-o", "data_file="+filepath.Join(dir, "df")+",data_file_raw=on")
	backing := qcow2("backing.qcow2", "-u", "-F", "raw", "-b", host)
	jsonBacking := qcow2("json.qcow2", "-u", "-F", "raw", "-b", `json:{"driver":"raw","file":{"driver":"file","filename":"`+host+`"}}`)
	kernel := func(disk []byte) []byte { return targz(map[string][]byte{"vmlinuz": []byte("k"), "disk.qcow2": disk}) }
	for _, tc := range []struct {
		name, kind, format string
		body               []byte
		want               string
	}{
		{"data-file", api.KindVMDisk, "qcow2", dataFile, "external data file"},
		{"backing", api.KindVMDisk, "qcow2", backing, "backing file"},
		{"json-backing", api.KindVMDisk, "qcow2", jsonBacking, "backing file"},
		{"qcow2-as-raw", api.KindVMDisk, "raw", backing, "the disk is qcow2, not raw"},
		{"kernel-data-file", api.KindVMKernel, "tar.gz", kernel(dataFile), "disk.qcow2: the disk has an external data file"},
		{"kernel-backing", api.KindVMKernel, "tar.gz", kernel(backing), "disk.qcow2: the disk has a backing file"},
		{"kernel-json-backing", api.KindVMKernel, "tar.gz", kernel(jsonBacking), "disk.qcow2: the disk has a backing file"},
		{"bomb", api.KindContainerRootfs, "tar.gz", targz(map[string][]byte{"zeros": make([]byte, 64<<20)}), "larger than 40 MiB, the largest image this cloud takes"},
	} {
		if _, err := c.CreateImage(ctx, "default", api.ImagesPost{Name: tc.name, Kind: tc.kind, Format: tc.format}); err != nil {
			t.Fatal(err)
		}
		_, err := c.UploadImage(ctx, "default", tc.name, bytes.NewReader(tc.body), int64(len(tc.body)))
		if client.StatusOf(err) != 400 || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %d %v, want 400 %q", tc.name, client.StatusOf(err), err, tc.want)
		}
	}
	if blobs, _ := os.ReadDir(filepath.Join(s.dir, "images", "blobs")); len(blobs) != 0 {
		t.Errorf("%d blobs left by refused uploads", len(blobs))
	}

	// A good disk: its sizes are shown.
	good := filepath.Join(dir, "good.qcow2")
	exec.Command("qemu-img", "create", "-q", "-f", "qcow2", good, "64M").Run()
	var img api.Image
	json.Unmarshal([]byte(must(t, root, "", "image", "import", good, "--name", "good", "-o", "json")), &img)
	if st, _ := os.Stat(good); img.UnpackedSize != st.Size() || img.VirtualSize != 64<<20 {
		t.Errorf("the disk's sizes: unpacked %d, virtual %d", img.UnpackedSize, img.VirtualSize)
	}
	if out := must(t, root, "", "image", "show", "good"); !strings.Contains(out, "unpacked_size:") || !strings.Contains(out, "virtual_size: 67108864") {
		t.Errorf("image show:\n%s", out)
	}

	// Shares: offered, listed as an offer, usable once accepted.
	must(t, root, "", "project", "create", "other")
	must(t, root, "", "image", "set", "good", "--visibility", "shared", "--share", "other")
	if out := must(t, root, "", "image", "list", "-p", "other"); strings.Contains(out, "default/good") {
		t.Errorf("a pending share is listed as usable:\n%s", out)
	}
	if out := must(t, root, "", "image", "share", "list", "-p", "other"); !strings.Contains(out, "default/good") || !strings.Contains(out, "pending") {
		t.Errorf("image share list:\n%s", out)
	}
	if r := kumo(t, root, "", "image", "share", "accept", "good", "-p", "other"); r.code == 0 || !strings.Contains(r.err, "OWNER/NAME") {
		t.Errorf("accept without the owner: exit %d %s", r.code, r.err)
	}
	must(t, root, "", "image", "share", "accept", "default/good", "-p", "other")
	if out := must(t, root, "", "image", "list", "-p", "other"); !strings.Contains(out, "default/good") {
		t.Errorf("an accepted share is not listed:\n%s", out)
	}
	if out := must(t, root, "", "image", "show", "good", "-p", "other", "-o", "json"); strings.Contains(out, "shared_with") {
		t.Errorf("the receiver sees whom the image is shared with:\n%s", out)
	}
}
