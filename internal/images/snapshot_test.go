package images

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kumocloud/kumo/api"
	"github.com/kumocloud/kumo/internal/errs"
	"github.com/kumocloud/kumo/internal/operations"
	"github.com/kumocloud/kumo/internal/quota"
	"github.com/kumocloud/kumo/internal/store"
)

type fakeInstances map[string]api.Instance

func (f fakeInstances) Instance(_ context.Context, _, name string) (api.Instance, error) {
	in, ok := f[name]
	if !ok {
		return in, errs.NotFound("instance %q not found", name)
	}
	return in, nil
}

// fakeDisks hands out a disk stream: its bytes, the size announced, and
// optionally a gate the stream stops at (after half its bytes) until the
// test opens it, or an error.
type fakeDisks struct {
	disk     []byte
	size     int64
	err      error
	gate     chan struct{}
	mu       sync.Mutex
	midway   chan struct{} // closed when the stream waits at the gate
	released bool
}

func (d *fakeDisks) ReadDisk(ctx context.Context, in api.Instance) (io.ReadCloser, int64, error) {
	if d.err != nil {
		return nil, 0, d.err
	}
	half := len(d.disk) / 2
	if d.gate == nil {
		return io.NopCloser(bytes.NewReader(d.disk)), d.size, nil
	}
	return io.NopCloser(io.MultiReader(bytes.NewReader(d.disk[:half]), &gated{ctx: ctx, d: d}, bytes.NewReader(d.disk[half:]))), d.size, nil
}

type gated struct {
	ctx context.Context
	d   *fakeDisks
}

func (g *gated) Read([]byte) (int, error) {
	g.d.mu.Lock()
	if !g.d.released {
		g.d.released = true
		close(g.d.midway)
	}
	g.d.mu.Unlock()
	select {
	case <-g.d.gate:
		return 0, io.EOF
	case <-g.ctx.Done():
		return 0, g.ctx.Err()
	}
}

var vm1 = api.Instance{Meta: api.Meta{ID: "id-vm1", Name: "vm1"}, Project: "p", Type: api.TypeVM, State: api.StateRunning, Image: "base", Home: "h1"}

type snapCloud struct {
	svc   *Service
	st    store.Store
	dir   string
	ops   *operations.Manager
	sn    *Snapshots
	disks *fakeDisks
}

func newSnapCloud(t *testing.T, disks *fakeDisks) *snapCloud {
	_, st, dir := newSvc(t, 100)
	c := &snapCloud{st: st, dir: dir, disks: disks}
	c.restart(t)
	return c
}

// restart is a new server process on the same store and files: a new
// image service, operations manager and snapshot service.
func (c *snapCloud) restart(t *testing.T) {
	svc, err := New(c.st, c.dir, 0, usersFunc(func(context.Context, string, string) (int, error) { return 0, nil }), time.Now)
	if err != nil {
		t.Fatal(err)
	}
	c.svc = svc
	c.ops = operations.New(c.st, slog.New(slog.DiscardHandler))
	t.Cleanup(c.ops.Shutdown)
	c.sn = NewSnapshots(c.svc, fakeInstances{"vm1": vm1, "c1": {Meta: api.Meta{ID: "id-c1", Name: "c1"}, Type: api.TypeContainer, State: api.StateRunning},
		"vm2": {Meta: api.Meta{ID: "id-vm2", Name: "vm2"}, Type: api.TypeVM, State: api.StatePending}}, c.disks, c.ops)
}

func (c *snapCloud) wait(t *testing.T, id string) api.Operation {
	t.Helper()
	op, err := c.ops.Wait(context.Background(), id, time.Minute)
	if err != nil || !op.Done() {
		t.Fatalf("operation %s did not end: %+v %v", id, op, err)
	}
	return op
}

