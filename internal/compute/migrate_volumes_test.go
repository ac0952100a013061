package compute

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/kumocloud/kumo/api"
	"github.com/kumocloud/kumo/internal/errs"
	"github.com/kumocloud/kumo/internal/store"
	"github.com/kumocloud/kumo/internal/volumes"
)

// attachedVolumes is a volume service whose instances have the volumes
// given attached.
type attachedVolumes struct {
	noVolumes
	vols []api.MigrationVolume
}

func (a attachedVolumes) MigrationVolumes(context.Context, string, string) ([]api.MigrationVolume, error) {
	return a.vols, nil
}

func (attachedVolumes) PlanBoot(context.Context, string, volumes.BootInstance, api.InstancesPost) (volumes.BootPlan, error) {
	return volumes.BootPlan{}, nil
}

func (attachedVolumes) MigrationCommit(context.Context, string, string, string, []api.MigrationVolume) ([]store.Cond, []store.Op, error) {
	return nil, nil, nil
}

// TestMigrationCarriesVolumes: a VM with a volume of a local pool
// attached moves live or cold with the volume listed in its migration,
// for both agents (a cold one as well: its agents stream the volume's
// file ahead of the instance's own); one with only shared-pool volumes
// moves cold too.
func TestMigrationCarriesVolumes(t *testing.T) {
	ctx := context.Background()
	all := []string{api.CapMigrate, api.CapLiveMigrate}
	env := newCapsEnv(t, ctx, map[string][]string{"h1": all, "h2": all, "h3": all})
	svc := env.service(time.Hour)
	local := api.MigrationVolume{ID: "v1", Name: "data", Device: "vdb", Format: "qcow2", SizeGiB: 1, PoolType: api.PoolLocal}
	svc.SetVolumes(attachedVolumes{vols: []api.MigrationVolume{local}})
	env.placeOn(svc, "c", "h1")
	if _, err := svc.Migrate(ctx, "p", "c", api.InstanceMigrate{Mode: api.MigrateCold}); err != nil {
		t.Fatalf("cold with a local volume: %v", err)
	}
	if r, _, err := svc.get(ctx, "p", "c"); err != nil {
		t.Fatal(err)
	} else if m := assignmentMigration(&r); m == nil || m.Mode != api.MigrateCold || len(m.Volumes) != 1 || m.Volumes[0].ID != "v1" {
		t.Fatalf("the agents of a cold move are not told of the volume: %+v", m)
	}
	env.placeOn(svc, "a", "h1")
	// Its snapshots go with a volume in a cold move only.
	snapped := local
	snapped.Snapshots = []string{"s1"}
	svc.SetVolumes(attachedVolumes{vols: []api.MigrationVolume{snapped}})
	if _, err := svc.Migrate(ctx, "p", "a", api.InstanceMigrate{Mode: api.MigrateLive}); !errors.Is(err, errs.ErrConflict) || !strings.Contains(err.Error(), "only a cold move carries") {
		t.Fatalf("live with a volume's snapshot: %v", err)
	}
	env.placeOn(svc, "d", "h1")
	// The evacuation plan says so too.
	plan, err := svc.EvacuationPlan(ctx, "h1")
	if err != nil {
		t.Fatal(err)
	}
	for _, mv := range plan.Moves {
		if mv.Instance == "d" && mv.Mode != api.MigrateCold {
			t.Errorf("the evacuation plan moves d %q, not cold: %+v", mv.Mode, plan)
		}
	}
	if _, err := svc.Migrate(ctx, "p", "d", api.InstanceMigrate{}); err != nil {
		t.Fatalf("the default move of a RUNNING VM with a volume's snapshot: %v", err)
	}
	if r, _, _ := svc.get(ctx, "p", "d"); r.Migration == nil || r.Migration.Mode != api.MigrateCold {
		t.Fatalf("the default move of a RUNNING VM with a volume's snapshot is not cold: %+v", r.Migration)
	}
	svc.SetVolumes(attachedVolumes{vols: []api.MigrationVolume{local}})
	if _, err := svc.Migrate(ctx, "p", "a", api.InstanceMigrate{Mode: api.MigrateLive}); err != nil {
		t.Fatalf("live with a local volume: %v", err)
	}
	r, _, err := svc.get(ctx, "p", "a")
	if err != nil {
		t.Fatal(err)
	}
	if m := assignmentMigration(&r); m == nil || len(m.Volumes) != 1 || m.Volumes[0].ID != "v1" {
		t.Fatalf("the agents are not told of the volume: %+v", m)
	}

	shared := local
	shared.PoolType, shared.ID = api.PoolSharedDir, "v2"
	svc.SetVolumes(attachedVolumes{vols: []api.MigrationVolume{shared}})
	env.placeOn(svc, "b", "h2")
	if _, err := svc.Migrate(ctx, "p", "b", api.InstanceMigrate{Mode: api.MigrateCold}); err != nil {
		t.Fatalf("cold with a shared volume: %v", err)
	}
}

