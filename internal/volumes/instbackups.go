package volumes

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/google/uuid"

	"github.com/kumocloud/kumo/api"
	"github.com/kumocloud/kumo/internal/errs"
	"github.com/kumocloud/kumo/internal/events"
	"github.com/kumocloud/kumo/internal/idempotency"
	"github.com/kumocloud/kumo/internal/quota"
	"github.com/kumocloud/kumo/internal/store"
	"github.com/kumocloud/kumo/internal/validate"
)

// Instance backups (what Proxmox's vzdump makes): an instance's
// definition and a backup of every volume attached to it (its boot volume
// included) and of its own root disk (rootbackups.go), made in one
// transaction: the instance backup's record, one volume backup per volume
// and one of its root disk (marked with the instance backup's name) and
// their quota. The volume backups are then made by the volumes' hosts
// exactly as any volume backup is (level-triggered: the agents' volume
// rounds send them; a crash anywhere is picked up by the next round), and
// the instance backup's status is read from theirs: nothing else to
// drive, nothing to resume.
//
// A restore is one transaction too (PlanRestore, written by compute with
// the new instance, its ports and its quota): every volume is a new
// record restored from its volume backup, attached to the new instance
// where it was, with no host yet; the instance's host makes them (the
// handler of an unhomed attached volume is its instance's host, as for a
// new root volume) and its PROLOG waits for them. So the volumes are
// where the instance is, on a host the scheduler found able to take it.
//
// Keys: /instance-backups/{project}/{name}.

const ibPrefix = "/instance-backups/"

func ibKey(project, name string) string { return ibPrefix + project + "/" + name }

func ibURL(project, name string) string {
	return "/v1/projects/" + project + "/instance-backups/" + name
}

// ibBackupName names the volume backup of an instance backup's volume:
// NAME-vdX for a VM's disk, NAME-volN for a container's N-th volume.
func ibBackupName(name string, v api.VolumeAttachment, i int) string {
	if v.Device != "" {
		return name + "-" + v.Device
	}
	return fmt.Sprintf("%s-vol%d", name, i+1)
}

// RootCopier drops the image of an instance backup made before a VM's
// root disk went to the backup store (it was copied into a private image
// BACKUP-root by the instance snapshot operation): deleting such a backup
// deletes that image.
type RootCopier interface {
	DropRoot(ctx context.Context, project, image, imageID string) error
}

// rootKept says whether an instance's own root disk is backed up with it
// (a VM's disk that is not a volume, a container's root filesystem),
// unless asked not to: its host sends it as a volume backup, so the
// instance must be on a host.
func rootKept(in api.Instance, req api.InstanceBackupsPost) (bool, error) {
	if in.BootVolume != "" || req.SkipRootDisk {
		return false, nil
	}
	switch in.State {
	case api.StateRunning, api.StateSuspended, api.StatePoweroff:
		return true, nil
	}
	what := "root disk"
	if in.Type == api.TypeContainer {
		what = "root filesystem"
	}
	return false, errs.Conflict("instance %q is %s: its %s is backed up while a host has it running, paused or powered off (RUNNING, SUSPENDED or POWEROFF); back it up then, or without its %s (skip_root_disk)", in.Name, in.State, what, what)
}

// rootBackup is the volume backup of an instance's own root disk, sent by
// its host: a container's writable layer (an ext4 filesystem of the
// flavor's disk size, at least 1 GiB, as the container driver makes it)
// or a VM's disk flattened (qcow2, raw bytes in the store; as big as the
// flavor's disk or the image's, whichever is bigger).
func (svc *Service) rootBackup(ctx context.Context, project, name string, in api.Instance, t time.Time) api.VolumeBackup {
	b := api.VolumeBackup{Meta: api.Meta{ID: uuid.NewString(), Name: name + api.RootDiskSuffix, CreatedAt: t, UpdatedAt: t},
		Project: project, VolumeID: in.ID, RootOf: in.Name, SizeGiB: max(in.Size.DiskGiB, 1), Format: api.VolumeExt4,
		Status: api.VolumeCreating, InstanceBackup: name}
	if in.Type == api.TypeVM {
		size := in.Size.DiskGiB << 30
		if img, err := svc.images.Resolve(ctx, project, in.Image); err == nil {
			size = max(size, img.VirtualSize)
		}
		b.Format, b.SizeGiB = api.VolumeQcow2, max((size+1<<30-1)>>30, 1)
	}
	return b
}

