package qemu

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/kumocloud/kumo/api"
	"github.com/kumocloud/kumo/internal/driver"
	"github.com/kumocloud/kumo/internal/driver/local"
	"github.com/kumocloud/kumo/internal/rootfs"
	"github.com/kumocloud/kumo/internal/vmimage"
)

// TestArgsOpenOnlyKumosFiles: the QEMU command line gives every disk as
// -blockdev with the format driver and the file protocol driver named,
// the base explicitly as the overlay's backing (or "backing": null), and
// names no file outside the instance's dir and the image cache; no -drive
// (which would probe a format or follow a header's backing name). The
// NICs come before the disks, as with -drive if=virtio, so the guest's
// PCI layout does not change.
func TestArgsOpenOnlyKumosFiles(t *testing.T) {
	root := t.TempDir()
	d := &Driver{root: root, accel: "tcg", inst: local.Instances(filepath.Join(root, "instances"))}
	cache := filepath.Join(root, "images", "0123abcd")
	nics := []driver.NIC{{Device: "tap0", MAC: "02:00:00:00:00:01"}}
	for _, tc := range []struct {
		name string
		m    meta
		swap bool
	}{
		{"kernel, no base", meta{Kernel: filepath.Join(cache, "vmlinuz"), Initrd: filepath.Join(cache, "initrd"), BaseKnown: true}, false},
		{"qcow2 base, swap, a NIC", meta{Base: filepath.Join(cache, "disk.qcow2"), BaseFormat: "qcow2", BaseKnown: true}, true},
		{"raw base", meta{Base: filepath.Join(cache, "disk.raw"), BaseFormat: "raw", BaseKnown: true}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id := strings.ReplaceAll(tc.name, " ", "-")
			tc.m.Spec = driver.Spec{ID: id, Name: id, Size: api.Size{VCPUs: 1, MemoryMiB: 128}}
			if tc.swap {
				tc.m.Spec.NICs = nics
				os.MkdirAll(d.dir(id), 0o700)
				os.WriteFile(d.path(id, "swap.img"), nil, 0o600)
			}
			args := d.args(id, tc.m, "")
			inside := func(p string) bool {
				return strings.HasPrefix(p, d.dir(id)+"/") || strings.HasPrefix(p, filepath.Join(root, "images")+"/")
			}
			var nodes, devices []string
			nicAt, diskAt := -1, -1
			for i, a := range args {
				switch {
				case a == "-drive":
					t.Fatalf("-drive %s: disks must be -blockdev with explicit drivers", args[i+1])
				case a == "-kernel" || a == "-initrd":
					if !inside(args[i+1]) {
						t.Errorf("%s %s is outside the cache", a, args[i+1])
					}
				case a == "-device" && strings.HasPrefix(args[i+1], "virtio-net-pci"):
					nicAt = i
				case a == "-device" && strings.HasPrefix(args[i+1], "virtio-blk-pci,drive="):
					devices = append(devices, strings.TrimPrefix(args[i+1], "virtio-blk-pci,drive="))
					if diskAt < 0 {
						diskAt = i
					}
				case a == "-blockdev":
					var n map[string]any
					if err := json.Unmarshal([]byte(args[i+1]), &n); err != nil {
						t.Fatalf("-blockdev %s: %v", args[i+1], err)
					}
					nodes = append(nodes, n["node-name"].(string))
					checkNode(t, n, inside)
				}
			}
			want := []string{"disk", "seed"}
			if tc.swap {
				want = append(want, "swap")
			}
			if !slices.Equal(nodes, want) || !slices.Equal(devices, want) {
				t.Errorf("nodes %v and devices %v, want %v", nodes, devices, want)
			}
			if nicAt > diskAt && tc.swap {
				t.Errorf("a NIC after the disks: the PCI layout changed")
			}
			var disk map[string]any
			for i, a := range args {
				if a == "-blockdev" && strings.Contains(args[i+1], `"node-name":"disk"`) {
					json.Unmarshal([]byte(args[i+1]), &disk)
				}
			}
			b, _ := disk["backing"].(map[string]any)
			switch {
			case tc.m.Base == "" && disk["backing"] != nil:
				t.Errorf("no base, but the overlay's backing is %v", disk["backing"])
			case tc.m.Base != "" && (b == nil || b["driver"] != tc.m.BaseFormat || b["file"].(map[string]any)["filename"] != tc.m.Base || b["read-only"] != true):
				t.Errorf("the overlay's backing is %v, want the %s base %s read-only", disk["backing"], tc.m.BaseFormat, tc.m.Base)
			}
		})
	}
}

