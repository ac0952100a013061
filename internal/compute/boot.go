package compute

import (
	"context"

	"github.com/kumocloud/kumo/api"
	"github.com/kumocloud/kumo/internal/errs"
	"github.com/kumocloud/kumo/internal/scheduler"
	"github.com/kumocloud/kumo/internal/store"
	"github.com/kumocloud/kumo/internal/volumes"
)

// Boot volumes (internal/volumes/boot.go): a VM created with boot_volume
// or root_volume_size_gib has a persistent volume as its root disk. The
// volume service plans it (the volume's record, attached to the instance
// as vda); the plan is written in the instance's own transaction. The
// instance then goes where the volume lives, if it is in a local pool (a
// new root volume is made on the host the instance is placed on, and
// keeps the instance there).

// Volumes is what the compute service needs of the volume service.
type Volumes interface {
	PlanBoot(ctx context.Context, project string, in volumes.BootInstance, req api.InstancesPost) (volumes.BootPlan, error)
	PlanConflict(ctx context.Context, project string, p volumes.BootPlan) error
	// MigrationVolumes and MigrationCommit: the volumes that go with a
	// migrating instance (migrate_volumes.go).
	MigrationVolumes(ctx context.Context, project, instanceID string) ([]api.MigrationVolume, error)
	MigrationCommit(ctx context.Context, project, instanceID, target string, moved []api.MigrationVolume) ([]store.Cond, []store.Op, error)
	// PlanHA: the volumes of an instance an HA decision would recreate
	// elsewhere, and the changes that hand its shared ones over (ha.go).
	PlanHA(ctx context.Context, project, instanceID string) (volumes.HAPlan, error)
}

// noVolumes is a cloud without a volume service.
type noVolumes struct{}

func (noVolumes) PlanBoot(_ context.Context, _ string, _ volumes.BootInstance, req api.InstancesPost) (volumes.BootPlan, error) {
	if req.BootVolume != "" || req.RootVolumeSizeGiB != 0 {
		return volumes.BootPlan{}, errs.Invalid("boot_volume", "this cloud has no volume service")
	}
	return volumes.BootPlan{}, nil
}

func (noVolumes) PlanConflict(context.Context, string, volumes.BootPlan) error { return nil }

func (noVolumes) MigrationVolumes(context.Context, string, string) ([]api.MigrationVolume, error) {
	return nil, nil
}

func (noVolumes) MigrationCommit(context.Context, string, string, string, []api.MigrationVolume) ([]store.Cond, []store.Op, error) {
	return nil, nil, nil
}

func (noVolumes) PlanHA(context.Context, string, string) (volumes.HAPlan, error) {
	return volumes.HAPlan{}, nil
}

// SetVolumes gives the compute service the volume service (made after it:
// the volume service asks compute about instances).
func (svc *Service) SetVolumes(v Volumes) { svc.volumes = v }

// bootVolume is what an instance's record keeps of its boot volume.
type bootVolume struct {
	ID string `json:"id"`
	// Host is the host of a volume of a local pool ("" for a shared pool,
	// or a new root volume: Local says it stays where the instance is).
	Host  string `json:"host,omitempty"`
	Local bool   `json:"local,omitempty"`
}

// volumeNeeds are the volumes that decide where the instance may go: a
// boot volume of a local pool lives on one host, and a new root volume on
// the host the instance was placed on (or lost: an HA instance whose root
// is on a lost host cannot be recreated elsewhere).
func (r *record) volumeNeeds() []scheduler.VolumeNeed {
	b := r.Boot
	if b == nil || !b.Local {
		return nil
	}
	host := b.Host
	for _, h := range []string{r.Host, r.home(), r.Rehome} {
		if host == "" {
			host = h
		}
	}
	return []scheduler.VolumeNeed{{Name: r.BootVolume, Host: host}}
}

// bootID is the boot volume's id for the instance's assignment.
func (r *record) bootID() string {
	if r.Boot == nil {
		return ""
	}
	return r.Boot.ID
}