// CreateInstanceBackup backs up an instance (as compute shows it): its
// definition, every volume attached to it and its own root disk, in one
// transaction.
func (svc *Service) CreateInstanceBackup(ctx context.Context, project string, in api.Instance, req api.InstanceBackupsPost) (api.InstanceBackup, error) {
	name := req.Name
	if err := validate.Name("name", name); err != nil {
		return api.InstanceBackup{}, err
	}
	if len(name) > api.InstanceBackupNameMax {
		return api.InstanceBackup{}, errs.Invalid("name", "name is %d characters long; an instance backup's is at most %d (its volume backups are named after it)", len(name), api.InstanceBackupNameMax)
	}
	switch in.State {
	case api.StateDone, api.StateShutdown, api.StateEpilog:
		return api.InstanceBackup{}, errs.Conflict("instance %q is %s: back up instances that live", in.Name, in.State)
	}
	vols, err := store.ListJSON[record](ctx, svc.s, prefix+project+"/")
	if err != nil {
		return api.InstanceBackup{}, err
	}
	var attached []store.Item[record]
	for _, it := range vols {
		if a := it.Value.Attachment; a != nil && a.InstanceID == in.ID {
			attached = append(attached, it)
		}
	}
	sort.Slice(attached, func(i, j int) bool {
		a, b := attached[i].Value.Attachment, attached[j].Value.Attachment
		return a.Device+a.Path < b.Device+b.Path
	})
	t := svc.now().UTC()
	ib := api.InstanceBackup{Meta: api.Meta{ID: uuid.NewString(), Name: name, CreatedAt: t, UpdatedAt: t},
		Project: project, Instance: in.Name, InstanceID: in.ID, Volumes: []api.InstanceBackupVolume{},
		Definition: api.InstanceDefinition{Type: in.Type, Flavor: in.Flavor, Image: in.Image, ImageSHA256: in.ImageSHA256,
			Requirements: in.Requirements, Rank: in.Rank, ServerGroup: in.ServerGroup, UserData: in.UserData, Labels: in.Labels, HA: in.HA}}
	for i, n := range in.NICs {
		ib.Definition.Networks = append(ib.Definition.Networks, n.Network)
		if i == 0 {
			ib.Definition.SecurityGroups = n.SecurityGroups
		}
	}
	k := ibKey(project, name)
	conds := []store.Cond{store.Absent(k)}
	var ops []store.Op
	for i, it := range attached {
		r := it.Value
		if r.Status != api.VolumeAvailable && r.Status != api.VolumeInUse {
			return api.InstanceBackup{}, errs.Conflict("volume %q of instance %q is %s: an instance is backed up when every volume of it is made and in use", r.Name, in.Name, r.Status)
		}
		bname := ibBackupName(name, *r.Attachment, i)
		b := api.VolumeBackup{Meta: api.Meta{ID: uuid.NewString(), Name: bname, CreatedAt: t, UpdatedAt: t},
			Project: project, Volume: r.Name, VolumeID: r.ID, SizeGiB: r.SizeGiB, Format: r.Format, Status: api.VolumeCreating, InstanceBackup: name}
		ib.Volumes = append(ib.Volumes, api.InstanceBackupVolume{Volume: r.Name, VolumeID: r.ID, Device: r.Attachment.Device, Path: r.Attachment.Path,
			Backup: bname, SizeGiB: r.SizeGiB, Format: r.Format, Pool: r.Pool, DeleteOnTerminate: r.DeleteOnTerminate, Status: api.VolumeCreating})
		ib.SizeGiB += r.SizeGiB
		bk := backupKey(project, bname)
		conds = append(conds, store.Absent(bk), store.At(key(project, r.Name), it.Revision))
		ops = append(ops, store.PutJSON(bk, b), events.Op(ctx, "volume-backup", events.Created, project, backupURL(project, bname), b))
	}
	kept, err := rootKept(in, req)
	if err != nil {
		return api.InstanceBackup{}, err
	}
	nb := int64(1 + len(ib.Volumes))
	if kept {
		b := svc.rootBackup(ctx, project, name, in, t)
		ib.RootBackup, ib.SizeGiB, nb = b.Name, ib.SizeGiB+b.SizeGiB, nb+1
		bk := backupKey(project, b.Name)
		conds = append(conds, store.Absent(bk))
		ops = append(ops, store.PutJSON(bk, b), events.Op(ctx, "volume-backup", events.Created, project, backupURL(project, b.Name), b))
	}
	ib.Status = api.VolumeCreating
	if len(ib.Volumes) == 0 && !kept {
		ib.Status = api.VolumeAvailable
	}
	ib.EphemeralRoot = in.BootVolume == "" && !kept
	ops = append(ops, store.PutJSON(k, ib), events.Op(ctx, "instance-backup", events.Created, project, ibURL(project, name), ib))
	// The instance backup counts as one backup, and each volume backup as
	// one (of its volume's size), as volume backups do; so does its root
	// disk's.
	rev, err := quota.Reserve(ctx, svc.s, project, backupCounts(nb, ib.SizeGiB), conds,
		append(ops, idempotency.Done(ctx, ib)...))
	if errors.Is(err, store.ErrConflict) {
		if err := svc.ibNameTaken(ctx, ib); err != nil {
			return api.InstanceBackup{}, err
		}
		return api.InstanceBackup{}, errs.Conflict("a volume of instance %q changed meanwhile; try again", in.Name)
	}
	if err != nil {
		return api.InstanceBackup{}, err
	}
	ib.Revision = rev
	return ib, nil
}