// bootOnH1 is a volume service whose instances boot from a local volume
// on h1, with it attached.
type bootOnH1 struct{ attachedVolumes }

func (bootOnH1) PlanBoot(_ context.Context, _ string, _ volumes.BootInstance, req api.InstancesPost) (volumes.BootPlan, error) {
	if req.BootVolume == "" {
		return volumes.BootPlan{}, nil
	}
	return volumes.BootPlan{Volume: "root", ID: "v1", Host: "h1", Local: true}, nil
}

// TestEvacuationMovesBootVolumeVMs: a VM booting from a local volume is
// not pinned to its host by the volume when it is to move (the volume
// goes with it, live or cold): the evacuation plan of its host names
// another host, and a cold move carries the volume.
func TestEvacuationMovesBootVolumeVMs(t *testing.T) {
	ctx := context.Background()
	all := []string{api.CapMigrate, api.CapLiveMigrate}
	env := newCapsEnv(t, ctx, map[string][]string{"h1": all, "h2": all, "h3": all})
	svc := env.service(time.Hour)
	root := api.MigrationVolume{ID: "v1", Name: "root", Device: api.BootDevice, Format: "qcow2", SizeGiB: 1, PoolType: api.PoolLocal}
	svc.SetVolumes(bootOnH1{attachedVolumes{vols: []api.MigrationVolume{root}}})
	if _, err := svc.Create(ctx, "p", api.InstancesPost{Name: "b", Type: "vm", Flavor: "small", Image: "img", BootVolume: "root"}); err != nil {
		t.Fatal(err)
	}
	env.sync(svc)
	if n, _, _ := svc.scheduleOnce(ctx); n != 1 {
		t.Fatalf("placed %d", n)
	}
	env.sync(svc)
	env.run(svc, "b")
	if r, _, _ := svc.get(ctx, "p", "b"); r.Host != "h1" {
		t.Fatalf("b placed on %q, not where its volume is", r.Host)
	}
	plan, err := svc.EvacuationPlan(ctx, "h1")
	if err != nil || len(plan.Moves) != 1 || plan.Moves[0].Target == "" || plan.Moves[0].Target == "h1" {
		t.Fatalf("evacuation plan of h1: %+v %v", plan, err)
	}
	// Consolidation too may move it: its volume does not hold it there.
	// A second instance, held to h2, makes two hosts in use: b is the
	// one that can move.
	if _, err := svc.Create(ctx, "p", api.InstancesPost{Name: "c", Type: "vm", Flavor: "small", Image: "img", Requirements: `NAME = "h2"`}); err != nil {
		t.Fatal(err)
	}
	env.sync(svc)
	if n, _, _ := svc.scheduleOnce(ctx); n != 1 {
		t.Fatalf("placed %d", n)
	}
	env.sync(svc)
	env.run(svc, "c")
	cons, err := svc.Consolidation(ctx)
	if err != nil || len(cons.Moves) != 1 || cons.Moves[0].Instance != "b" || cons.Moves[0].To != "h2" {
		t.Fatalf("consolidation: %+v %v", cons, err)
	}
	if _, err := svc.Migrate(ctx, "p", "b", api.InstanceMigrate{Mode: api.MigrateCold}); err != nil {
		t.Fatalf("a cold move of a VM booting from a local volume: %v", err)
	}
	r, _, _ := svc.get(ctx, "p", "b")
	if m := assignmentMigration(&r); m == nil || m.Target == "h1" || len(m.Volumes) != 1 || m.Volumes[0].Device != api.BootDevice {
		t.Fatalf("the migration: %+v", m)
	}
}
