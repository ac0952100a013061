package compute

import (
	"context"
	"fmt"

	"github.com/kumocloud/kumo/api"
	"github.com/kumocloud/kumo/internal/store"
)

// Volumes that go with a migrating instance (internal/volumes/migrate.go):
// the volumes attached to it when its migration starts are kept in its
// record (MigVolumes) and handed to both agents with the migration. Those
// of a local pool are copied - a live migration mirrors them into empty
// ones the target makes, a cold one streams their files ahead of the
// instance's own (internal/agent/migrate_volumes_cold.go) - and the
// commit that puts the instance on its target gives them the target as
// their home in the same transaction. Attached volumes of a pool every
// host mounts need no copy.

// migrationVolumes lists what r's migration carries, or why it cannot
// move (internal/volumes' MigrationVolumes says).
func (svc *Service) migrationVolumes(ctx context.Context, r *record) ([]api.MigrationVolume, error) {
	return svc.volumes.MigrationVolumes(ctx, r.Project, r.ID)
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
