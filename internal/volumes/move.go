package volumes

import (
	"context"
	"errors"

	"github.com/google/uuid"

	"github.com/kumocloud/kumo/api"
	"github.com/kumocloud/kumo/internal/errs"
	"github.com/kumocloud/kumo/internal/events"
	"github.com/kumocloud/kumo/internal/quota"
	"github.com/kumocloud/kumo/internal/store"
)

// Moves: a detached volume of the local pool is copied to another host
// through the server's backup store, then its old file goes. The move is
// kept in the volume's record (Move) and every step is level-triggered,
// so a crash of the server or of either agent at any point converges:
//
//  1. sending: the volume is "moving"; its home sends a backup of it (a
//     backup record named move-..., made as any backup is).
//  2. restoring: once that backup is available, the target host's agent
//     sees the volume too (FromBackup: the move's backup) and makes it
//     there; its report "ready" switches the volume's home to the target
//     (status available) in one CAS.
//  3. cleaning: the old home sees the volume as deleted and removes its
//     file; its report "gone" ends the move and drops the backup.
//
// A failed backup or restore ends the move with the volume where it was
// (the error says why); a target that failed is asked to remove what it
// made, as an old home is, before the volume may move again (and any
// file no volume lists is removed by its agent's sweep).
// Before the switch the store names the old home, after it the new one:
// the volume is on exactly one host as far as instances see.

// move is a move under way.
type move struct {
	From       string `json:"from"`
	To         string `json:"to"`
	Backup     string `json:"backup"`      // the id of the backup carrying the bytes
	BackupName string `json:"backup_name"` // its name in the project
	// Switched: the target made it and is the volume's home; the old home
	// is left to remove its file.
	Switched bool `json:"switched,omitempty"`
}

// Move starts moving a detached volume of a local pool to another host:
// req.Host (a cloud admin) or the host of the instance req.Near.
func (svc *Service) Move(ctx context.Context, project, name string, req api.VolumeMove, admin bool) (api.Volume, error) {
	switch {
	case req.Host != "" && !admin:
		return api.Volume{}, errs.Forbidden("only a cloud admin may name a host; move a volume near an instance of yours instead")
	case req.Host != "" && req.Near != "":
		return api.Volume{}, errs.Invalid("near", "give host or near, not both")
	case req.Host == "" && req.Near == "":
		return api.Volume{}, errs.Invalid("host", "give the host to move the volume to (host, or near an instance)")
	}
	r, rev, err := svc.get(ctx, project, name)
	if err != nil {
		return api.Volume{}, err
	}
	pools, err := svc.pools(ctx)
	if err != nil {
		return api.Volume{}, err
	}
	if p := pools[r.Pool]; p.Type != api.PoolLocal {
		return api.Volume{}, errs.Conflict("volume %q is in the %s pool %q, which every host mounts: it attaches on any host as it is, no move needed", name, p.Type, r.Pool)
	}
	switch {
	case r.Move != nil && !r.Move.Switched:
		return api.Volume{}, errs.Conflict("volume %q is already moving to host %q", name, r.Move.To)
	case r.Move != nil:
		return api.Volume{}, errs.Conflict("host %q still removes a copy of volume %q a move left; try again in a moment", r.Move.From, name)
	case r.Attachment != nil:
		return api.Volume{}, errs.Conflict("volume %q is attached to instance %q: detach it first (only a detached volume moves)", name, r.Attachment.Instance)
	case r.Status != api.VolumeAvailable:
		return api.Volume{}, errs.Conflict("volume %q is %s: only an available volume moves", name, r.Status)
	}
	if snaps, err := store.ListAll(ctx, svc.s, snapPrefix+project+"/"+name+"/"); err != nil {
		return api.Volume{}, err
	} else if len(snaps) > 0 {
		return api.Volume{}, errs.Conflict("volume %q has %d snapshots, kept beside it on host %q: delete them first", name, len(snaps), r.Host)
	}
	to, err := svc.moveTarget(ctx, project, r.Host, req)
	if err != nil {
		return api.Volume{}, err
	}
	t := svc.now().UTC()
	id := uuid.NewString()
	b := api.VolumeBackup{Meta: api.Meta{ID: id, Name: "move-" + id[:8], CreatedAt: t, UpdatedAt: t},
		Project: project, Volume: name, VolumeID: r.ID, SizeGiB: r.SizeGiB, Format: r.Format, Status: api.VolumeCreating}
	r.Move = &move{From: r.Host, To: to, Backup: b.ID, BackupName: b.Name}
	r.Status, r.MovingTo, r.Error, r.UpdatedAt = api.VolumeMoving, to, "", t
	bk := backupKey(project, b.Name)
	// The move's backup counts in the backups quota while it lasts, as
	// any backup does (so deleting one a failed move left gives back what
	// it took).
	nrev, err := quota.Reserve(ctx, svc.s, project, backupCounts(1, b.SizeGiB), []store.Cond{store.At(key(project, name), rev), store.Absent(bk)},
		[]store.Op{store.PutJSON(key(project, name), r), store.PutJSON(bk, b),
			events.Op(ctx, "volume", events.Updated, project, url(project, name), r.Volume)})
	if errors.Is(err, store.ErrConflict) {
		return api.Volume{}, errs.Conflict("volume %q changed meanwhile; try again", name)
	}
	r.Revision = nrev
	return r.view(), err
}

