package pool

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/kumocloud/kumo/internal/vmimage"
)

const testID = "6f1c1b9e-3c1a-4f7e-9d2a-0a1b2c3d4e5f"

func need(t *testing.T, tools ...string) {
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s is not installed (scripts/deps.sh installs it)", tool)
		}
	}
}

// A new volume is sparse and reads as zeros; it grows, never shrinks;
// Remove leaves nothing.
func TestDirMakesGrowsRemoves(t *testing.T) {
	need(t, "qemu-img")
	ctx := context.Background()
	d := Dir{Path: t.TempDir()}
	v := Volume{ID: testID, Format: Qcow2, SizeGiB: 1}
	size, err := d.Ensure(ctx, v)
	if err != nil || size != 1 {
		t.Fatalf("ensure: %d %v", size, err)
	}
	raw := filepath.Join(t.TempDir(), "raw")
	if out, err := exec.Command("qemu-img", "dd", "-f", "qcow2", "-O", "raw", "bs=1048576", "count=4", "if="+d.Source(v), "of="+raw).CombinedOutput(); err != nil {
		t.Fatalf("%v %s", err, out)
	}
	if b, _ := os.ReadFile(raw); len(b) != 4<<20 || !bytes.Equal(b, make([]byte, len(b))) {
		t.Fatal("a new volume does not read as zeros")
	}
	v.SizeGiB = 3
	if size, err := d.Ensure(ctx, v); err != nil || size != 3 {
		t.Fatalf("grow: %d %v", size, err)
	}
	v.SizeGiB = 2
	if size, _ := d.Ensure(ctx, v); size != 3 {
		t.Fatalf("a smaller size shrank it to %d", size)
	}
	if ids, _ := d.IDs(); len(ids) != 1 || ids[0] != testID {
		t.Fatalf("ids %v", ids)
	}
	if err := d.TakeSnapshot(ctx, v, testID); err != nil {
		t.Fatal(err)
	}
	if err := d.Remove(ctx, testID); err != nil {
		t.Fatal(err)
	}
	if left, _ := os.ReadDir(d.Path); len(left) != 0 {
		t.Fatalf("left: %v", left)
	}
	if _, err := d.Ensure(ctx, Volume{ID: "../../etc/x", Format: Qcow2, SizeGiB: 1}); err == nil {
		t.Fatal("a volume id that is a path was taken")
	}
}

// An image handed to a volume is opened as the format it claims, with no
// name in its header followed: a qcow2 naming a backing file does not
// bring that file's bytes into the volume.
func TestFromImageFollowsNoReference(t *testing.T) {
	need(t, "qemu-img")
	ctx := context.Background()
	dir := t.TempDir()
	secret := filepath.Join(dir, "secret.raw")
	os.WriteFile(secret, bytes.Repeat([]byte("host-secret!"), 1<<16), 0o600)
	hostile := filepath.Join(dir, "hostile.qcow2")
	if out, err := exec.Command("qemu-img", "create", "-q", "-f", "qcow2", "-b", secret, "-F", "raw", hostile, "1M").CombinedOutput(); err != nil {
		t.Fatalf("%v %s", err, out)
	}
	if _, err := vmimage.InspectDisk(ctx, hostile, vmimage.FormatQcow2); err == nil {
		t.Fatal("InspectDisk took a qcow2 with a backing file")
	}
	d := Dir{Path: filepath.Join(dir, "pool")}
	v := Volume{ID: testID, Format: Qcow2, SizeGiB: 1, Image: hostile, ImageFormat: vmimage.FormatQcow2}
	if _, err := d.Ensure(ctx, v); err == nil {
		raw := filepath.Join(dir, "out.raw")
		exec.Command("qemu-img", "dd", "-f", "qcow2", "-O", "raw", "bs=65536", "count=1", "if="+d.Source(v), "of="+raw).Run()
		if b, _ := os.ReadFile(raw); bytes.Contains(b, []byte("host-secret")) {
			t.Fatal("the volume holds the bytes of a file the image named")
		}
	}
}

// An ext4 volume is a filesystem of its size, mounted through a loop
// device that goes with the mount.
func TestExt4MountsAndLetsGo(t *testing.T) {
	need(t, "mkfs.ext4", "losetup", "dumpe2fs")
	if os.Geteuid() != 0 {
		t.Skip("loop mounts need root")
	}
	ctx := context.Background()
	d := Dir{Path: t.TempDir()}
	v := Volume{ID: testID, Format: Ext4, SizeGiB: 1}
	if size, err := d.Ensure(ctx, v); err != nil || size != 1 {
		t.Fatalf("ensure: %d %v", size, err)
	}
	m := filepath.Join(t.TempDir(), "m")
	if err := MountFS(d.Source(v), m); err != nil {
		t.Fatal(err)
	}
	if loop, _ := LoopOf(d.Source(v)); loop == "" {
		t.Error("no loop device while mounted")
	}
	if err := os.WriteFile(filepath.Join(m, "f"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := UnmountFS(m); err != nil {
		t.Fatal(err)
	}
	if loop, _ := LoopOf(d.Source(v)); loop != "" {
		t.Errorf("loop device %s left after the unmount", loop)
	}
	v.SizeGiB = 2
	if size, err := d.Ensure(ctx, v); err != nil || size != 2 {
		t.Fatalf("offline grow: %d %v", size, err)
	}
}