// checkNode: a format node names its driver (qcow2 or raw, never probed),
// sits on a file node inside kumo's dirs, and a qcow2 node says what its
// backing is (null or a node), so QEMU follows no name from a header.
func checkNode(t *testing.T, n map[string]any, inside func(string) bool) {
	t.Helper()
	if n["driver"] != "qcow2" && n["driver"] != "raw" {
		t.Fatalf("node %v: format driver %v", n, n["driver"])
	}
	f, _ := n["file"].(map[string]any)
	if f == nil || f["driver"] != "file" || !inside(f["filename"].(string)) {
		t.Fatalf("node %v: its file is %v", n, n["file"])
	}
	if n["driver"] == "qcow2" {
		b, ok := n["backing"]
		if !ok {
			t.Fatalf("qcow2 node %v says nothing of its backing: QEMU would follow the header", n)
		}
		if b != nil {
			checkNode(t, b.(map[string]any), inside)
		}
	}
	if _, ok := n["data-file"]; ok {
		t.Fatalf("node %v has a data file", n)
	}
}

// kernelImage is a vm-kernel image of tiny-vm's kernel and initramfs
// with disk as its disk.qcow2.
func kernelImage(t *testing.T, disk string) []byte {
	tinyVM(t) // skips without qemu
	k, initrd, err := vmimage.TinyPartsCached(context.Background(), vmimage.DefaultCache, rootfs.Busybox)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := vmimage.WriteKernelImage(&buf, []vmimage.Member{{Name: "vmlinuz", Path: k.Vmlinuz}, {Name: "initrd", Path: initrd}, {Name: "disk.qcow2", Path: disk}}); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func serve(b []byte) (string, func(context.Context, string) (io.ReadCloser, error)) {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:]), func(context.Context, string) (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil }
}

// TestCraftedImagesRefusedOnHosts: an image whose disk names a host file
// (one that reached a host without the image service's check: uploaded
// before it, or bytes put in the cache) is refused when the host fills
// its cache, with the reason, and no instance is prepared from it.
func TestCraftedImagesRefusedOnHosts(t *testing.T) {
	tinyVM(t)
	dir := t.TempDir()
	secret := filepath.Join(dir, "host-secret")
	os.WriteFile(secret, []byte("HOST-SECRET-BYTES"), 0o600)
	mk := func(name string, args ...string) string {
		p := filepath.Join(dir, name)
		if out, err := exec.Command("qemu-img", append(append([]string{"create", "-q", "-f", "qcow2"}, args...), p, "1M")...).CombinedOutput(); err != nil {
			t.Fatalf("%v %s", err, out)
		}
		return p
	}
	dataFile := mk("data.qcow2", "-o", "data_file="+filepath.Join(dir, "df")+",data_file_raw=on")
	os.Remove(filepath.Join(dir, "df"))
	os.Symlink(secret, filepath.Join(dir, "df"))
	backing := mk("backing.qcow2", "-u", "-F", "raw", "-b", secret)
	jsonBacking := mk("json.qcow2", "-u", "-F", "raw", "-b", `json:{"driver":"raw","file":{"driver":"file","filename":"`+secret+`"}}`)
	read := func(p string) []byte { b, _ := os.ReadFile(p); return b }
	for _, tc := range []struct {
		name string
		body []byte
		want string
	}{
		{"vm-disk with a data file", read(dataFile), "external data file"},
		{"vm-disk with a backing file", read(backing), "backing file"},
		{"vm-disk with a json: backing", read(jsonBacking), "backing file"},
		{"vm-kernel whose disk has a data file", kernelImage(t, dataFile), "disk.qcow2: the disk has an external data file"},
		{"vm-kernel whose disk has a backing file", kernelImage(t, backing), "disk.qcow2: the disk has a backing file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sum, fetch := serve(tc.body)
			d := newDriver(t, t.TempDir(), fetch)
			s := spec("crafted", sum, 128, "")
			err := d.Prepare(context.Background(), s)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				d.Cleanup(context.Background(), s.ID, false)
				t.Fatalf("%v, want %q", err, tc.want)
			}
			if d.Has(s.ID) {
				t.Fatal("a refused image left an instance behind")
			}
		})
	}
}

