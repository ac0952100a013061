package volumes

import (
	"context"
	"errors"

	"github.com/kumocloud/kumo/api"
	"github.com/kumocloud/kumo/internal/errs"
	"github.com/kumocloud/kumo/internal/events"
	"github.com/kumocloud/kumo/internal/store"
)

// Live is what the agent side needs of instances: the id and host of a
// live instance ("" when it is on no host), NotFound when it is gone.
type Live interface {
	LiveInstance(ctx context.Context, project, name string) (id, typ, host string, err error)
}

// handler is the host whose agent carries a volume out: the instance's
// host for a volume of a shared pool attached to a placed instance, or for
// a new root volume not made yet (boot.go), else the volume's home.
func handler(r *record, shared bool, instHost string) string {
	if (shared || r.Host == "") && r.Attachment != nil && instHost != "" {
		return instHost
	}
	return r.Host
}

// agentVolume is a volume as the agent whose hosts have it sees it: with
// its attachment when the instance it is attached to is live (and not
// being detached), for the agent to carry out.
type agentVolume struct {
	rec     record
	rev     int64
	handler string
	attach  *api.AgentVolumeAttach
	gone    bool // the attached instance is gone
}

func (svc *Service) agentVolumes(ctx context.Context, live Live) ([]agentVolume, error) {
	pools, err := svc.pools(ctx)
	if err != nil {
		return nil, err
	}
	items, err := store.ListJSON[record](ctx, svc.s, prefix)
	if err != nil {
		return nil, err
	}
	out := make([]agentVolume, 0, len(items))
	for _, it := range items {
		r := it.Value
		v := agentVolume{rec: r, rev: it.Revision}
		instHost := ""
		if a := r.Attachment; a != nil {
			id, typ, host, err := live.LiveInstance(ctx, r.Project, a.Instance)
			switch {
			case errors.Is(err, errs.ErrNotFound) || err == nil && id != a.InstanceID:
				v.gone = true
			case err != nil:
				return nil, err
			default:
				instHost = host
				if !r.Detaching {
					v.attach = &api.AgentVolumeAttach{InstanceID: id, Type: typ, Device: a.Device, Path: a.Path}
				}
			}
		}
		shared := pools[r.Pool].Type == api.PoolSharedDir
		v.handler = handler(&r, shared, instHost)
		if shared && instHost == "" && v.attach != nil && rehoming(ctx, live, &r) {
			// Its instance's lost host must not take it up again (ha.go).
			v.handler, v.attach = "", nil
		}
		out = append(out, v)
	}
	return out, nil
}

// AgentView is the complete list of the volumes an agent's hosts handle.
func (svc *Service) AgentView(ctx context.Context, hosts map[string]bool, live Live) (api.AgentVolumes, error) {
	vs, err := svc.agentVolumes(ctx, live)
	if err != nil {
		return api.AgentVolumes{}, err
	}
	pools, err := svc.pools(ctx)
	if err != nil {
		return api.AgentVolumes{}, err
	}
	snaps, err := svc.snapshotsByVolume(ctx)
	if err != nil {
		return api.AgentVolumes{}, err
	}
	backups, err := svc.backupsByVolume(ctx)
	if err != nil {
		return api.AgentVolumes{}, err
	}
	out := api.AgentVolumes{Items: []api.AgentVolume{}}
	for _, v := range vs {
		if !hosts[v.handler] {
			continue
		}
		r, p := v.rec, pools[v.rec.Pool]
		av := api.AgentVolume{ID: r.ID, Project: r.Project, Name: r.Name, Host: v.handler, SizeGiB: r.SizeGiB,
			Format: r.Format, PoolType: p.Type, PoolPath: p.Path, ImageSHA256: r.ImageSHA256, ImageFormat: r.ImageFormat,
			Delete: r.Status == api.VolumeDeleting, Attach: v.attach, FromVolume: r.FromVolume, FromSnapshot: r.FromSnapshot, Revert: r.Revert,
			FromBackup: r.FromBackup, Backups: backups[r.ID]}
		for _, s := range snaps[r.ID] {
			av.Snapshots = append(av.Snapshots, api.AgentSnapshot{ID: s.Value.ID, Delete: s.Value.Status == api.VolumeDeleting})
		}
		out.Items = append(out.Items, av)
	}
	byID, err := svc.backupsByID(ctx)
	if err != nil {
		return api.AgentVolumes{}, err
	}
	out.Items = append(out.Items, svc.moveView(vs, hosts, pools, byID)...)
	out.Items = append(out.Items, incomingView(ctx, vs, hosts, live, pools)...)
	out.Roots, err = rootView(ctx, hosts, live, byID)
	return out, err
}