// leftNothing checks that no image, no quota and no file remain.
func (c *snapCloud) leftNothing(t *testing.T, name string) {
	t.Helper()
	ctx := context.Background()
	if _, err := c.svc.Get(ctx, "p", name); !errors.Is(err, errs.ErrNotFound) {
		t.Errorf("image %s is still there: %v", name, err)
	}
	if q, _, _ := quota.Get(ctx, c.st, "p"); q.Usage.Images != 0 || q.Usage.ImageMiB != 0 {
		t.Errorf("quota still used: %+v", q.Usage)
	}
	if n := files(t, c.dir); n != 0 {
		t.Errorf("%d files left", n)
	}
}

// TestSnapshotOperation: a snapshot answers with an operation whose
// progress follows the bytes received, and ends with an active image.
func TestSnapshotOperation(t *testing.T) {
	disk := qcow2(t)
	c := newSnapCloud(t, &fakeDisks{disk: disk, size: int64(len(disk)), gate: make(chan struct{}), midway: make(chan struct{})})
	ctx := context.Background()
	op, err := c.sn.Start(ctx, "p", "vm1", api.InstanceSnapshotPost{Name: "snap"})
	if err != nil || op.Kind != OpSnapshot || op.Status != api.OpRunning || op.Resource != "/v1/projects/p/images/snap" {
		t.Fatalf("start: %+v %v", op, err)
	}
	<-c.disks.midway
	// Half the bytes are in: the operation says so (the progress write
	// precedes the read that stops at the gate).
	if got, want := progressOf(t, c.ops, op.ID), len(disk)/2*100/len(disk); got != want {
		t.Errorf("progress with half the disk received: %d%%, want %d%%", got, want)
	}
	close(c.disks.gate)
	if got := c.wait(t, op.ID); got.Status != api.OpSucceeded || got.Progress != 100 {
		t.Fatalf("operation: %+v", got)
	}
	img, err := c.svc.Get(ctx, "p", "snap")
	if err != nil || img.Status != api.ImageActive || img.Kind != api.KindVMDisk || img.Size != int64(len(disk)) || img.Properties["source_instance"] != "vm1" {
		t.Fatalf("image: %+v %v", img, err)
	}
}

func progressOf(t *testing.T, ops *operations.Manager, id string) int {
	op, _, err := ops.Get(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return op.Progress
}

// TestSnapshotRefusedAtOnce: what can be known at once is the request's
// error, and leaves nothing.
func TestSnapshotRefusedAtOnce(t *testing.T) {
	disk := qcow2(t)
	c := newSnapCloud(t, &fakeDisks{disk: disk})
	ctx := context.Background()
	tests := []struct {
		instance, image string
		want            string
	}{
		{"c1", "s", "snapshots are of VM disks"},
		{"vm2", "s", "is PENDING"},
		{"nope", "s", "not found"},
		{"vm1", "Bad Name!", "name"},
	}
	for _, tc := range tests {
		if _, err := c.sn.Start(ctx, "p", tc.instance, api.InstanceSnapshotPost{Name: tc.image}); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("snapshot of %s: %v, want %q", tc.instance, err, tc.want)
		}
		c.leftNothing(t, tc.image)
	}
	ops, _, _ := c.ops.List(ctx, func(api.Operation) bool { return true }, "", 0)
	if len(ops) != 0 {
		t.Errorf("refused snapshots started operations: %+v", ops)
	}
}

