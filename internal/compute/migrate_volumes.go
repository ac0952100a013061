package compute

import (
	"context"
	"fmt"

	"github.com/kumocloud/kumo/api"
	"github.com/kumocloud/kumo/internal/errs"
	"github.com/kumocloud/kumo/internal/store"
)

// Volumes that go with a migrating instance (internal/volumes/migrate.go):
// the volumes attached to it when its migration starts are kept in its
// record (MigVolumes) and handed to both agents with the migration. A
// live migration copies those of a local pool (the source mirrors them
// into empty ones the target makes), and the commit that puts the
// instance on its target gives them the target as their home in the
// same transaction. A cold move carries no volume of a local pool and
// no VM booting from a volume (both refused: only a live migration copies
// them); attached volumes of a pool every host mounts need no copy, live
// or cold.

// migrationVolumes lists what r's migration carries, or why it cannot
// move in this mode.
func (svc *Service) migrationVolumes(ctx context.Context, r *record, mode string) ([]api.MigrationVolume, error) {
	vols, err := svc.volumes.MigrationVolumes(ctx, r.Project, r.ID)
	if err != nil {
		return nil, err
	}
	if mode == api.MigrateCold {
		if r.Boot != nil {
			return nil, errs.Conflict("cannot migrate instance %q cold: it boots from volume %q, and a VM booting from a volume moves live only (start it, then migrate it)", r.Name, r.BootVolume)
		}
		for _, v := range vols {
			if v.PoolType == api.PoolLocal {
				what := "volume " + v.Name
				if v.Device == api.BootDevice {
					what = "its boot volume " + v.Name
				}
				return nil, errs.Conflict("cannot migrate instance %q cold: %s is in a local pool, and only a live migration (of a RUNNING VM) copies a volume with its instance", r.Name, what)
			}
		}
	}
	return vols, nil
}

// localVolumes are the ids of the local-pool volumes a migration copies.
func localVolumes(vols []api.MigrationVolume) []string {
	var ids []string
	for _, v := range vols {
		if v.PoolType == api.PoolLocal {
			ids = append(ids, v.ID)
		}
	}
	return ids
}

// commitVolumes is the volumes' part of committing r's migration: the
// conditions and writes that give its local volumes the target as their
// home, for the commit's transaction. A conflict (a volume attached or
// detached meanwhile, whose bytes are not on the target) is the reason
// to roll the migration back instead; other errors are the store's.
func (svc *Service) commitVolumes(ctx context.Context, r *record) ([]store.Cond, []store.Op, error) {
	m := r.Migration
	return svc.volumes.MigrationCommit(ctx, r.Project, r.ID, m.Target, r.MigVolumes)
}

// volumesNote says, for the history, which volumes moved with the
// instance.
func volumesNote(vols []api.MigrationVolume, target string) string {
	n := ""
	for _, v := range vols {
		if v.PoolType == api.PoolLocal {
			if n != "" {
				n += ", "
			}
			n += v.Name
		}
	}
	if n == "" {
		return ""
	}
	return fmt.Sprintf("; volumes now on %s: %s", target, n)
}
