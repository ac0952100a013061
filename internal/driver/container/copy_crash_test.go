package container

import (
	"context"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
)

// TestCopyKilledMidwayLeavesNoFrozenDisk: the process copying a running
// container's root filesystem (an instance backup's) dies while its disk
// is frozen for the copy. The driver opened again on its state dir (the
// agent restarted) thaws it: the container's writes would else block for
// good while the cloud says it runs.
func TestCopyKilledMidwayLeavesNoFrozenDisk(t *testing.T) {
	sum, fetch := tiny(t)
	dir := t.TempDir()
	d := newDriver(t, dir, fetch)
	ctx := context.Background()
	s := spec("c-frz", sum, 64, "")
	if err := d.Prepare(ctx, s); err != nil {
		t.Fatal(err)
	}
	if err := d.Start(ctx, s); err != nil {
		t.Fatal(err)
	}
	defer func() {
		d.Stop(ctx, s.ID, true)
		d.Cleanup(ctx, s.ID, false)
		assertNoLeftovers(t, d)
	}()

	// The first driver stops for good once the disk is frozen: what a
	// killed agent leaves.
	frozen, release := make(chan struct{}), make(chan struct{})
	diskFrozen = func(string) { close(frozen); <-release }
	var once sync.Once
	let := func() { once.Do(func() { close(release) }) }
	defer let()
	t.Cleanup(func() { diskFrozen = func(string) {} })
	copied := make(chan error, 1)
	go func() {
		_, err := d.CopyRootDisk(ctx, s.ID, filepath.Join(t.TempDir(), "root.ext4"))
		copied <- err
	}()
	<-frozen

	newDriver(t, dir, fetch)
	// Thawing a disk that is not frozen fails: it must fail now.
	if out, err := exec.Command("fsfreeze", "-u", d.diskDir(s.ID)).CombinedOutput(); err == nil {
		t.Errorf("the container's disk was still frozen after the driver reopened (%s)", out)
	}
	let()
	if err := <-copied; err != nil {
		t.Fatal(err)
	}
}