// moveTarget checks where a volume on host from may move: a known,
// online, enabled host other than its home, run by another agent (hosts
// of one agent share its pool), its home online too (it sends the bytes).
func (svc *Service) moveTarget(ctx context.Context, project, from string, req api.VolumeMove) (string, error) {
	field, to := "host", req.Host
	if req.Near != "" {
		in, _, err := svc.inst.Get(ctx, project, req.Near)
		if err != nil {
			return "", err
		}
		if field, to = "near", instanceHost(in); to == "" {
			return "", errs.Conflict("instance %q is not on a host yet (%s): wait until it is placed", req.Near, in.State)
		}
	}
	hosts, _, err := svc.hosts.List(ctx, "", 0)
	if err != nil {
		return "", err
	}
	byName := map[string]api.Host{}
	for _, h := range hosts {
		byName[h.Name] = h
	}
	dst, ok := byName[to]
	src := byName[from]
	switch {
	case !ok:
		return "", errs.Invalid(field, "no host %q", to)
	case to == from:
		return "", errs.Invalid(field, "the volume is on host %q already", to)
	case dst.State != api.HostOnline:
		return "", errs.Conflict("host %q is %s: a volume moves to an online host", to, dst.State)
	case !dst.Enabled || dst.Draining:
		return "", errs.Conflict("host %q takes no new volumes (disabled or draining)", to)
	case src.State != api.HostOnline:
		return "", errs.Conflict("the volume's host %q is %s: it must be online to send the volume", from, src.State)
	case src.Agent != "" && src.Agent == dst.Agent:
		return "", errs.Invalid(field, "hosts %q and %q are run by one agent and share its pool: there is nothing to copy", from, to)
	}
	return to, nil
}

// moveView adds to an agent's view the other side of the moves under
// way: the target of a move whose backup is made (it restores it), the
// old home of a switched one (it deletes its file).
func (svc *Service) moveView(vs []agentVolume, hosts map[string]bool, pools map[string]api.StoragePool, backups map[string]api.VolumeBackup) []api.AgentVolume {
	var out []api.AgentVolume
	for _, v := range vs {
		r, m := v.rec, v.rec.Move
		if m == nil {
			continue
		}
		p := pools[r.Pool]
		av := api.AgentVolume{ID: r.ID, Project: r.Project, Name: r.Name, SizeGiB: r.SizeGiB, Format: r.Format, PoolType: p.Type, PoolPath: p.Path}
		switch {
		case m.Switched && hosts[m.From]:
			av.Host, av.Delete = m.From, true
		case !m.Switched && hosts[m.To] && backups[m.Backup].Status == api.VolumeAvailable:
			av.Host, av.FromBackup = m.To, m.Backup
		default:
			continue
		}
		out = append(out, av)
	}
	return out
}

