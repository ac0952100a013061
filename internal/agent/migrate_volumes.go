package agent

import (
	"context"
	"fmt"

	"github.com/kumocloud/kumo/api"
	"github.com/kumocloud/kumo/internal/driver"
	"github.com/kumocloud/kumo/internal/volumes/pool"
)

// Volumes that go with a migrating instance (the server's part is
// internal/volumes/migrate.go). The migration's assignment lists them.
//
//   - Target, live: each volume of a local pool is made here afresh as an
//     empty file of its size, which the source's QEMU mirrors into
//     (driver.Volume.Local); a volume of a shared pool is opened as it is.
//     Until the move commits no volume the view lists is there, so the
//     files are registered as incoming: the sweep keeps them. A receive
//     that fails, or a rollback, drops them from that list, and the next
//     sweep removes them - also after this agent restarted (the list is
//     in memory: nothing keeps them then). Once the move commits, the
//     view lists the volumes here (their home switched in the same
//     transaction) and the volume job takes them as attached.
//   - Source: while the instance leaves, its attachments are not undone
//     when the view stops listing its volumes (the commit moved them);
//     the migration's cleanup drops them once the instance is gone from
//     here, and the sweep then removes the local files nobody lists.
//
// Both hosts run by one agent share its pool: nothing is copied then.

// receiveVolumes makes, for a live migration's target, the volumes of
// instance id as its driver opens them.
func (j *volumeJob) receiveVolumes(ctx context.Context, id string, vols []api.MigrationVolume) ([]driver.Volume, error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	var out []driver.Volume
	for _, v := range vols {
		if err := pool.CheckID(v.ID); err != nil {
			return nil, err
		}
		av := api.AgentVolume{ID: v.ID, Name: v.Name, SizeGiB: v.SizeGiB, Format: v.Format, PoolType: v.PoolType, PoolPath: v.PoolPath,
			Attach: &api.AgentVolumeAttach{InstanceID: id, Type: api.TypeVM, Device: v.Device, Path: v.Path}}
		b, err := j.backend(av)
		if err != nil {
			return nil, err
		}
		pv := poolVolume(av)
		local := v.PoolType == api.PoolLocal
		if local {
			if a, ok := j.att[v.ID]; ok {
				return nil, fmt.Errorf("volume %s is attached to instance %s on this host already", v.Name, a.InstanceID)
			}
			if j.incoming == nil {
				j.incoming = map[string]string{}
			}
			j.incoming[v.ID] = id
			// What an earlier try left is made afresh: the mirror
			// fills an empty file.
			if err := b.Remove(ctx, v.ID); err != nil {
				return nil, err
			}
			if _, err := b.Ensure(ctx, pv); err != nil {
				return nil, fmt.Errorf("making volume %s to receive it: %w", v.Name, err)
			}
		} else if !b.Exists(pv) {
			return nil, fmt.Errorf("volume %s is not in pool %s on this host", v.Name, v.PoolPath)
		}
		dv := driverVolume(av, b, "")
		dv.Local = local
		out = append(out, dv)
	}
	sortVolumes(out)
	return out, nil
}

// dropIncoming forgets the volumes received for instance id (and the
// attachments a cold move made of them): the next sweep removes their
// files unless the view lists them here by then.
func (j *volumeJob) dropIncoming(id string) {
	j.mu.Lock()
	defer j.mu.Unlock()
	changed := false
	for v, inst := range j.incoming {
		if inst != id {
			continue
		}
		delete(j.incoming, v)
		if a, ok := j.att[v]; ok && a.InstanceID == id {
			if a.Mount != "" {
				if err := pool.UnmountFS(a.Mount); err != nil {
					j.log.Warn("unmounting a volume a failed move brought", "volume", v, "err", err)
					continue
				}
			}
			delete(j.att, v)
			changed = true
		}
	}
	if changed {
		j.save()
	}
}

// leave marks instance id as leaving this host (true) or staying.
func (j *volumeJob) leave(id string, leaving bool) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.leaving == nil {
		j.leaving = map[string]bool{}
	}
	if leaving {
		j.leaving[id] = true
	} else {
		delete(j.leaving, id)
	}
}

// left drops the attachments of instance id, which migrated away and is
// gone from this host: its driver has nothing to undo.
func (j *volumeJob) left(id string) {
	j.mu.Lock()
	defer j.mu.Unlock()
	delete(j.leaving, id)
	changed := false
	for v, a := range j.att {
		if a.InstanceID != id {
			continue
		}
		if a.Mount != "" {
			if err := pool.UnmountFS(a.Mount); err != nil {
				j.log.Warn("unmounting a migrated instance's volume", "volume", v, "err", err)
				continue
			}
		}
		delete(j.att, v)
		changed = true
	}
	if changed {
		j.save()
	}
}

// ownVolumes are the volumes of instance id as attached here (both hosts
// of a migration are this agent's: nothing is copied).
func (j *volumeJob) ownVolumes(id string) []driver.Volume {
	j.mu.Lock()
	defer j.mu.Unlock()
	var out []driver.Volume
	for _, a := range j.att {
		if a.InstanceID == id {
			out = append(out, a.Volume)
		}
	}
	sortVolumes(out)
	return out
}

// migrationVolumes gives the target's spec its volumes: those receive
// makes here (live: empty files the mirror fills; cold: read from the
// stream), or the source's own attachments when both hosts are this
// agent's.
func (mg *migrations) migrationVolumes(as api.Assignment, s driver.Spec, receive func(j *volumeJob) ([]driver.Volume, error)) (driver.Spec, error) {
	m := as.Migration
	s.BootVolume = as.BootVolume
	if mg.vols == nil || len(m.Volumes) == 0 {
		return s, nil
	}
	if mg.hosts[m.Source] {
		s.Volumes = mg.vols.ownVolumes(as.ID)
		return s, nil
	}
	vs, err := receive(mg.vols)
	if err != nil {
		mg.vols.dropIncoming(as.ID)
		return s, err
	}
	s.Volumes = vs
	return s, nil
}

// copyVolumes are the volumes the source copies: those of a local pool,
// unless both hosts are this agent's.
func (mg *migrations) copyVolumes(m *api.AssignmentMigration) []string {
	if mg.hosts[m.Target] {
		return nil
	}
	var ids []string
	for _, v := range m.Volumes {
		if v.PoolType == api.PoolLocal {
			ids = append(ids, v.ID)
		}
	}
	return ids
}

// dropIncoming: a receive that failed leaves no volume file here.
func (mg *migrations) dropIncoming(as api.Assignment) {
	if mg.vols != nil {
		mg.vols.dropIncoming(as.ID)
	}
}