// ibNameTaken says which of an instance backup's names is taken: its
// own, or one of its volume backups'.
func (svc *Service) ibNameTaken(ctx context.Context, ib api.InstanceBackup) error {
	if _, err := svc.s.Get(ctx, ibKey(ib.Project, ib.Name)); err == nil {
		return errs.Conflict("instance backup %q already exists in project %q", ib.Name, ib.Project)
	}
	for _, b := range ibBackups(ib) {
		if _, err := svc.s.Get(ctx, backupKey(ib.Project, b)); err == nil {
			return errs.Conflict("a volume backup named %q exists in project %q: the instance backup's volume backups are named after it; choose another name", b, ib.Project)
		}
	}
	return nil
}

// ibBackups names an instance backup's volume backups: its volumes' and
// its own root disk's.
func ibBackups(ib api.InstanceBackup) []string {
	var out []string
	for _, v := range ib.Volumes {
		out = append(out, v.Backup)
	}
	if ib.RootBackup != "" {
		out = append(out, ib.RootBackup)
	}
	return out
}

// rootStatus says what of an instance backup's root disk image: creating
// while its copy runs, "" once active, else error with why.
func (svc *Service) rootStatus(ctx context.Context, ib api.InstanceBackup) (string, string, error) {
	if ib.RootImage == "" {
		return "", "", nil
	}
	img, err := svc.images.Resolve(ctx, ib.Project, ib.Project+"/"+ib.RootImage)
	switch {
	case errors.Is(err, errs.ErrNotFound) || err == nil && img.ID != ib.RootImageID:
		return api.VolumeError, fmt.Sprintf("image %q, the copy of its root disk, is gone (its copy failed: operation %s says why); delete this backup and make another", ib.RootImage, ib.RootOperation), nil
	case err != nil:
		return "", "", err
	case img.Status == api.ImageActive:
		return "", "", nil
	case img.Status == api.ImageError:
		return api.VolumeError, fmt.Sprintf("image %q, the copy of its root disk, failed: %s", ib.RootImage, img.Error), nil
	}
	return api.VolumeCreating, "", nil
}

// withStatus fills an instance backup's status from its volume backups'.
func (svc *Service) withStatus(ctx context.Context, ib api.InstanceBackup) (api.InstanceBackup, error) {
	ib.Status, ib.Error, ib.StoredBytes, ib.TotalBytes = api.VolumeAvailable, "", 0, 0
	creating := false
	// take adds a volume backup's figures and status (what names what it
	// holds, for the error); it says the backup's status.
	take := func(name, what string) (string, error) {
		b, _, err := svc.getBackup(ctx, ib.Project, name)
		switch {
		case errors.Is(err, errs.ErrNotFound):
			if ib.Error == "" {
				ib.Error = fmt.Sprintf("volume backup %q of %s is gone", name, what)
			}
			return api.VolumeError, nil
		case err != nil:
			return "", err
		}
		ib.StoredBytes += b.StoredBytes
		ib.TotalBytes += b.TotalBytes
		switch b.Status {
		case api.VolumeCreating:
			creating = true
		case api.VolumeError:
			if ib.Error == "" {
				ib.Error = fmt.Sprintf("volume backup %q of %s: %s", name, what, b.Error)
			}
		}
		return b.Status, nil
	}
	for i := range ib.Volumes {
		v := &ib.Volumes[i]
		st, err := take(v.Backup, fmt.Sprintf("volume %q", v.Volume))
		if err != nil {
			return ib, err
		}
		v.Status = st
	}
	if ib.RootBackup != "" {
		if _, err := take(ib.RootBackup, "its root disk"); err != nil {
			return ib, err
		}
	}
	rs, why, err := svc.rootStatus(ctx, ib)
	if err != nil {
		return ib, err
	}
	if ib.Error == "" {
		ib.Error = why
	}
	switch {
	case ib.Error != "":
		ib.Status = api.VolumeError
	case creating || rs == api.VolumeCreating:
		ib.Status = api.VolumeCreating
	}
	return ib, nil
}

