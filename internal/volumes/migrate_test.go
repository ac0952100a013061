package volumes

import (
	"context"
	"strings"
	"testing"

	"github.com/kumocloud/kumo/api"
	"github.com/kumocloud/kumo/internal/errs"
	"github.com/kumocloud/kumo/internal/store"
)

// migratingInstances are instances of which some migrate live to a host.
type migratingInstances struct {
	fakeInstances
	to map[string]string
}

func (m migratingInstances) MigrationTarget(_ context.Context, _, name string) (string, bool) {
	to, ok := m.to[name]
	return to, ok
}

// TestMigrationCarriesAttachedVolumes: the volumes attached to a
// migrating VM are listed for its migration; while it transfers live to
// h2, h2's agent sees its local volume as incoming (keep the file, do
// nothing else) and h1 still has it; the commit's writes give it h2 as
// its home, and a local volume the migration did not carry refuses the
// commit.
func TestMigrationCarriesAttachedVolumes(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, unlimited())
	v, err := e.svc.Create(ctx, "p", api.VolumesPost{Name: "data", SizeGiB: 1, Near: "vm1"}, false)
	if err != nil {
		t.Fatal(err)
	}
	e.report(t, []string{"h1"}, api.VolumeReport{ID: v.ID, Status: "ready", SizeGiB: 1})
	if _, err := e.svc.Attach(ctx, "p", "data", api.VolumeAttach{Instance: "vm1"}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.MigrationVolumes(ctx, "p", "id-vm1"); kindOf(err) != errs.KindConflict || !strings.Contains(err.Error(), "not attached on the instance's host yet") {
		t.Fatalf("a volume not attached on the host yet: %v", err)
	}
	e.report(t, []string{"h1"}, api.VolumeReport{ID: v.ID, Status: "ready", SizeGiB: 1, AttachedTo: "id-vm1"})
	vols, err := e.svc.MigrationVolumes(ctx, "p", "id-vm1")
	if err != nil || len(vols) != 1 || vols[0].ID != v.ID || vols[0].PoolType != api.PoolLocal || vols[0].Device != "vdb" {
		t.Fatalf("migration volumes: %+v %v", vols, err)
	}

	live := migratingInstances{fakeInstances: e.inst, to: map[string]string{"vm1": "h2"}}
	view, _ := e.svc.AgentView(ctx, map[string]bool{"h2": true}, live)
	if len(view.Items) != 1 || !view.Items[0].Incoming || view.Items[0].Attach != nil || view.Items[0].Host != "h2" {
		t.Fatalf("the target's view: %+v", view.Items)
	}
	view, _ = e.svc.AgentView(ctx, map[string]bool{"h1": true}, live)
	if len(view.Items) != 1 || view.Items[0].Incoming || view.Items[0].Attach == nil {
		t.Fatalf("the source's view: %+v", view.Items)
	}
	// (With vm1 migrating, no snapshot of its volume is taken.)
	e.inst["vm1"] = func(in api.Instance) api.Instance { in.State = api.StateMigrate; return in }(e.inst["vm1"])
	if _, err := e.svc.CreateSnapshot(ctx, "p", "data", api.VolumeSnapshotsPost{Name: "s1"}); kindOf(err) != errs.KindConflict || !strings.Contains(err.Error(), "migrating") {
		t.Fatalf("a snapshot during the migration: %v", err)
	}
	e.inst["vm1"] = func(in api.Instance) api.Instance { in.State = api.StateRunning; return in }(e.inst["vm1"])
	if _, err := e.svc.Detach(ctx, "p", "data"); err != nil {
		// (fakeInstances says vm1 RUNNING: detaching is compute's call.)
		t.Fatal(err)
	}
	if _, _, err := e.svc.MigrationCommit(ctx, "p", "id-vm1", "h2", vols); kindOf(err) != errs.KindConflict || !strings.Contains(err.Error(), "detach") {
		t.Fatalf("commit with a volume detached meanwhile: %v", err)
	}
	if _, _, err := e.svc.MigrationCommit(ctx, "p", "id-vm1", "h2", nil); kindOf(err) != errs.KindConflict || !strings.Contains(err.Error(), "attached during the migration") {
		t.Fatalf("commit with a volume the migration did not carry: %v", err)
	}
	r, rev, _ := e.svc.get(ctx, "p", "data")
	r.Detaching = false
	if _, err := e.st.Txn(ctx, []store.Cond{store.At(key("p", "data"), rev)}, []store.Op{store.PutJSON(key("p", "data"), r)}); err != nil {
		t.Fatal(err)
	}
	conds, ops, err := e.svc.MigrationCommit(ctx, "p", "id-vm1", "h2", vols)
	if err != nil || len(conds) != 1 {
		t.Fatalf("commit: %v %v", conds, err)
	}
	if _, err := e.st.Txn(ctx, conds, ops); err != nil {
		t.Fatal(err)
	}
	if got, _ := e.svc.Get(ctx, "p", "data"); got.Host != "h2" || got.Attachment == nil {
		t.Fatalf("after the commit: %+v", got)
	}
}

