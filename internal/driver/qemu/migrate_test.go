package qemu

import (
	"archive/tar"
	"bytes"
	"context"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/kumocloud/kumo/internal/driver"
)

// TestColdMigration: a saved VM moves to another driver (another state
// dir, as another host's agent has) and restores there with its memory
// kept - its counter goes on; the source keeps nothing once cleaned up.
// A stream that is not a VM's is refused and leaves nothing behind.
func TestColdMigration(t *testing.T) {
	sum, fetch := tinyVM(t)
	src := newDriver(t, t.TempDir(), fetch)
	dst := newDriver(t, t.TempDir(), fetch)
	t.Cleanup(func() { assertNoLeftovers(t, src); assertNoLeftovers(t, dst) })
	ctx := context.Background()
	s := spec("vm-move", sum, 128, counter)
	if err := src.Prepare(ctx, s); err != nil {
		t.Fatal(err)
	}
	if err := src.Start(ctx, s); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the counter to reach 3", func() bool { n := ticks(t, src, s.ID); return len(n) > 0 && n[len(n)-1] >= 3 })
	if _, err := src.SendCold(ctx, s.ID, io.Discard); err == nil {
		t.Fatal("a running VM was sent cold")
	}
	if err := src.Save(ctx, s.ID); err != nil {
		t.Fatal(err)
	}
	before := ticks(t, src, s.ID)
	last := before[len(before)-1]

	pr, pw := io.Pipe()
	sent := make(chan error, 1)
	go func() {
		_, err := src.SendCold(ctx, s.ID, pw)
		pw.CloseWithError(err)
		sent <- err
	}()
	if err := dst.ReceiveCold(ctx, s, pr); err != nil {
		t.Fatal(err)
	}
	if err := <-sent; err != nil {
		t.Fatal(err)
	}
	if st, err := dst.Status(ctx, s.ID); err != nil || st.State != driver.Saved {
		t.Fatalf("on the target: %+v %v", st, err)
	}
	if err := src.Cleanup(ctx, s.ID, false); err != nil {
		t.Fatal(err)
	}
	if src.Has(s.ID) {
		t.Fatal("the source still has it")
	}
	if err := dst.Start(ctx, s); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the counter to go on on the target", func() bool { return len(ticks(t, dst, s.ID)) >= len(before)+2 })
	after := ticks(t, dst, s.ID)[len(before):]
	if after[0] != last+1 {
		t.Fatalf("on the target the counter printed %v after %d: the memory did not travel", after, last)
	}
	if err := dst.Cleanup(ctx, s.ID, false); err != nil {
		t.Fatal(err)
	}

	// Hostile streams: a path out of the VM's dir, an oversized disk.
	for name, entry := range map[string]tar.Header{
		"escape":   {Name: "../../escape", Mode: 0o600, Size: 1, Typeflag: tar.TypeReg},
		"link":     {Name: "disk.qcow2", Typeflag: tar.TypeSymlink, Linkname: "/etc/shadow"},
		"too-big":  {Name: "disk.qcow2", Mode: 0o600, Size: 3 << 30, Typeflag: tar.TypeReg},
		"no-files": {},
	} {
		var b bytes.Buffer
		tw := tar.NewWriter(&b)
		if entry.Name != "" {
			tw.WriteHeader(&entry)
			if entry.Typeflag == tar.TypeReg && entry.Size == 1 {
				tw.Write([]byte("x"))
			}
		}
		tw.Close()
		h := spec("vm-hostile-"+name, sum, 128, "")
		rctx, cancel := context.WithTimeout(ctx, time.Minute)
		err := dst.ReceiveCold(rctx, h, &b)
		cancel()
		if err == nil || !strings.Contains(err.Error(), "migration stream") {
			t.Errorf("%s: %v, want a refusal of the stream", name, err)
		}
		if dst.Has(h.ID) {
			t.Errorf("%s: a refused stream left the VM behind", name)
		}
	}
}