func (svc *Service) getInstanceBackup(ctx context.Context, project, name string) (api.InstanceBackup, int64, error) {
	var ib api.InstanceBackup
	rev, err := store.GetJSON(ctx, svc.s, ibKey(project, name), &ib)
	if errors.Is(err, store.ErrNotFound) {
		return ib, 0, errs.NotFound("instance backup %q not found in project %q", name, project)
	}
	if err != nil {
		return ib, 0, err
	}
	ib.Revision = rev
	ib, err = svc.withStatus(ctx, ib)
	return ib, rev, err
}

// GetInstanceBackup returns an instance backup, its status read from its
// volume backups.
func (svc *Service) GetInstanceBackup(ctx context.Context, project, name string) (api.InstanceBackup, error) {
	ib, _, err := svc.getInstanceBackup(ctx, project, name)
	return ib, err
}

// ListInstanceBackups lists a project's instance backups.
func (svc *Service) ListInstanceBackups(ctx context.Context, project string) ([]api.InstanceBackup, error) {
	items, err := store.ListJSON[api.InstanceBackup](ctx, svc.s, ibPrefix+project+"/")
	if err != nil {
		return nil, err
	}
	out := []api.InstanceBackup{}
	for _, it := range items {
		ib := it.Value
		ib.Revision = it.Revision
		if ib, err = svc.withStatus(ctx, ib); err != nil {
			return nil, err
		}
		out = append(out, ib)
	}
	return out, nil
}

// DeleteInstanceBackup removes an instance backup and its volume backups
// in one transaction (their quota with them), then the chunks no other
// backup has. Refused while a volume is being restored from it.
func (svc *Service) DeleteInstanceBackup(ctx context.Context, project, name string, root RootCopier) error {
	var ib api.InstanceBackup
	rev, err := store.GetJSON(ctx, svc.s, ibKey(project, name), &ib)
	if errors.Is(err, store.ErrNotFound) {
		return errs.NotFound("instance backup %q not found in project %q", name, project)
	}
	if err != nil {
		return err
	}
	conds := []store.Cond{store.At(ibKey(project, name), rev)}
	ops := []store.Op{store.Del(ibKey(project, name)), events.Op(ctx, "instance-backup", events.Deleted, project, ibURL(project, name), nil)}
	ids := map[string]string{}
	n, gib := int64(1), int64(0)
	for _, name := range ibBackups(ib) {
		b, brev, err := svc.getBackup(ctx, project, name)
		if errors.Is(err, errs.ErrNotFound) {
			continue
		}
		if err != nil {
			return err
		}
		ids[b.ID] = b.Name
		n, gib = n+1, gib+b.SizeGiB
		conds = append(conds, store.At(backupKey(project, b.Name), brev))
		ops = append(ops, store.Del(backupKey(project, b.Name)), meterBackup(&b, 0, svc.now()),
			events.Op(ctx, "volume-backup", events.Deleted, project, backupURL(project, b.Name), nil))
	}
	vs, err := store.ListJSON[record](ctx, svc.s, prefix+project+"/")
	if err != nil {
		return err
	}
	for _, v := range vs {
		if b, ok := ids[v.Value.FromBackup]; ok && v.Value.Status == api.VolumeCreating {
			return errs.Conflict("volume %q is being restored from backup %q of instance backup %q: delete it once the volume is made", v.Value.Name, b, name)
		}
	}
	// The root disk's image first: a crash after it leaves the backup
	// (in error), to be deleted again.
	if ib.RootImageID != "" && root != nil {
		if err := root.DropRoot(ctx, project, ib.RootImage, ib.RootImageID); err != nil {
			return err
		}
	}
	if _, err := quota.Reserve(ctx, svc.s, project, backupCounts(-n, -gib), conds, ops); err != nil {
		if errors.Is(err, store.ErrConflict) {
			return errs.Conflict("instance backup %q changed meanwhile; try again", name)
		}
		return err
	}
	svc.dropUnusedChunks(ctx)
	return nil
}

