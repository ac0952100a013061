package volumes

import (
	"context"
	"slices"

	"github.com/kumocloud/kumo/api"
	"github.com/kumocloud/kumo/internal/errs"
	"github.com/kumocloud/kumo/internal/events"
	"github.com/kumocloud/kumo/internal/store"
)

// Volumes that go with a migrating instance (compute's migrations.go).
// Those of a local pool are copied to the target (a live migration
// mirrors them, as the instance's own disk; a cold one streams their
// files) and their home switches to
// the target in the transaction that commits the instance's move, so the
// store names one host for them at every instant; volumes of a pool every
// host mounts need no copy. A failed move leaves the store as it was: the
// target's agent removes the copy it made (no volume lists it there).

// MigrationVolumes lists the volumes attached to an instance (its boot
// volume included) as its migration carries them, a local volume's
// snapshots (kept beside it on its host) named: a cold move carries them
// too. A volume being detached, not yet attached on the instance's host,
// or with a snapshot being taken or deleted refuses the move (409, naming
// it).
func (svc *Service) MigrationVolumes(ctx context.Context, project, instanceID string) ([]api.MigrationVolume, error) {
	pools, err := svc.pools(ctx)
	if err != nil {
		return nil, err
	}
	items, err := store.ListJSON[record](ctx, svc.s, prefix+project+"/")
	if err != nil {
		return nil, err
	}
	var out []api.MigrationVolume
	for _, it := range items {
		r := it.Value
		a := r.Attachment
		if a == nil || a.InstanceID != instanceID {
			continue
		}
		p := pools[r.Pool]
		switch {
		case r.Detaching:
			return nil, errs.Conflict("volume %q is being detached from the instance: wait until it is, then migrate", r.Name)
		case !a.Attached && a.Device != api.BootDevice:
			return nil, errs.Conflict("volume %q is not attached on the instance's host yet: wait until it is, then migrate", r.Name)
		case r.Move != nil:
			return nil, errs.Conflict("volume %q is moving", r.Name)
		}
		mv := api.MigrationVolume{ID: r.ID, Name: r.Name, Device: a.Device, Path: a.Path, Format: r.Format,
			SizeGiB: r.SizeGiB, PoolType: p.Type, PoolPath: p.Path}
		if p.Type == api.PoolLocal {
			if mv.Snapshots, err = svc.settledSnapshots(ctx, project, r.Name); err != nil {
				return nil, err
			}
		}
		out = append(out, mv)
	}
	return out, nil
}

// MigrationCommit is the volumes' part of the transaction that commits
// an instance's move to target: every local volume attached to it gets
// the target as its home, conditional on its record being as read. A
// local volume attached to it that the migration did not carry (moved),
// or whose snapshots are not those it carried, is an error: its bytes are
// not on the target.
func (svc *Service) MigrationCommit(ctx context.Context, project, instanceID, target string, moved []api.MigrationVolume) ([]store.Cond, []store.Op, error) {
	pools, err := svc.pools(ctx)
	if err != nil {
		return nil, nil, err
	}
	items, err := store.ListJSON[record](ctx, svc.s, prefix+project+"/")
	if err != nil {
		return nil, nil, err
	}
	var conds []store.Cond
	var ops []store.Op
	for _, it := range items {
		r := it.Value
		if a := r.Attachment; a == nil || a.InstanceID != instanceID || pools[r.Pool].Type != api.PoolLocal {
			continue
		}
		if !slices.ContainsFunc(moved, func(m api.MigrationVolume) bool { return m.ID == r.ID && m.PoolType == api.PoolLocal }) {
			return nil, nil, errs.Conflict("volume %q was attached during the migration: it is still on host %q only", r.Name, r.Host)
		}
		if r.Detaching {
			return nil, nil, errs.Conflict("volume %q was asked to detach during the migration", r.Name)
		}
		i := slices.IndexFunc(moved, func(m api.MigrationVolume) bool { return m.ID == r.ID })
		if snaps, err := svc.settledSnapshots(ctx, project, r.Name); err != nil && errs.KindOf(err) != errs.KindConflict {
			return nil, nil, err
		} else if err != nil || !sameSet(snaps, moved[i].Snapshots) {
			return nil, nil, errs.Conflict("volume %q's snapshots changed during the migration (they are kept on host %q)", r.Name, r.Host)
		}
		r.Host, r.UpdatedAt = target, svc.now().UTC()
		conds = append(conds, store.At(key(project, r.Name), it.Revision))
		ops = append(ops, store.PutJSON(key(project, r.Name), r), events.Op(ctx, "volume", events.Updated, project, url(project, r.Name), r.Volume))
	}
	return conds, ops, nil
}

// Migrating is what the agent view needs of an instance that migrates
// (live or cold): the host it goes to, while its transfer lasts.
type Migrating interface {
	MigrationTarget(ctx context.Context, project, name string) (string, bool)
}

// incomingView lists, for an agent, the local volumes a migration in
// transfer (live or cold) copies to one of its hosts (Incoming): the files the
// target's agent made to receive them are then kept by its sweep, also
// after it restarted, until the move commits (and the volume's home is
// that host) or is rolled back (and nothing lists them: swept).
func incomingView(ctx context.Context, vs []agentVolume, hosts map[string]bool, live Live, pools map[string]api.StoragePool) []api.AgentVolume {
	mg, ok := live.(Migrating)
	if !ok {
		return nil
	}
	var out []api.AgentVolume
	for _, v := range vs {
		r := v.rec
		if r.Attachment == nil || v.gone || pools[r.Pool].Type != api.PoolLocal {
			continue
		}
		to, ok := mg.MigrationTarget(ctx, r.Project, r.Attachment.Instance)
		if !ok || !hosts[to] || hosts[v.handler] {
			continue
		}
		p := pools[r.Pool]
		out = append(out, api.AgentVolume{ID: r.ID, Project: r.Project, Name: r.Name, Host: to, SizeGiB: r.SizeGiB, Format: r.Format,
			PoolType: p.Type, PoolPath: p.Path, Incoming: true})
	}
	return out
}

// settledSnapshots are the ids of a volume's snapshots, all made; one
// being taken or deleted is a conflict (wait for it).
func (svc *Service) settledSnapshots(ctx context.Context, project, volume string) ([]string, error) {
	items, err := store.ListJSON[api.VolumeSnapshot](ctx, svc.s, snapPrefix+project+"/"+volume+"/")
	if err != nil {
		return nil, err
	}
	var ids []string
	for _, it := range items {
		if st := it.Value.Status; st != api.VolumeAvailable {
			return nil, errs.Conflict("snapshot %q of volume %q is %s, not made: wait for it (or delete it), then migrate", it.Value.Name, volume, st)
		}
		ids = append(ids, it.Value.ID)
	}
	slices.Sort(ids)
	return ids, nil
}

func sameSet(a, b []string) bool {
	return slices.Equal(slices.Sorted(slices.Values(a)), slices.Sorted(slices.Values(b)))
}
