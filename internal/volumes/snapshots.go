package volumes

import (
	"context"
	"errors"
	"strings"

	"github.com/google/uuid"

	"github.com/kumocloud/kumo/api"
	"github.com/kumocloud/kumo/internal/errs"
	"github.com/kumocloud/kumo/internal/events"
	"github.com/kumocloud/kumo/internal/idempotency"
	"github.com/kumocloud/kumo/internal/quota"
	"github.com/kumocloud/kumo/internal/store"
	"github.com/kumocloud/kumo/internal/validate"
)

// Snapshots are a volume's content at a moment, kept by its host beside
// it (a standalone sparse copy: deleting the volume's other snapshots or
// reverting never touches one). They count in volume_gib at their
// volume's size. A volume with snapshots cannot be deleted.
//
// Keys: /volume-snapshots/{project}/{volume}/{name}.

const snapPrefix = "/volume-snapshots/"

func snapKey(project, volume, name string) string {
	return snapPrefix + project + "/" + volume + "/" + name
}

func snapURL(project, volume, name string) string {
	return url(project, volume) + "/snapshots/" + name
}

func (svc *Service) getSnapshot(ctx context.Context, project, volume, name string) (api.VolumeSnapshot, int64, error) {
	var s api.VolumeSnapshot
	rev, err := store.GetJSON(ctx, svc.s, snapKey(project, volume, name), &s)
	if errors.Is(err, store.ErrNotFound) {
		return s, 0, errs.NotFound("snapshot %q of volume %q not found", name, volume)
	}
	s.Revision = rev
	return s, rev, err
}

// GetSnapshot returns a snapshot.
func (svc *Service) GetSnapshot(ctx context.Context, project, volume, name string) (api.VolumeSnapshot, error) {
	if _, _, err := svc.get(ctx, project, volume); err != nil {
		return api.VolumeSnapshot{}, err
	}
	s, _, err := svc.getSnapshot(ctx, project, volume, name)
	return s, err
}

// ListSnapshots lists a volume's snapshots.
func (svc *Service) ListSnapshots(ctx context.Context, project, volume string) ([]api.VolumeSnapshot, error) {
	if _, _, err := svc.get(ctx, project, volume); err != nil {
		return nil, err
	}
	items, err := store.ListJSON[api.VolumeSnapshot](ctx, svc.s, snapPrefix+project+"/"+volume+"/")
	out := []api.VolumeSnapshot{}
	for _, it := range items {
		s := it.Value
		s.Revision = it.Revision
		out = append(out, s)
	}
	return out, err
}

// CreateSnapshot takes a snapshot of a volume (attached or not: its host
// copies a running VM's disk with QEMU's blockdev-backup, and freezes a
// container's filesystem while it copies), charged to volume_gib in the
// same transaction.
func (svc *Service) CreateSnapshot(ctx context.Context, project, volume string, req api.VolumeSnapshotsPost) (api.VolumeSnapshot, error) {
	if err := validate.Name("name", req.Name); err != nil {
		return api.VolumeSnapshot{}, err
	}
	r, rev, err := svc.get(ctx, project, volume)
	if err != nil {
		return api.VolumeSnapshot{}, err
	}
	if r.Status != api.VolumeAvailable && r.Status != api.VolumeInUse {
		return api.VolumeSnapshot{}, errs.Conflict("volume %q is %s: snapshots are taken of available or in-use volumes", volume, r.Status)
	}
	if a := r.Attachment; a != nil {
		// A snapshot is kept beside its volume: not while it moves with
		// its instance (migrate.go).
		if in, _, err := svc.inst.Get(ctx, project, a.Instance); err == nil && in.ID == a.InstanceID && in.State == api.StateMigrate {
			return api.VolumeSnapshot{}, errs.Conflict("instance %q is migrating: snapshot volume %q once it has moved", a.Instance, volume)
		}
	}
	t := svc.now().UTC()
	s := api.VolumeSnapshot{Meta: api.Meta{ID: uuid.NewString(), Name: req.Name, CreatedAt: t, UpdatedAt: t},
		Project: project, Volume: volume, VolumeID: r.ID, SizeGiB: r.SizeGiB, Status: api.VolumeCreating}
	k := snapKey(project, volume, req.Name)
	nrev, err := quota.Reserve(ctx, svc.s, project, snapCounts(1, s.SizeGiB), []store.Cond{store.Absent(k), store.At(key(project, volume), rev)},
		append([]store.Op{store.PutJSON(k, s), events.Op(ctx, "volume-snapshot", events.Created, project, snapURL(project, volume, req.Name), s), meterSnapshot(&s, s.SizeGiB, t)},
			idempotency.Done(ctx, s)...))
	if errors.Is(err, store.ErrConflict) {
		if _, _, gerr := svc.getSnapshot(ctx, project, volume, req.Name); gerr == nil {
			return api.VolumeSnapshot{}, errs.Conflict("volume %q already has a snapshot %q", volume, req.Name)
		}
		return api.VolumeSnapshot{}, errs.Conflict("volume %q changed meanwhile; try again", volume)
	}
	s.Revision = nrev
	return s, err
}

