package e2e

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kumocloud/kumo/api"
	"github.com/kumocloud/kumo/client"
)

// A root volume made from a vm-kernel image that carries its own disk
// (as the debian image does), with real QEMU: the image is tiny-vm plus a
// 1.5 GiB disk.qcow2 whose first bytes are a marker. A root volume smaller
// than that disk is refused with nothing made; one of 2 GiB holds the
// disk's bytes (the guest, booted by the image's kernel, reads the marker
// on /dev/vda) and the guest sees its full size.
func TestRootVolumeFromKernelImageDisk(t *testing.T) {
	s := startQEMUServer(t)
	root := []string{"KUMO_SOCKET=" + s.socket}
	c := client.Socket(s.socket)
	ctx := context.Background()
	dir := t.TempDir()
	tiny := filepath.Join(dir, "tiny-vm.tar.gz")
	must(t, root, "", "image", "build", "tiny-vm", "-f", tiny)

	// The image's disk: 1.5 GiB, a marker at its start.
	raw, disk := filepath.Join(dir, "disk.raw"), filepath.Join(dir, "disk.qcow2")
	marker := "kernel-image-disk-marker"
	if err := os.WriteFile(raw, []byte(marker+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(raw, 1536<<20); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("qemu-img", "convert", "-f", "raw", "-O", "qcow2", raw, disk).CombinedOutput(); err != nil {
		t.Fatalf("qemu-img convert: %v %s", err, out)
	}
	withDisk := filepath.Join(dir, "tiny-disk.tar.gz")
	addMember(t, tiny, withDisk, "disk.qcow2", disk)
	must(t, root, "", "image", "import", withDisk, "--name", "tiny-disk", "--kind", "vm-kernel")
	if img, err := c.Image(ctx, "default", "tiny-disk"); err != nil || img.VirtualSize != 1536<<20 {
		t.Fatalf("image %+v %v", img, err)
	}

	ud := filepath.Join(dir, "root.sh")
	os.WriteFile(ud, []byte(`#!/bin/sh
echo "root-size: $(cat /sys/block/vda/size)" >/dev/ttyS0
echo "root-head: $(head -c 64 /dev/vda | tr -dc 'a-z-')" >/dev/ttyS0
`), 0o644)

	// Smaller than the image's disk: refused, nothing made.
	r := kumo(t, root, "", "instance", "create", "small", "--type", "vm", "--image", "tiny-disk", "--flavor", "tiny", "--root-volume-size", "1GiB")
	if r.code == 0 || !strings.Contains(r.err, "2 GiB disk") || !strings.Contains(r.err, "root_volume_size_gib") {
		t.Fatalf("a 1 GiB root volume of a 1.5 GiB disk: exit %d, %s", r.code, r.err)
	}
	if _, err := c.Volume(ctx, "default", "small-root"); client.StatusOf(err) != 404 {
		t.Fatalf("small-root after a refused create: %v", err)
	}
	if _, err := c.Instance(ctx, "default", "small"); client.StatusOf(err) != 404 {
		t.Fatalf("instance small after a refused create: %v", err)
	}

	must(t, root, "", "instance", "create", "deb", "--type", "vm", "--image", "tiny-disk", "--flavor", "tiny",
		"--root-volume-size", "2GiB", "--user-data", ud)
	v := volumeIs(t, c, "deb-root", "made from the image's disk and attached", 300*time.Second, func(v api.Volume) bool {
		return v.Attachment != nil && v.Attachment.Attached
	})
	if v.SizeGiB != 2 || v.Image != "default/tiny-disk" {
		t.Fatalf("deb-root: %+v", v)
	}
	eventually(t, 300*time.Second, "the guest reads the image disk's marker on its 2 GiB root volume", func() (bool, string) {
		r := kumo(t, root, "", "instance", "logs", "deb", "--tail", "300")
		if r.code != 0 {
			return false, r.err
		}
		return strings.Contains(r.out, "root-size: 4194304") && strings.Contains(r.out, "root-head: "+marker), r.out
	})
	must(t, root, "", "instance", "terminate", "deb", "--wait")
}

// addMember copies the gzipped tarball in to out with one more member,
// name, holding the file path.
func addMember(t *testing.T, in, out, name, path string) {
	t.Helper()
	f, err := os.Open(in)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	tr := tar.NewReader(zr)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		tw.WriteHeader(h)
		if _, err := io.Copy(tw, tr); err != nil {
			t.Fatal(err)
		}
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	tw.WriteHeader(&tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(b))})
	tw.Write(b)
	tw.Close()
	zw.Close()
	if err := os.WriteFile(out, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}
