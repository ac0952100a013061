package volumes

import (
	"context"
	"errors"
	"fmt"

	"github.com/google/uuid"

	"github.com/kumocloud/kumo/api"
	"github.com/kumocloud/kumo/internal/errs"
	"github.com/kumocloud/kumo/internal/events"
	"github.com/kumocloud/kumo/internal/store"
	"github.com/kumocloud/kumo/internal/validate"
)

// Boot volumes: a VM whose root disk is a persistent volume. Either an
// existing volume (boot_volume) or a new one made from the VM's image
// (root_volume_size_gib, named INSTANCE-root). Either way the volume is
// attached to the instance as its root disk (device vda) in the
// transaction that creates the instance (compute writes BootPlan's ops
// with its own), so a crash leaves both or neither, and bad input leaves
// nothing. A new root volume has no host until its instance is placed: it
// is made on the instance's host (the handler of an unhomed volume is its
// instance's host) and keeps that host once made. It is deleted when the
// instance goes unless it was asked to be kept; one never made (its
// instance terminated before placement) goes with it in any case.

// RootSuffix names an instance's new root volume: INSTANCE-root.
const RootSuffix = "-root"

// BootInstance is what PlanBoot needs of the instance being created.
type BootInstance struct {
	ID, Name, Type string
}

// BootPlan is an instance's boot volume, to be written in the instance's
// own transaction: Conds and Ops, Counts charged to the project's quota.
type BootPlan struct {
	Volume string // the volume's name
	ID     string // its id
	// Host pins the instance: the host of a volume of a local pool ("" for
	// a shared pool, or a new volume made where the instance goes).
	Host string
	// Local: the volume is in a local pool (a new one is pinned to the
	// instance's host once placed).
	Local bool
	// Image is what the instance boots with when it names no image: the
	// image the volume was made from ("owner/name", "" if none).
	Image  string
	Counts api.ResourceCounts
	Conds  []store.Cond
	Ops    []store.Op
	// New names every volume the plan makes (a restore makes several);
	// Wait are the ids of those other than the boot volume that are made
	// on the instance's host with it (its PROLOG waits for them).
	New  []string
	Wait []string
	// RootBackup is the id of the volume backup a restored instance's
	// own root disk (a VM's disk, a container's writable layer) is made
	// from.
	RootBackup string
}

// PlanBoot checks an instance's boot volume request (boot_volume, or
// root_volume_size_gib with keep_root_volume) and returns what to write
// with the instance. A request with neither returns a zero plan.
func (svc *Service) PlanBoot(ctx context.Context, project string, in BootInstance, req api.InstancesPost) (BootPlan, error) {
	switch {
	case req.BootVolume == "" && req.RootVolumeSizeGiB == 0:
		if req.KeepRootVolume {
			return BootPlan{}, errs.Invalid("keep_root_volume", "keep_root_volume: it goes with root_volume_size_gib")
		}
		return BootPlan{}, nil
	case in.Type != api.TypeVM:
		field := "boot_volume"
		if req.BootVolume == "" {
			field = "root_volume_size_gib"
		}
		return BootPlan{}, errs.Invalid(field, "%s: a container's root is its image's filesystem: it cannot boot from a volume; attach an ext4 volume at a path for its data", field)
	case req.BootVolume != "" && req.RootVolumeSizeGiB != 0:
		return BootPlan{}, errs.Invalid("root_volume_size_gib", "give boot_volume (an existing volume) or root_volume_size_gib (a new one), not both")
	case req.BootVolume != "" && req.KeepRootVolume:
		return BootPlan{}, errs.Invalid("keep_root_volume", "a boot volume given is always kept: keep_root_volume goes with root_volume_size_gib")
	}
	if req.BootVolume != "" {
		return svc.planExisting(ctx, project, in, req.BootVolume)
	}
	return svc.planRoot(ctx, project, in, req)
}

func bootAttachment(in BootInstance) *api.VolumeAttachment {
	return &api.VolumeAttachment{Instance: in.Name, InstanceID: in.ID, Device: api.BootDevice}
}

// planExisting attaches an available qcow2 volume of the project as the
// instance's root disk.
func (svc *Service) planExisting(ctx context.Context, project string, in BootInstance, name string) (BootPlan, error) {
	if err := validate.Name("boot_volume", name); err != nil {
		return BootPlan{}, err
	}
	r, rev, err := svc.get(ctx, project, name)
	if errors.Is(err, errs.ErrNotFound) {
		return BootPlan{}, errs.Invalid("boot_volume", "boot_volume: no volume %q in project %q", name, project)
	}
	if err != nil {
		return BootPlan{}, err
	}
	switch {
	case r.Attachment != nil:
		return BootPlan{}, errs.Conflict("boot_volume: volume %q is attached to instance %q: detach it (or terminate that instance) first", name, r.Attachment.Instance)
	case r.Format != api.VolumeQcow2:
		return BootPlan{}, errs.Invalid("boot_volume", "boot_volume: volume %q is %s: a VM boots from a qcow2 volume", name, r.Format)
	case r.Status != api.VolumeAvailable:
		return BootPlan{}, errs.Conflict("boot_volume: volume %q is %s, not available", name, r.Status)
	}
	pools, err := svc.pools(ctx)
	if err != nil {
		return BootPlan{}, err
	}
	p := BootPlan{Volume: name, ID: r.ID, Image: r.Image, Local: pools[r.Pool].Type != api.PoolSharedDir}
	if p.Local {
		p.Host = r.Host
	}
	r.Attachment, r.Status, r.DeleteOnTerminate = bootAttachment(in), api.VolumeInUse, false
	r.UpdatedAt = svc.now().UTC()
	k := key(project, name)
	p.Conds = []store.Cond{store.At(k, rev)}
	p.Ops = []store.Op{store.PutJSON(k, r), events.Op(ctx, "volume", events.Updated, project, url(project, name), r.Volume)}
	return p, nil
}

