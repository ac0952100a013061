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
// attached is refused a cold move (only a live one copies the volume)
// and moves live with the volume listed in its migration, for both
// agents; one with only shared-pool volumes moves cold too.
func TestMigrationCarriesVolumes(t *testing.T) {
	ctx := context.Background()
	all := []string{api.CapMigrate, api.CapLiveMigrate}
	env := newCapsEnv(t, ctx, map[string][]string{"h1": all, "h2": all, "h3": all})
	svc := env.service(time.Hour)
	local := api.MigrationVolume{ID: "v1", Name: "data", Device: "vdb", Format: "qcow2", SizeGiB: 1, PoolType: api.PoolLocal}
	svc.SetVolumes(attachedVolumes{vols: []api.MigrationVolume{local}})
	env.placeOn(svc, "a", "h1")
	if _, err := svc.Migrate(ctx, "p", "a", api.InstanceMigrate{Mode: api.MigrateCold}); !errors.Is(err, errs.ErrConflict) || !strings.Contains(err.Error(), "volume data is in a local pool") {
		t.Fatalf("cold with a local volume: %v", err)
	}
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