// TestGuestCannotFollowBaseHeader: even a cached base whose header names a
// host file (here a backing file, put there behind the driver's back)
// gives the guest nothing of that file: QEMU is told the base's backing
// is null. The guest reads its disk and prints what it finds.
func TestGuestCannotFollowBaseHeader(t *testing.T) {
	tinyVM(t)
	dir := t.TempDir()
	secret := filepath.Join(dir, "host-secret")
	os.WriteFile(secret, append([]byte("HOST-SECRET-BYTES"), make([]byte, 1<<20)...), 0o600)
	clean := filepath.Join(dir, "clean.qcow2")
	if out, err := exec.Command("qemu-img", "create", "-q", "-f", "qcow2", clean, "1M").CombinedOutput(); err != nil {
		t.Fatalf("%v %s", err, out)
	}
	sum, fetch := serve(kernelImage(t, clean))
	d := newDriver(t, t.TempDir(), fetch)
	t.Cleanup(func() { assertNoLeftovers(t, d) })
	ctx := context.Background()
	s := spec("reader", sum, 128, "#!/bin/sh\necho \"found: $(head -c 17 /dev/vda | tr -c 'A-Z-' .)\" >/dev/ttyS0\n")
	if err := d.Prepare(ctx, s); err != nil {
		t.Fatal(err)
	}
	defer d.Cleanup(ctx, s.ID, false)
	m, _ := d.readMeta(s.ID)
	// The attack: the base now names the host file as its backing.
	os.Remove(m.Base)
	if out, err := exec.Command("qemu-img", "create", "-q", "-f", "qcow2", "-u", "-F", "raw", "-b", secret, m.Base, "1M").CombinedOutput(); err != nil {
		t.Fatalf("%v %s", err, out)
	}
	if err := d.Start(ctx, s); err != nil {
		t.Fatal(err)
	}
	var log string
	waitFor(t, "the guest to read its disk", func() bool {
		b, _ := d.Logs(ctx, s.ID, 100)
		log = string(b)
		return strings.Contains(log, "found: ")
	})
	if strings.Contains(log, "HOST-SECRET") {
		t.Fatalf("the guest read the host file through the base's backing: %s", log)
	}
	d.Stop(ctx, s.ID, true)
}

// TestOldCacheEntriesRechecked: a disk cached by an older kumo (whose check
// let external data files through; its disk.json has no check version)
// is checked again before an instance is made from it.
func TestOldCacheEntriesRechecked(t *testing.T) {
	tinyVM(t)
	dir := t.TempDir()
	clean := filepath.Join(dir, "clean.qcow2")
	if out, err := exec.Command("qemu-img", "create", "-q", "-f", "qcow2", clean, "1M").CombinedOutput(); err != nil {
		t.Fatalf("%v %s", err, out)
	}
	b, _ := os.ReadFile(clean)
	sum, fetch := serve(b)
	d := newDriver(t, t.TempDir(), fetch)
	ctx := context.Background()
	first := spec("first", sum, 128, "")
	if err := d.Prepare(ctx, first); err != nil {
		t.Fatal(err)
	}
	m, _ := d.readMeta(first.ID)
	d.Cleanup(ctx, first.ID, false)
	// What an older kumo could have cached: a disk with a data file.
	os.Remove(m.Base)
	if out, err := exec.Command("qemu-img", "create", "-q", "-f", "qcow2", "-o", "data_file="+filepath.Join(dir, "host-file"), m.Base, "1M").CombinedOutput(); err != nil {
		t.Fatalf("%v %s", err, out)
	}
	os.WriteFile(filepath.Join(filepath.Dir(m.Base), "disk.json"), []byte(`{"format":"qcow2","virtual-size":1048576}`), 0o600)
	second := spec("second", sum, 128, "")
	if err := d.Prepare(ctx, second); err == nil || !strings.Contains(err.Error(), "external data file") {
		d.Cleanup(ctx, second.ID, false)
		t.Fatalf("an old cache entry with a data file: %v", err)
	}
}