// planRoot makes a new root volume of the size asked from the instance's
// image: a vm-disk image's disk, a vm-kernel image's own disk.qcow2 (its
// kernel boots it), or (a vm-kernel image without a disk of its own) an
// empty disk.
func (svc *Service) planRoot(ctx context.Context, project string, in BootInstance, req api.InstancesPost) (BootPlan, error) {
	if err := checkSize("root_volume_size_gib", req.RootVolumeSizeGiB); err != nil {
		return BootPlan{}, err
	}
	name := in.Name + RootSuffix
	if err := validate.Name("name", name); err != nil {
		return BootPlan{}, errs.Invalid("name", "the root volume is named %q: %v; use a shorter instance name", name, err)
	}
	t := svc.now().UTC()
	r := record{Volume: api.Volume{Meta: api.Meta{ID: uuid.NewString(), Name: name, CreatedAt: t, UpdatedAt: t},
		Project: project, SizeGiB: req.RootVolumeSizeGiB, Format: api.VolumeQcow2, Pool: api.PoolLocal, Status: api.VolumeCreating,
		Attachment: bootAttachment(in), DeleteOnTerminate: !req.KeepRootVolume}}
	img, err := svc.images.Resolve(ctx, project, req.Image)
	switch {
	case errors.Is(err, errs.ErrNotFound):
		// Not an image of the image service (the sim driver's names):
		// an empty disk, as the instance's own disk would be.
		r.Image = req.Image
	case err != nil:
		return BootPlan{}, err
	case img.Status != api.ImageActive:
		return BootPlan{}, errs.Conflict("image %q is %s, not active", req.Image, img.Status)
	case img.Kind == api.KindVMKernel && img.VirtualSize == 0:
		r.Image = img.Project + "/" + img.Name
	case img.Kind == api.KindVMDisk || img.Kind == api.KindVMKernel:
		// The image's disk (a vm-kernel image's disk.qcow2, taken out
		// of its tarball by the agent) fills the volume; a vm-kernel
		// image's kernel then boots it.
		if img.VirtualSize > req.RootVolumeSizeGiB<<30 {
			return BootPlan{}, errs.Invalid("root_volume_size_gib", "image %q has a %d GiB disk: the root volume must be at least that big", req.Image, (img.VirtualSize+1<<30-1)>>30)
		}
		r.Image, r.ImageSHA256, r.ImageFormat = img.Project+"/"+img.Name, img.SHA256, img.Format
	default:
		return BootPlan{}, errs.Invalid("image", "image %q is a %s: a VM's root volume is made from a vm-disk image", req.Image, img.Kind)
	}
	k := key(project, name)
	return BootPlan{Volume: name, ID: r.ID, Local: true, Image: r.Image, Counts: counts(1, r.SizeGiB),
		Conds: []store.Cond{store.Absent(k)},
		Ops:   []store.Op{store.PutJSON(k, r), events.Op(ctx, "volume", events.Created, project, url(project, name), r.Volume), meterVolume(&r, r.SizeGiB, t)}}, nil
}

// PlanConflict says which of a plan's volumes changed when the instance's
// transaction failed on its conditions ("" when none did).
func (svc *Service) PlanConflict(ctx context.Context, project string, p BootPlan) error {
	for _, name := range p.New {
		if _, err := svc.s.Get(ctx, key(project, name)); err == nil {
			return errs.Conflict("volume %q already exists in project %q: a restored instance's volumes are named after it; delete that volume or restore under another name", name, project)
		}
	}
	if p.Volume == "" || len(p.New) > 0 {
		return nil
	}
	if p.Counts.Volumes > 0 {
		if _, err := svc.s.Get(ctx, key(project, p.Volume)); err == nil {
			return errs.Conflict("root volume %q already exists in project %q: delete it, or boot from it with boot_volume", p.Volume, project)
		}
		return nil
	}
	return errs.Conflict("boot_volume: volume %q changed meanwhile; try again", p.Volume)
}

// sweepUnhomed removes the volumes made with an instance (a new root
// volume, a restored instance's volumes) never made whose instance is
// gone (terminated before it was placed): no host has a file of them.
func (svc *Service) sweepUnhomed(ctx context.Context, vols []store.Item[record]) error {
	var errOut error
	for _, it := range vols {
		r := it.Value
		if r.Host != "" || r.Attachment == nil {
			continue
		}
		in, _, err := svc.inst.Get(ctx, r.Project, r.Attachment.Instance)
		if err != nil && !errors.Is(err, errs.ErrNotFound) {
			errOut = err
			continue
		}
		if err == nil && in.ID == r.Attachment.InstanceID && in.State != api.StateDone {
			continue
		}
		if err := svc.remove(ctx, r, it.Revision); err != nil && !errors.Is(err, store.ErrConflict) {
			errOut = fmt.Errorf("root volume %s/%s: %w", r.Project, r.Name, err)
		}
	}
	return errOut
}
