package qemu

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kumocloud/kumo/api"
	"github.com/kumocloud/kumo/internal/driver"
)

// diskTicker writes "kumo-written-once" at 2 MiB into every disk of the
// guest but its seed, then, every second, "kumo-tick-N" at 1 MiB into every disk
// of the guest but its seed (fsync'd: QEMU has it), then prints "tick N".
const diskTicker = `#!/bin/sh
seed=$(findfs LABEL=cidata)
disks=""
for d in /dev/vd?; do [ "$d" = "$seed" ] || disks="$disks $d"; done
for d in $disks; do printf 'kumo-written-once' | dd of=$d bs=512 seek=4096 conv=fsync 2>/dev/null; done
(i=0; while :; do i=$((i+1)); for d in $disks; do printf 'kumo-tick-%08d' $i | dd of=$d bs=512 seek=2048 conv=fsync 2>/dev/null; done; echo "tick $i" >/dev/ttyS0; sleep 1; done) &
`

// diskTick reads the tick a qcow2 file holds at 1 MiB (0: none), and
// whether it holds the mark written once.
func diskTick(t *testing.T, file string) (int, bool) {
	t.Helper()
	raw := filepath.Join(t.TempDir(), "raw")
	if out, err := exec.Command("qemu-img", "convert", "-U", "-f", "qcow2", "-O", "raw", file, raw).CombinedOutput(); err != nil {
		t.Fatalf("qemu-img convert: %v: %s", err, out)
	}
	f, err := os.Open(raw)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, 18)
	if _, err := f.ReadAt(b, 1<<20); err != nil {
		t.Fatal(err)
	}
	mark := make([]byte, 17)
	if _, err := f.ReadAt(mark, 2<<20); err != nil {
		t.Fatal(err)
	}
	var n int
	fmt.Sscanf(string(b), "kumo-tick-%08d", &n)
	return n, string(mark) == "kumo-written-once"
}

// imageDisk writes the disk.qcow2 of a vm-kernel image to a file.
func imageDisk(t *testing.T, r io.Reader) string {
	t.Helper()
	zr, err := gzip.NewReader(r)
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(zr)
	for {
		h, err := tr.Next()
		if err != nil {
			t.Fatalf("no disk.qcow2 in the image: %v", err)
		}
		if h.Name != "disk.qcow2" {
			continue
		}
		p := filepath.Join(t.TempDir(), "disk.qcow2")
		f, err := os.Create(p)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if _, err := io.Copy(f, tr); err != nil {
			t.Fatal(err)
		}
		return p
	}
}

func qcow2File(t *testing.T, path string, size int64) {
	t.Helper()
	if out, err := exec.Command("qemu-img", "create", "-q", "-f", "qcow2", path, fmt.Sprint(size)).CombinedOutput(); err != nil {
		t.Fatalf("qemu-img create: %v: %s", err, out)
	}
}