// TestSnapshotFailuresLeaveNothing: a host that refuses, a stream cut
// short, bytes that are not a disk: the operation fails saying why, and
// the image, its quota and its bytes are gone.
func TestSnapshotFailuresLeaveNothing(t *testing.T) {
	disk := qcow2(t)
	tests := []struct {
		name  string
		disks *fakeDisks
		want  string
	}{
		{"host refuses", &fakeDisks{err: errs.Conflict("snapshot of \"vm1\": the sim driver cannot snapshot disks")}, "cannot snapshot disks"},
		{"cut short", &fakeDisks{disk: disk[:len(disk)/3], size: int64(len(disk))}, fmt.Sprintf("the host sent %d of %d bytes", len(disk)/3, len(disk))},
		{"too long", &fakeDisks{disk: disk, size: int64(len(disk)) - 1}, fmt.Sprintf("the host announced %d bytes and sent more", len(disk)-1)},
		{"not a disk", &fakeDisks{disk: []byte("garbage, not a disk"), size: 19}, "not a usable qcow2 disk"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := newSnapCloud(t, tc.disks)
			op, err := c.sn.Start(context.Background(), "p", "vm1", api.InstanceSnapshotPost{Name: "snap"})
			if err != nil {
				t.Fatal(err)
			}
			if got := c.wait(t, op.ID); got.Status != api.OpFailed || !strings.Contains(got.Error, tc.want) {
				t.Fatalf("operation: %+v, want failed with %q", got, tc.want)
			}
			c.leftNothing(t, "snap")
		})
	}
}

// TestSnapshotAcrossRestart: a server that stops (or dies) during the
// copy leaves an operation the next start ends: failed, saying to try
// again, with the image gone.
func TestSnapshotAcrossRestart(t *testing.T) {
	disk := qcow2(t)
	ctx := context.Background()
	for _, graceful := range []bool{true, false} {
		c := newSnapCloud(t, &fakeDisks{disk: disk, size: int64(len(disk)), gate: make(chan struct{}), midway: make(chan struct{})})
		op, err := c.sn.Start(ctx, "p", "vm1", api.InstanceSnapshotPost{Name: "snap"})
		if err != nil {
			t.Fatal(err)
		}
		<-c.disks.midway
		old := c.ops
		if graceful {
			// The copy stops with the server; the operation stays running
			// in the store for the next start.
			old.Shutdown()
			if got, _, _ := old.Get(ctx, op.ID); got.Done() {
				t.Fatalf("graceful: a stopping server ended the operation: %+v", got)
			}
		}
		// else: killed; its handler is never heard of again (the gate
		// stays shut until the test ends).
		c.restart(t)
		if n, err := c.ops.Resume(ctx); n != 1 || err != nil {
			t.Fatalf("graceful=%v: resumed %d %v", graceful, n, err)
		}
		if got := c.wait(t, op.ID); got.Status != api.OpFailed || !strings.Contains(got.Error, "server restarted during the copy") {
			t.Fatalf("graceful=%v: %+v", graceful, got)
		}
		c.leftNothing(t, "snap")
		// The name is free for a new try, which the old process's copy,
		// were it to go on, cannot touch.
		if _, err := c.svc.Create(ctx, "p", api.ImagesPost{Name: "snap", Kind: api.KindVMDisk}); err != nil {
			t.Fatal(err)
		}
		close(c.disks.gate)
		old.Shutdown()
		if img, err := c.svc.Get(ctx, "p", "snap"); err != nil || img.Status != api.ImageQueued {
			t.Fatalf("graceful=%v: the new image of that name: %+v %v", graceful, img, err)
		}
	}
}

// TestSnapshotDoneBeforeRestart: an operation whose image became active
// before the restart cut it short succeeds when resumed.
func TestSnapshotDoneBeforeRestart(t *testing.T) {
	disk := qcow2(t)
	c := newSnapCloud(t, &fakeDisks{disk: disk})
	ctx := context.Background()
	img, err := c.svc.Create(ctx, "p", api.ImagesPost{Name: "snap", Kind: api.KindVMDisk})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.svc.Upload(ctx, "p", "snap", bytes.NewReader(disk)); err != nil {
		t.Fatal(err)
	}
	op := &operations.Op{ID: "x", Project: "p", Args: map[string]string{"project": "p", "instance": "vm1", "instance_id": vm1.ID, "image": "snap", "image_id": img.ID, "boot": "another"}}
	if err := c.sn.run(ctx, op); err != nil {
		t.Fatalf("resumed after the copy was done: %v", err)
	}
	if img, err := c.svc.Get(ctx, "p", "snap"); err != nil || img.Status != api.ImageActive {
		t.Fatalf("image: %+v %v", img, err)
	}
}
