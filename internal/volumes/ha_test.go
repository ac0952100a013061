package volumes

import (
	"context"
	"errors"
	"testing"

	"github.com/kumocloud/kumo/api"
	"github.com/kumocloud/kumo/internal/store"
)

// rehomingInstances are instances of which some are being recreated by
// an HA decision.
type rehomingInstances struct {
	fakeInstances
	rehoming map[string]bool
}

func (r rehomingInstances) Rehoming(_ context.Context, _, name string) bool { return r.rehoming[name] }

// TestPlanHA: an HA decision lists an instance's volumes, local ones
// marked; its writes hand the shared ones over (attached nowhere, a
// detach asked before the loss done), and no host handles them until the
// instance is placed again - then its new host does, the lost one never.
// A volume changed after the plan was read fails the decision's
// transaction.
func TestPlanHA(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, unlimited())
	if _, err := e.svc.CreatePool(ctx, api.StoragePoolsPost{Name: "nfs", Type: api.PoolSharedDir, Path: "/srv/nfs"}); err != nil {
		t.Fatal(err)
	}
	mk := func(name, pool string) api.Volume {
		v, err := e.svc.Create(ctx, "p", api.VolumesPost{Name: name, SizeGiB: 1, Pool: pool, Host: "h1"}, true)
		if err != nil {
			t.Fatal(err)
		}
		e.report(t, []string{"h1"}, api.VolumeReport{ID: v.ID, Status: "ready", SizeGiB: 1})
		if _, err := e.svc.Attach(ctx, "p", name, api.VolumeAttach{Instance: "vm1"}); err != nil {
			t.Fatal(err)
		}
		e.report(t, []string{"h1"}, api.VolumeReport{ID: v.ID, Status: "ready", SizeGiB: 1, AttachedTo: "id-vm1"})
		return v
	}
	mk("ldata", api.PoolLocal)
	shared := mk("sdata", "nfs")
	mk("sold", "nfs")
	if _, err := e.svc.Detach(ctx, "p", "sold"); err != nil {
		t.Fatal(err)
	}
	plan, err := e.svc.PlanHA(ctx, "p", "id-vm1")
	if err != nil {
		t.Fatal(err)
	}
	// (sold, being detached, is left behind: not listed.)
	if len(plan.Volumes) != 2 || len(plan.Local()) != 1 || plan.Local()[0].Name != "ldata" || plan.Local()[0].Host != "h1" || plan.Local()[0].Device != "vdb" {
		t.Fatalf("plan: %+v", plan.Volumes)
	}
	if len(plan.Conds) != 3 {
		t.Fatalf("the plan re-checks %d volumes, not 3", len(plan.Conds))
	}
	// A volume changed after the plan was read: the decision is taken again.
	if _, err := e.svc.Resize(ctx, "p", "ldata", 2); err != nil {
		t.Fatal(err)
	}
	if _, err := e.st.Txn(ctx, plan.Conds, plan.Ops); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("a stale plan was applied: %v", err)
	}
	if plan, err = e.svc.PlanHA(ctx, "p", "id-vm1"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.st.Txn(ctx, plan.Conds, plan.Ops); err != nil {
		t.Fatal(err)
	}
	if v, _ := e.svc.Get(ctx, "p", "sdata"); v.Attachment == nil || v.Attachment.Attached || v.Attachment.InstanceID != "id-vm1" || v.Attachment.Device != "vdc" || v.Status != api.VolumeInUse {
		t.Fatalf("the shared volume after the decision: %+v", v)
	}
	if v, _ := e.svc.Get(ctx, "p", "sold"); v.Attachment != nil || v.Status != api.VolumeAvailable {
		t.Fatalf("the shared volume being detached: %+v", v)
	}
	if v, _ := e.svc.Get(ctx, "p", "ldata"); v.Attachment == nil || !v.Attachment.Attached || v.Host != "h1" {
		t.Fatalf("the local volume was changed: %+v", v)
	}

	// vm1 is PENDING, being recreated: h1 (lost, maybe back) does not see
	// its shared volume - without the rule it would, as its home.
	e.inst["vm1"] = func(in api.Instance) api.Instance { in.State, in.Host = api.StatePending, ""; return in }(e.inst["vm1"])
	live := rehomingInstances{fakeInstances: e.inst, rehoming: map[string]bool{"vm1": true}}
	has := func(hosts string, live Live, id string) *api.AgentVolume {
		view, err := e.svc.AgentView(ctx, map[string]bool{hosts: true}, live)
		if err != nil {
			t.Fatal(err)
		}
		for _, v := range view.Items {
			if v.ID == id {
				return &v
			}
		}
		return nil
	}
	if has("h1", e.inst, shared.ID) == nil {
		t.Fatal("the test is void: the shared volume's home lists it without the rehoming rule")
	}
	if v := has("h1", live, shared.ID); v != nil {
		t.Fatalf("h1 handles the shared volume of an instance being recreated: %+v", v)
	}
	// Placed on h2: h2 attaches it, at the same device; h1 never sees it.
	e.inst["vm1"] = func(in api.Instance) api.Instance { in.State, in.Host = api.StateProlog, "h2"; return in }(e.inst["vm1"])
	live.rehoming["vm1"] = false
	if v := has("h2", live, shared.ID); v == nil || v.Attach == nil || v.Attach.InstanceID != "id-vm1" || v.Attach.Device != "vdc" {
		t.Fatalf("h2's view of the shared volume: %+v", v)
	}
	if v := has("h1", live, shared.ID); v != nil {
		t.Fatalf("h1 still handles the shared volume: %+v", v)
	}
	e.report(t, []string{"h2"}, api.VolumeReport{ID: shared.ID, Status: "ready", SizeGiB: 1, AttachedTo: "id-vm1"})
	if v, _ := e.svc.Get(ctx, "p", "sdata"); v.Attachment == nil || !v.Attachment.Attached {
		t.Fatalf("the shared volume after h2 attached it: %+v", v)
	}
}