// TestLiveMigrationOfVolumes: a VM booting from a volume of a local pool,
// with a second local volume attached, moves live to another driver.
// The target is given empty files (as its agent makes them); the source
// mirrors both volumes into them. What the guest wrote before the move
// is in the target's files, and what it writes after the move lands
// there too; the guest's counter goes on (memory kept). An instance
// snapshot of it then holds its boot volume's bytes.
func TestLiveMigrationOfVolumes(t *testing.T) {
	sum, fetch := tinyVM(t)
	src := newDriver(t, t.TempDir(), fetch)
	dst := newDriver(t, t.TempDir(), fetch)
	t.Cleanup(func() { assertNoLeftovers(t, src); assertNoLeftovers(t, dst) })
	ctx := context.Background()
	srcPool, dstPool := t.TempDir(), t.TempDir()
	boot := driver.Volume{ID: "11111111-aaaa-4bbb-8ccc-000000000001", Format: "qcow2", Device: api.BootDevice, Local: true}
	data := driver.Volume{ID: "22222222-aaaa-4bbb-8ccc-000000000002", Format: "qcow2", Device: "vdb", Local: true}
	s := spec("vm-live-vol", sum, 128, diskTicker)
	s.BootVolume = boot.ID
	for _, v := range []driver.Volume{boot, data} {
		v.Source = filepath.Join(srcPool, v.ID+".qcow2")
		qcow2File(t, v.Source, 1<<30)
		s.Volumes = append(s.Volumes, v)
	}
	if err := src.Prepare(ctx, s); err != nil {
		t.Fatal(err)
	}
	if err := src.Start(ctx, s); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { src.Cleanup(ctx, s.ID, false); dst.Cleanup(ctx, s.ID, false) })
	within(t, 5*time.Minute, "the guest's disk ticks to reach 3", func() bool { n := ticks(t, src, s.ID); return len(n) > 0 && n[len(n)-1] >= 3 })

	// The target's spec: the same volumes, as empty files of its own.
	ts := s
	ts.Volumes = nil
	for _, v := range s.Volumes {
		v.Source = filepath.Join(dstPool, v.ID+".qcow2")
		qcow2File(t, v.Source, 1<<30)
		ts.Volumes = append(ts.Volumes, v)
	}
	tun := &pipeTunnel{ends: map[string]chan net.Conn{}}
	recv := make(chan error, 1)
	go func() { recv <- dst.LiveReceive(ctx, ts, tun.open) }()
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var st api.MigrationStats
	sent := make(chan error, 1)
	go func() {
		var err error
		st, err = src.LiveSend(sctx, s.ID, tun.open, driver.LiveOptions{DowntimeLimitMS: 300, AutoConverge: true, CopyVolumes: []string{boot.ID, data.ID}}, func(api.MigrationStats) {})
		sent <- err
	}()
	if err := <-recv; err != nil {
		cancel()
		t.Fatalf("receive: %v", err)
	}
	if err := <-sent; err != nil {
		t.Fatal(err)
	}
	t.Logf("live migration with two volumes: %+v", st)
	if st.DiskBytes <= 0 {
		t.Errorf("no disk bytes mirrored: %+v", st)
	}
	before := ticks(t, src, s.ID)
	last := before[len(before)-1]
	if err := src.Cleanup(ctx, s.ID, false); err != nil {
		t.Fatal(err)
	}
	// The guest goes on on the target, writing its disks there.
	within(t, 3*time.Minute, "the counter to go on on the target", func() bool {
		n := ticks(t, dst, s.ID)
		return len(n) > 0 && n[len(n)-1] >= last+2
	})
	after := ticks(t, dst, s.ID)
	if after[0] < last {
		t.Fatalf("on the target the counter printed %v after %d: the memory did not travel", after, last)
	}
	// An instance snapshot of it is the volume it boots from (with the
	// image's kernel): the mark is in the image's disk.
	var img bytes.Buffer
	if err := dst.Snapshot(ctx, s.ID, &img); err != nil {
		t.Fatalf("instance snapshot: %v", err)
	}
	if _, mark := diskTick(t, imageDisk(t, &img)); !mark {
		t.Error("the instance snapshot lacks what the guest wrote on its boot volume")
	}
	if err := dst.Stop(ctx, s.ID, true); err != nil {
		t.Fatal(err)
	}
	for _, v := range ts.Volumes {
		got, mark := diskTick(t, v.Source)
		if !mark {
			t.Errorf("volume %s on the target lacks what the guest wrote before the move", v.Device)
		}
		if got < last+1 {
			t.Errorf("volume %s on the target holds tick %d: the guest wrote up to %d before the move and more after it", v.Device, got, last)
		}
		if strings.HasPrefix(v.Source, srcPool) {
			t.Errorf("target volume %s is the source's file", v.Device)
		}
	}
	// The source's files were left as they were when the move completed
	// (the agent removes them once the move is committed).
	for _, v := range s.Volumes {
		if got, mark := diskTick(t, v.Source); got > last+1 || got < 3 || !mark {
			t.Errorf("volume %s on the source holds tick %d (last on the source: %d)", v.Device, got, last)
		}
	}
}
