package qemu

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"syscall"
	"testing"

	"github.com/kumocloud/kumo/internal/driver"
)

const testChunk = 4 << 20

// rawOf is a qcow2 file's content as raw bytes.
func rawOf(t *testing.T, qcow2 string) []byte {
	t.Helper()
	raw := qcow2 + ".raw"
	defer os.Remove(raw)
	if out, err := exec.Command("qemu-img", "convert", "-U", "-f", "qcow2", "-O", "raw", qcow2, raw).CombinedOutput(); err != nil {
		t.Fatalf("qemu-img convert: %v %s", err, out)
	}
	b, err := os.ReadFile(raw)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// backupStore plays the server and the agent: chunks kept by hash,
// manifests made from copies as the agent makes them.
type backupStore map[string][]byte

func (s backupStore) put(b []byte) string {
	if bytes.Equal(b, make([]byte, len(b))) {
		return ""
	}
	h := sha256.Sum256(b)
	sum := hex.EncodeToString(h[:])
	s[sum] = slices.Clone(b)
	return sum
}

// manifest of a copy: every chunk, or (incremental) the base's with the
// changed chunks read from the copy.
func (s backupStore) manifest(t *testing.T, cp string, vc driver.VolumeCopy, base []string) []string {
	raw := rawOf(t, cp)
	if !vc.Incremental {
		var m []string
		for off := 0; off < len(raw); off += testChunk {
			m = append(m, s.put(raw[off:off+testChunk]))
		}
		return m
	}
	m := slices.Clone(base)
	for _, i := range vc.Changed {
		m[i] = s.put(raw[i*testChunk : (i+1)*testChunk])
	}
	return m
}

func (s backupStore) restore(m []string) []byte {
	out := make([]byte, 0, len(m)*testChunk)
	for _, sum := range m {
		if sum == "" {
			out = append(out, make([]byte, testChunk)...)
		} else {
			out = append(out, s[sum]...)
		}
	}
	return out
}

// TestVolumeIncrementalBackup: a running VM's volume is copied whole at
// its first backup; the next copies only the chunks written since (a
// write, a zeroed chunk, a new chunk), also after a VM stop and start
// (the bitmap is kept in the volume's file), and what is restored from
// the incremental manifests has the volume's sha256. After QEMU is
// killed the tracking cannot be trusted and the copy is whole.
func TestVolumeIncrementalBackup(t *testing.T) {
	sum, fetch := tinyVM(t)
	dir := t.TempDir()
	d := newDriver(t, filepath.Join(dir, "state"), fetch)
	ctx := context.Background()
	vol := filepath.Join(dir, "vol.qcow2")
	if out, err := exec.Command("qemu-img", "create", "-q", "-f", "qcow2", vol, "64M").CombinedOutput(); err != nil {
		t.Fatalf("%v %s", err, out)
	}
	v := driver.Volume{ID: "incrvolume-000000000000000", Format: "qcow2", Source: vol, Device: "vdb"}
	s := spec("incr", sum, 128, "")
	s.Volumes = []driver.Volume{v}
	if err := d.Prepare(ctx, s); err != nil {
		t.Fatal(err)
	}
	defer d.Cleanup(ctx, s.ID, false)
	if err := d.Start(ctx, s); err != nil {
		t.Fatal(err)
	}
	_, dev, _ := volNames(v)
	write := func(cmd string) {
		t.Helper()
		var out string
		if err := d.do(ctx, s.ID, "human-monitor-command", map[string]any{"command-line": fmt.Sprintf("qemu-io -d /machine/peripheral/%s/virtio-backend %q", dev, cmd)}, &out); err != nil || bytes.Contains([]byte(out), []byte("rror")) {
			t.Fatalf("qemu-io %s: %v %s", cmd, err, out)
		}
	}
	store := backupStore{}
	n := 0
	backup := func(since string, base []string) (string, driver.VolumeCopy, []string) {
		t.Helper()
		n++
		name := fmt.Sprintf("b%d", n)
		cp := filepath.Join(dir, name+".qcow2")
		vc, err := d.CopyVolumeForBackup(ctx, s.ID, v, since, int64(len(base))*testChunk, name, cp, testChunk)
		if err != nil {
			t.Fatalf("backup %s: %v", name, err)
		}
		m := store.manifest(t, cp, vc, base)
		if err := d.KeepVolumeTracking(ctx, s.ID, v, name); err != nil {
			t.Fatal(err)
		}
		return name, vc, m
	}
	// The volume's content, read with QEMU stopped (nothing cached).
	volumeSum := func() [32]byte {
		t.Helper()
		if err := d.Stop(ctx, s.ID, false); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "QEMU to end", func() bool { return d.pid(s.ID) == 0 })
		sum := sha256.Sum256(rawOf(t, vol))
		if err := d.Start(ctx, s); err != nil {
			t.Fatal(err)
		}
		return sum
	}

	write("write -P 0x11 0 4M")
	write("write -P 0x22 20M 64k")
	b1, vc, m1 := backup("", nil)
	if vc.Incremental || vc.Size != 64<<20 || len(m1) != 16 {
		t.Fatalf("first copy: %+v, %d chunks", vc, len(m1))
	}

	// About 1%: a write in chunk 5, chunk 0 zeroed, a first write in 9.
	write("write -P 0x33 20M 4k")
	write("write -z 0 4M")
	write("write -P 0x44 36M 512")
	b2, vc, m2 := backup(b1, m1)
	if !vc.Incremental || !slices.Equal(vc.Changed, []int64{0, 5, 9}) {
		t.Fatalf("second copy: %+v, want chunks 0, 5 and 9", vc)
	}
	if got, want := sha256.Sum256(store.restore(m2)), volumeSum(); got != want {
		t.Fatal("the incremental backup restored is not the volume")
	}

	// The VM was stopped and started (volumeSum): QEMU kept the bitmap in
	// the file and tracks on.
	write("write -P 0x55 12M 8k")
	b3, vc, m3 := backup(b2, m2)
	if !vc.Incremental || !slices.Equal(vc.Changed, []int64{3}) {
		t.Fatalf("copy after a restart: %+v, want chunk 3", vc)
	}
	if got, want := sha256.Sum256(store.restore(m3)), volumeSum(); got != want {
		t.Fatal("the incremental backup after a restart restored is not the volume")
	}

	// A killed QEMU leaves its bitmaps in use in the file: whole copy.
	write("write -P 0x66 44M 4k")
	if err := syscall.Kill(d.pid(s.ID), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "QEMU to die", func() bool { return d.pid(s.ID) == 0 })
	if err := d.Start(ctx, s); err != nil {
		t.Fatal(err)
	}
	_, vc, m4 := backup(b3, m3)
	if vc.Incremental {
		t.Fatalf("copy after a crash: %+v, want a whole copy", vc)
	}
	if got, want := sha256.Sum256(store.restore(m4)), volumeSum(); got != want {
		t.Fatal("the backup after a crash restored is not the volume")
	}
}