// DeleteSnapshot marks a snapshot for deletion; its host removes it.
func (svc *Service) DeleteSnapshot(ctx context.Context, project, volume, name string) (api.VolumeSnapshot, error) {
	r, _, err := svc.get(ctx, project, volume)
	if err != nil {
		return api.VolumeSnapshot{}, err
	}
	s, rev, err := svc.getSnapshot(ctx, project, volume, name)
	if err != nil {
		return api.VolumeSnapshot{}, err
	}
	if r.Revert != nil && r.Revert.Snapshot == s.ID {
		return api.VolumeSnapshot{}, errs.Conflict("volume %q is being reverted to snapshot %q", volume, name)
	}
	all, err := store.ListJSON[record](ctx, svc.s, prefix+project+"/")
	if err != nil {
		return api.VolumeSnapshot{}, err
	}
	for _, it := range all {
		if it.Value.FromSnapshot == s.ID && it.Value.Status == api.VolumeCreating {
			return api.VolumeSnapshot{}, errs.Conflict("volume %q is being made from snapshot %q", it.Value.Name, name)
		}
	}
	s.Status, s.UpdatedAt = api.VolumeDeleting, svc.now().UTC()
	k := snapKey(project, volume, name)
	nrev, err := svc.s.Txn(ctx, []store.Cond{store.At(k, rev)}, []store.Op{store.PutJSON(k, s),
		events.Op(ctx, "volume-snapshot", events.Updated, project, snapURL(project, volume, name), s)})
	if errors.Is(err, store.ErrConflict) {
		return api.VolumeSnapshot{}, errs.Conflict("snapshot %q changed meanwhile; try again", name)
	}
	s.Revision = nrev
	return s, err
}

// Revert asks a detached volume's host to bring its content back to a
// snapshot's; the volume is reverting until it has.
func (svc *Service) Revert(ctx context.Context, project, volume, snapshot string) (api.Volume, error) {
	if err := validate.Name("snapshot", snapshot); err != nil {
		return api.Volume{}, err
	}
	s, _, err := svc.getSnapshot(ctx, project, volume, snapshot)
	if err != nil {
		return api.Volume{}, err
	}
	if s.Status != api.VolumeAvailable {
		return api.Volume{}, errs.Conflict("snapshot %q is %s", snapshot, s.Status)
	}
	return svc.update(ctx, project, volume, func(r *record) error {
		if r.Status != api.VolumeAvailable || r.Attachment != nil {
			return errs.Conflict("volume %q is %s: only a detached, available volume is reverted", volume, r.Status)
		}
		r.Revert = &api.AgentRevert{ID: uuid.NewString(), Snapshot: s.ID}
		r.Status = api.VolumeReverting
		return nil
	})
}

// fromSnapshot fills a volume record made from a snapshot ("volume/name").
func (svc *Service) fromSnapshot(ctx context.Context, project string, req api.VolumesPost, r *record) error {
	vol, name, ok := strings.Cut(req.Snapshot, "/")
	if !ok {
		return errs.Invalid("snapshot", "snapshot %q: name it VOLUME/SNAPSHOT", req.Snapshot)
	}
	s, _, err := svc.getSnapshot(ctx, project, vol, name)
	if err != nil {
		return err
	}
	if s.Status != api.VolumeAvailable {
		return errs.Conflict("snapshot %q is %s", req.Snapshot, s.Status)
	}
	src, _, err := svc.get(ctx, project, vol)
	if err != nil {
		return err
	}
	if r.SizeGiB < s.SizeGiB {
		return errs.Invalid("size_gib", "snapshot %q is %d GiB: the volume must be at least that big", req.Snapshot, s.SizeGiB)
	}
	r.Host, r.Pool, r.Format, r.FromVolume, r.FromSnapshot = src.Host, src.Pool, src.Format, src.ID, s.ID
	return nil
}

// snapshotsByVolume lists every snapshot by its volume's id.
func (svc *Service) snapshotsByVolume(ctx context.Context) (map[string][]store.Item[api.VolumeSnapshot], error) {
	items, err := store.ListJSON[api.VolumeSnapshot](ctx, svc.s, snapPrefix)
	out := map[string][]store.Item[api.VolumeSnapshot]{}
	for _, it := range items {
		out[it.Value.VolumeID] = append(out[it.Value.VolumeID], it)
	}
	return out, err
}

// reportSnapshots applies an agent's word on a volume's snapshots.
func (svc *Service) reportSnapshots(ctx context.Context, snaps []store.Item[api.VolumeSnapshot], reps []api.SnapshotReport) error {
	byID := map[string]api.SnapshotReport{}
	for _, r := range reps {
		byID[r.ID] = r
	}
	for _, it := range snaps {
		s := it.Value
		rep, ok := byID[s.ID]
		if !ok {
			continue
		}
		k := snapKey(s.Project, s.Volume, s.Name)
		var err error
		switch {
		case rep.Status == "gone" && s.Status == api.VolumeDeleting:
			_, err = quota.Reserve(ctx, svc.s, s.Project, snapCounts(-1, -s.SizeGiB), []store.Cond{store.At(k, it.Revision)},
				[]store.Op{store.Del(k), events.Op(ctx, "volume-snapshot", events.Deleted, s.Project, snapURL(s.Project, s.Volume, s.Name), nil), meterSnapshot(&s, 0, svc.now())})
		case rep.Status == "ready" && s.Status == api.VolumeCreating, rep.Status == "error" && s.Status == api.VolumeCreating:
			s.Status, s.Error, s.UpdatedAt = api.VolumeAvailable, "", svc.now().UTC()
			if rep.Status == "error" {
				s.Status, s.Error = api.VolumeError, rep.Error
			}
			_, err = svc.s.Txn(ctx, []store.Cond{store.At(k, it.Revision)}, []store.Op{store.PutJSON(k, s),
				events.Op(ctx, "volume-snapshot", events.Updated, s.Project, snapURL(s.Project, s.Volume, s.Name), s)})
		}
		if err != nil && !errors.Is(err, store.ErrConflict) {
			return err
		}
	}
	return nil
}