// backupsByID lists every backup by id.
func (svc *Service) backupsByID(ctx context.Context) (map[string]api.VolumeBackup, error) {
	items, err := store.ListJSON[api.VolumeBackup](ctx, svc.s, backupPrefix)
	out := map[string]api.VolumeBackup{}
	for _, it := range items {
		b := it.Value
		b.Revision = it.Revision
		out[b.ID] = b
	}
	return out, err
}

// reportMoves applies what an agent says of the other side of moves: the
// target made the volume (the switch), or could not (the move ends); the
// old home removed its file (the move is done). It also ends the moves
// whose backup failed or went. It says which reports it took.
func (svc *Service) reportMoves(ctx context.Context, vs []agentVolume, hosts map[string]bool, reps []api.VolumeReport) (map[string]bool, error) {
	backups, err := svc.backupsByID(ctx)
	if err != nil {
		return nil, err
	}
	byID := map[string]api.VolumeReport{}
	for _, rep := range reps {
		byID[rep.ID] = rep
	}
	took := map[string]bool{}
	var known map[string]bool // the hosts there are, read once a move needs them
	for _, v := range vs {
		r, m := v.rec, v.rec.Move
		if m == nil {
			continue
		}
		if known == nil && !m.Switched {
			hs, _, err := svc.hosts.List(ctx, "", 0)
			if err != nil {
				return nil, err
			}
			known = map[string]bool{}
			for _, h := range hs {
				known[h.Name] = true
			}
		}
		rep, said := byID[r.ID]
		b, ok := backups[m.Backup]
		next := r
		nm := *m
		next.Move = &nm
		switch {
		case !m.Switched && (!ok || b.Status == api.VolumeError || !known[m.To]):
			why := "its backup went"
			switch {
			case !known[m.To]:
				why = "the host was removed"
			case ok:
				why = b.Error
			}
			next.Move, next.Status, next.MovingTo, next.Error = nil, api.VolumeAvailable, "", "move to host "+m.To+" failed: "+why
		case !m.Switched && said && hosts[m.To]:
			took[r.ID] = true
			switch rep.Status {
			case "ready":
				nm.Switched = true
				next.Host, next.Status, next.MovingTo, next.HostSizeGiB, next.Error = m.To, api.VolumeAvailable, "", rep.SizeGiB, ""
			case "error":
				// The target may have made a file before it failed: it
				// removes it as an old home would (the move's last step).
				next.Move = &move{From: m.To, To: m.From, Backup: m.Backup, BackupName: m.BackupName, Switched: true}
				next.Status, next.MovingTo, next.Error = api.VolumeAvailable, "", "move to host "+m.To+" failed: "+rep.Error
			default:
				continue
			}
		case m.Switched && said && hosts[m.From]:
			took[r.ID] = true
			if rep.Status != "gone" {
				continue
			}
			next.Move = nil
		default:
			continue
		}
		next.UpdatedAt = svc.now().UTC()
		ops := []store.Op{store.PutJSON(key(r.Project, r.Name), next), events.Op(ctx, "volume", events.Updated, r.Project, url(r.Project, r.Name), next.Volume)}
		conds := []store.Cond{store.At(key(r.Project, r.Name), v.rev)}
		var err error
		if next.Move == nil && ok {
			// The move's backup goes with it: its quota and its metering.
			conds = append(conds, store.At(backupKey(b.Project, b.Name), b.Revision))
			ops = append(ops, store.Del(backupKey(b.Project, b.Name)), meterBackup(&b, 0, next.UpdatedAt))
			_, err = quota.Reserve(ctx, svc.s, r.Project, backupCounts(-1, -b.SizeGiB), conds, ops)
		} else {
			_, err = svc.s.Txn(ctx, conds, ops)
		}
		if err != nil && !errors.Is(err, store.ErrConflict) {
			return took, err
		}
		if next.Move == nil && ok {
			svc.dropUnusedChunks(ctx)
		}
	}
	return took, nil
}
