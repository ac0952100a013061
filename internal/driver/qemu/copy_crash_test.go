package qemu

import (
	"context"
	"path/filepath"
	"sync"
	"testing"

	"github.com/kumocloud/kumo/internal/driver"
)

// TestCopyKilledMidwayLeavesNoPausedVM: the process copying a running
// VM's root disk (an instance backup's, an instance snapshot's) dies
// while the guest is paused for the copy. The driver opened again on its
// state dir (the agent restarted) continues the guest: it runs, its
// counter goes on - it is not left suspended while the cloud says it runs.
func TestCopyKilledMidwayLeavesNoPausedVM(t *testing.T) {
	sum, fetch := tinyVM(t)
	dir := t.TempDir()
	d := newDriver(t, dir, fetch)
	t.Cleanup(func() { assertNoLeftovers(t, d) })
	ctx := context.Background()
	s := spec("vm-copy", sum, 128, counter)
	if err := d.Prepare(ctx, s); err != nil {
		t.Fatal(err)
	}
	defer d.Cleanup(ctx, s.ID, false)
	if err := d.Start(ctx, s); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the counter to reach 2", func() bool { n := ticks(t, d, s.ID); return len(n) > 0 && n[len(n)-1] >= 2 })

	// The first driver stops for good once it paused the guest: what a
	// killed agent leaves.
	paused, release := make(chan struct{}), make(chan struct{})
	copyPaused = func(string) { close(paused); <-release }
	var once sync.Once
	let := func() { once.Do(func() { close(release) }) }
	defer let() // before the deferred Cleanup, which waits for the copy
	t.Cleanup(func() { copyPaused = func(string) {} })
	copied := make(chan error, 1)
	go func() {
		_, err := d.CopyRootDisk(ctx, s.ID, filepath.Join(t.TempDir(), "root.qcow2"))
		copied <- err
	}()
	<-paused
	if qs, err := d.qemuState(ctx, s.ID); qs != "paused" {
		t.Fatalf("QEMU is %q (%v) while the disk is copied", qs, err)
	}

	d2 := newDriver(t, dir, fetch)
	before := len(ticks(t, d2, s.ID))
	waitFor(t, "the guest to run again under the reopened driver", func() bool {
		st, _ := d2.Status(ctx, s.ID)
		return st.State == driver.Running && len(ticks(t, d2, s.ID)) >= before+2
	})
	let()
	<-copied // the dead one's leftovers: whatever it says
}
