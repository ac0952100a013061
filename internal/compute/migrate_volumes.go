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
// record (MigVolumes) and handed to both agents with the migration. Those
// of a local pool are copied - a live migration mirrors them into empty
// ones the target makes, a cold one streams their files ahead of the
// instance's own, with their snapshots (internal/agent/
// migrate_volumes_cold.go) - and the
// commit that puts the instance on its target gives them the target as
// their home in the same transaction. Attached volumes of a pool every
// host mounts need no copy.

// migrationVolumes lists what r's migration carries and the mode it then
// runs in, or why it cannot move in the mode asked: a local volume's
// snapshots travel with it in a cold move only (a live one mirrors the
// volume alone), so a RUNNING VM with some moves cold unless live was
// asked for (then refused).
func (svc *Service) migrationVolumes(ctx context.Context, r *record, mode, asked string) ([]api.MigrationVolume, string, error) {
	vols, err := svc.volumes.MigrationVolumes(ctx, r.Project, r.ID)
	if err != nil {
		return nil, "", err
	}
	for _, v := range vols {
		if mode != api.MigrateLive || len(v.Snapshots) == 0 {
			continue
		}
		if asked == api.MigrateLive {
			return nil, "", errs.Conflict("cannot migrate instance %q live: volume %q has %d snapshots, which only a cold move carries (migrate it --cold, or delete them)", r.Name, v.Name, len(v.Snapshots))
		}
		mode = api.MigrateCold
	}
	return vols, mode, nil
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