// TestMigrationCarriesSnapshots: a local volume's snapshots are named in
// its migration (a cold move carries their files); one still being taken
// refuses the move, and a commit whose volume's snapshots are not those
// the migration carried is refused.
func TestMigrationCarriesSnapshots(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, unlimited())
	v, err := e.svc.Create(ctx, "p", api.VolumesPost{Name: "data", SizeGiB: 1, Near: "vm1"}, false)
	if err != nil {
		t.Fatal(err)
	}
	e.report(t, []string{"h1"}, api.VolumeReport{ID: v.ID, Status: "ready", SizeGiB: 1})
	s1, err := e.svc.CreateSnapshot(ctx, "p", "data", api.VolumeSnapshotsPost{Name: "s1"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.Attach(ctx, "p", "data", api.VolumeAttach{Instance: "vm1"}); err != nil {
		t.Fatal(err)
	}
	e.report(t, []string{"h1"}, api.VolumeReport{ID: v.ID, Status: "ready", SizeGiB: 1, AttachedTo: "id-vm1"})
	if _, err := e.svc.MigrationVolumes(ctx, "p", "id-vm1"); kindOf(err) != errs.KindConflict || !strings.Contains(err.Error(), `snapshot "s1"`) {
		t.Fatalf("a snapshot being taken: %v", err)
	}
	e.report(t, []string{"h1"}, api.VolumeReport{ID: v.ID, Status: "ready", SizeGiB: 1, AttachedTo: "id-vm1",
		Snapshots: []api.SnapshotReport{{ID: s1.ID, Status: "ready"}}})
	vols, err := e.svc.MigrationVolumes(ctx, "p", "id-vm1")
	if err != nil || len(vols) != 1 || len(vols[0].Snapshots) != 1 || vols[0].Snapshots[0] != s1.ID {
		t.Fatalf("migration volumes: %+v %v", vols, err)
	}
	stale := []api.MigrationVolume{vols[0]}
	stale[0].Snapshots = nil
	if _, _, err := e.svc.MigrationCommit(ctx, "p", "id-vm1", "h2", stale); kindOf(err) != errs.KindConflict || !strings.Contains(err.Error(), "snapshots changed") {
		t.Fatalf("commit with other snapshots than carried: %v", err)
	}
	conds, ops, err := e.svc.MigrationCommit(ctx, "p", "id-vm1", "h2", vols)
	if err != nil || len(conds) != 1 {
		t.Fatalf("commit: %v %v", conds, err)
	}
	if _, err := e.st.Txn(ctx, conds, ops); err != nil {
		t.Fatal(err)
	}
	if got, _ := e.svc.Get(ctx, "p", "data"); got.Host != "h2" {
		t.Fatalf("after the commit: %+v", got)
	}
}