// RestoreDefinition is what a restore needs to make the instance: the
// backup's definition, once the backup is checked usable.
func (svc *Service) RestoreDefinition(ctx context.Context, project, backup string) (api.InstanceBackup, error) {
	ib, _, err := svc.getInstanceBackup(ctx, project, backup)
	if err != nil {
		return ib, err
	}
	if ib.Status != api.VolumeAvailable {
		why := ""
		if ib.Error != "" {
			why = ": " + ib.Error
		}
		return ib, errs.Conflict("instance backup %q is %s%s: only an available one is restored", backup, ib.Status, why)
	}
	return ib, nil
}

// restoredName names a restored volume: INSTANCE-root for a VM's root
// disk, INSTANCE-vdX for its other disks, INSTANCE-volN for a container's.
func restoredName(instance string, v api.InstanceBackupVolume, i int) string {
	switch {
	case v.Device == api.BootDevice:
		return instance + RootSuffix
	case v.Device != "":
		return instance + "-" + v.Device
	}
	return fmt.Sprintf("%s-vol%d", instance, i+1)
}

// PlanRestore plans the volumes of an instance restored from an instance
// backup, for compute to write with the instance: each a new volume
// restored from its volume backup, attached to the new instance where it
// was (the root disk as its boot volume), without a host: the instance's
// host makes them once it is placed.
func (svc *Service) PlanRestore(ctx context.Context, project string, in BootInstance, backup string) (BootPlan, error) {
	ib, err := svc.RestoreDefinition(ctx, project, backup)
	if err != nil {
		return BootPlan{}, err
	}
	if in.Type != ib.Definition.Type {
		return BootPlan{}, errs.Invalid("type", "instance backup %q is of a %s, not a %s", backup, ib.Definition.Type, in.Type)
	}
	pools, err := svc.pools(ctx)
	if err != nil {
		return BootPlan{}, err
	}
	t := svc.now().UTC()
	var p BootPlan
	if ib.RootBackup != "" {
		// Its own root disk: the instance's host restores the backup
		// in PROLOG (a VM's disk, a container's writable layer).
		b, _, err := svc.getBackup(ctx, project, ib.RootBackup)
		if err != nil {
			return BootPlan{}, err
		}
		p.RootBackup = b.ID
	}
	for i, v := range ib.Volumes {
		b, _, err := svc.getBackup(ctx, project, v.Backup)
		if err != nil {
			return BootPlan{}, err
		}
		name := restoredName(in.Name, v, i)
		if err := validate.Name("name", name); err != nil {
			return BootPlan{}, errs.Invalid("name", "a restored volume is named %q: %v; use a shorter instance name", name, err)
		}
		pool := v.Pool
		if _, ok := pools[pool]; !ok {
			pool = api.PoolLocal // its pool is gone: the local pool of the instance's host
		}
		r := record{Volume: api.Volume{Meta: api.Meta{ID: uuid.NewString(), Name: name, CreatedAt: t, UpdatedAt: t},
			Project: project, SizeGiB: b.SizeGiB, Format: b.Format, Pool: pool, Status: api.VolumeCreating,
			Attachment:        &api.VolumeAttachment{Instance: in.Name, InstanceID: in.ID, Device: v.Device, Path: v.Path},
			DeleteOnTerminate: v.DeleteOnTerminate}, FromBackup: b.ID}
		k := key(project, name)
		p.Conds = append(p.Conds, store.Absent(k))
		p.Ops = append(p.Ops, store.PutJSON(k, r), events.Op(ctx, "volume", events.Created, project, url(project, name), r.Volume), meterVolume(&r, r.SizeGiB, t))
		p.Counts.Volumes++
		p.Counts.VolumeGiB += r.SizeGiB
		p.New = append(p.New, name)
		if v.Device == api.BootDevice {
			p.Volume, p.ID, p.Local = name, r.ID, pools[pool].Type != api.PoolSharedDir
		} else {
			p.Wait = append(p.Wait, r.ID)
		}
	}
	return p, nil
}