// VolumeImage says whether a volume an agent's hosts handle is made from
// the image with these bytes (the agent may then fetch them).
func (svc *Service) VolumeImage(ctx context.Context, hosts map[string]bool, live Live, sum string) (bool, error) {
	view, err := svc.AgentView(ctx, hosts, live)
	if err != nil {
		return false, err
	}
	for _, v := range view.Items {
		if sum != "" && v.ImageSHA256 == sum {
			return true, nil
		}
	}
	return false, nil
}

// Report applies an agent's volume reports: only of volumes its hosts
// handle. A made volume becomes available (or in use), a deleted one goes
// with its quota, an attachment is confirmed or, once let go, removed.
func (svc *Service) Report(ctx context.Context, hosts map[string]bool, live Live, reps []api.VolumeReport) error {
	vs, err := svc.agentVolumes(ctx, live)
	if err != nil {
		return err
	}
	snaps, err := svc.snapshotsByVolume(ctx)
	if err != nil {
		return err
	}
	took, err := svc.reportMoves(ctx, vs, hosts, reps)
	if err != nil {
		return err
	}
	making, err := svc.backupsByVolume(ctx)
	if err != nil {
		return err
	}
	byID := map[string]agentVolume{}
	for _, v := range vs {
		if hosts[v.handler] && !took[v.rec.ID] {
			byID[v.rec.ID] = v
		}
	}
	for _, rep := range reps {
		v, ok := byID[rep.ID]
		if !ok {
			continue
		}
		r := v.rec
		if err := svc.reportSnapshots(ctx, snaps[r.ID], rep.Snapshots); err != nil {
			return err
		}
		if rep.Status == "gone" {
			if r.Status == api.VolumeDeleting {
				if err := svc.remove(ctx, r, v.rev); err != nil && !errors.Is(err, store.ErrConflict) {
					return err
				}
			}
			continue
		}
		next := r
		if next.Attachment != nil {
			a := *next.Attachment
			next.Attachment = &a
		}
		switch rep.Status {
		case "ready":
			next.HostSizeGiB, next.Error = rep.SizeGiB, ""
			if next.Status == api.VolumeCreating || next.Status == api.VolumeError {
				next.Status = api.VolumeAvailable
			}
			if next.Host == "" {
				// A new root volume is made on its instance's host: its home now.
				next.Host = v.handler
			}
		case "error":
			next.Error = rep.Error
			if rep.SizeGiB > 0 {
				next.HostSizeGiB = rep.SizeGiB
			}
			if next.Status == api.VolumeCreating {
				next.Status = api.VolumeError
			}
		}
		if a := next.Attachment; a != nil {
			switch {
			case rep.AttachedTo == a.InstanceID && v.attach != nil:
				a.Attached = true
			case rep.AttachedTo == "" && v.gone && next.DeleteOnTerminate && len(making[r.ID]) > 0:
				// Deleted with its instance once the backup being made
				// of it is (its host would remove the file under it).
			case rep.AttachedTo == "" && (v.attach == nil || v.gone):
				// Let go after a detach, or the instance is gone.
				next.Attachment, next.Detaching = nil, false
				if v.gone && next.DeleteOnTerminate {
					next.Status = api.VolumeDeleting
				}
			}
		}
		if next.Revert != nil && rep.Reverted == next.Revert.ID {
			next.Revert, next.Status = nil, api.VolumeAvailable
		}
		if next.Status == api.VolumeInUse && next.Attachment == nil {
			next.Status = api.VolumeAvailable
		}
		if next.Status == api.VolumeAvailable && next.Attachment != nil {
			next.Status = api.VolumeInUse
		}
		if same(r, next) {
			continue
		}
		next.UpdatedAt = svc.now().UTC()
		_, err := svc.s.Txn(ctx, []store.Cond{store.At(key(r.Project, r.Name), v.rev)}, []store.Op{
			store.PutJSON(key(r.Project, r.Name), next), events.Op(ctx, "volume", events.Updated, r.Project, url(r.Project, r.Name), next.Volume)})
		if err != nil && !errors.Is(err, store.ErrConflict) {
			return err
		}
	}
	return nil
}

func same(a, b record) bool {
	if (a.Attachment == nil) != (b.Attachment == nil) || a.Attachment != nil && *a.Attachment != *b.Attachment {
		return false
	}
	return (a.Revert == nil) == (b.Revert == nil) && a.Status == b.Status && a.Host == b.Host && a.HostSizeGiB == b.HostSizeGiB && a.Error == b.Error && a.Detaching == b.Detaching
}
