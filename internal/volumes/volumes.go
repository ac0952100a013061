// Package volumes is the block storage service (the Cinder part):
// persistent volumes that outlive the instances they are attached to,
// kept in storage pools.
//
// The store holds what is wanted (a volume of this size on this host,
// attached to that instance, or deleted); each host's agent reads the
// complete list of its hosts' volumes (AgentView) and makes its files
// match, reporting what it did (Report): level-triggered, so an agent or
// server crash at any point converges on restart. A volume counts in its
// project's quota (volumes, volume_gib) from the transaction that creates
// it to the one that removes its record once its host deleted its file.
//
// Pools: "local" is a directory under every agent's data dir (a volume
// there lives on one host, its home, and is attached only to instances
// there); "shared-dir" pools are directories every host mounts (NFS,
// CephFS), made by cloud admins: their volumes attach on any host. The
// agent's side of a pool is a small interface (internal/volumes/pool).
//
// Keys: /volumes/{project}/{name}, /storage-pools/{name}.
package volumes

import (
	"context"
	"errors"
	"sort"
	"strings"
	"sync"
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

const (
	prefix     = "/volumes/"
	poolPrefix = "/storage-pools/"
)

func key(project, name string) string { return prefix + project + "/" + name }

func url(project, name string) string { return "/v1/projects/" + project + "/volumes/" + name }

// Images is what the service needs of images: one a project may use,
// resolved by name.
type Images interface {
	Resolve(ctx context.Context, project, ref string) (api.Image, error)
}

// Instances is what the service needs of instances (compute owns them).
type Instances interface {
	Get(ctx context.Context, project, name string) (api.Instance, []api.HistoryRecord, error)
}

// Hosts is what the service needs of hosts.
type Hosts interface {
	List(ctx context.Context, after string, limit int) ([]api.Host, string, error)
}

// Service is the volume service.
type Service struct {
	s      store.Store
	images Images
	inst   Instances
	hosts  Hosts
	now    func() time.Time
	dir    string // the backup store (backups.go)
	sets   chunkSets
	// gc: chunks are removed (write) only while no backup is being
	// finished (read: its chunks checked, its record written).
	gc sync.RWMutex
}

// New returns the volume service.
func New(s store.Store, images Images, inst Instances, hosts Hosts, now func() time.Time) *Service {
	return &Service{s: s, images: images, inst: inst, hosts: hosts, now: now}
}

// record is a stored volume.
type record struct {
	api.Volume
	// Detaching: the user asked to detach; the attachment goes once the
	// host says it let go.
	Detaching bool `json:"detaching,omitempty"`
	// ImageFormat is the format of the image it is made from.
	ImageFormat string `json:"image_format,omitempty"`
	// FromVolume and FromSnapshot (ids): it is made as a copy of that
	// snapshot.
	FromVolume   string `json:"from_volume,omitempty"`
	FromSnapshot string `json:"from_snapshot,omitempty"`
	// FromBackup (id): it is restored from that backup.
	FromBackup string `json:"from_backup,omitempty"`
	// Revert is the revert its host is asked to carry out.
	Revert *api.AgentRevert `json:"revert,omitempty"`
	// Move is the move to another host under way (move.go).
	Move *move `json:"move,omitempty"`
}

func (r *record) view() api.Volume {
	v := r.Volume
	if v.Attachment != nil {
		a := *v.Attachment
		v.Attachment = &a
	}
	return v
}

// bytesOf is what a volume counts in its project's quota.
func counts(n, gib int64) api.ResourceCounts { return api.ResourceCounts{Volumes: n, VolumeGiB: gib} }

func checkSize(field string, gib int64) error {
	if gib < 1 || gib > api.MaxVolumeGiB {
		return errs.Invalid(field, "%s must be 1 to %d GiB, not %d", field, api.MaxVolumeGiB, gib)
	}
	return nil
}

// Create registers a volume (status creating) on a host, counting it in
// the quota in the same transaction; its host's agent makes its file.
// admin says the caller is a cloud admin (who alone may name a host).
func (svc *Service) Create(ctx context.Context, project string, req api.VolumesPost, admin bool) (api.Volume, error) {
	if err := validate.Name("name", req.Name); err != nil {
		return api.Volume{}, err
	}
	if err := validate.Labels("labels", req.Labels); err != nil {
		return api.Volume{}, err
	}
	if err := checkSize("size_gib", req.SizeGiB); err != nil {
		return api.Volume{}, err
	}
	if req.Format == "" {
		req.Format = api.VolumeQcow2
	}
	if req.Format != api.VolumeQcow2 && req.Format != api.VolumeExt4 {
		return api.Volume{}, errs.Invalid("format", "format %q: use qcow2 (a disk for VMs) or ext4 (a filesystem, for containers)", req.Format)
	}
	if req.Host != "" && !admin {
		return api.Volume{}, errs.Forbidden("only a cloud admin may name a host; place a volume with near (an instance of yours) instead")
	}
	if req.Host != "" && req.Near != "" {
		return api.Volume{}, errs.Invalid("near", "give host or near, not both")
	}
	if req.Snapshot != "" && (req.Image != "" || req.Host != "" || req.Near != "" || req.Pool != "") {
		return api.Volume{}, errs.Invalid("snapshot", "a volume made from a snapshot is kept where the snapshot is: give no image, host, near or pool")
	}
	if req.Pool == "" {
		req.Pool = api.PoolLocal
	}
	pool, err := svc.GetPool(ctx, req.Pool, true)
	if err != nil {
		return api.Volume{}, errs.Invalid("pool", "%v", err)
	}
	t := svc.now().UTC()
	r := record{Volume: api.Volume{Meta: api.Meta{ID: uuid.NewString(), Name: req.Name, Labels: req.Labels, CreatedAt: t, UpdatedAt: t},
		Project: project, SizeGiB: req.SizeGiB, Format: req.Format, Pool: pool.Name, Status: api.VolumeCreating}}
	if req.Image != "" {
		img, err := svc.images.Resolve(ctx, project, req.Image)
		if err != nil {
			return api.Volume{}, err
		}
		if img.Kind != api.KindVMDisk || img.Status != api.ImageActive {
			return api.Volume{}, errs.Invalid("image", "image %q is a %s, %s: a volume is made from an active vm-disk image", req.Image, img.Kind, img.Status)
		}
		if req.Format != api.VolumeQcow2 {
			return api.Volume{}, errs.Invalid("format", "a volume made from an image is a qcow2 disk, not %s", req.Format)
		}
		if img.VirtualSize > req.SizeGiB<<30 {
			return api.Volume{}, errs.Invalid("size_gib", "image %q is a %d GiB disk: the volume must be at least that big", req.Image, (img.VirtualSize+1<<30-1)>>30)
		}
		r.Image, r.ImageSHA256, r.ImageFormat = img.Project+"/"+img.Name, img.SHA256, img.Format
	}
	if req.Backup != "" && req.Snapshot != "" {
		return api.Volume{}, errs.Invalid("backup", "give snapshot or backup, not both")
	}
	if req.Backup != "" {
		if err := svc.fromBackup(ctx, project, req, &r); err != nil {
			return api.Volume{}, err
		}
	}
	if req.Snapshot != "" {
		if err := svc.fromSnapshot(ctx, project, req, &r); err != nil {
			return api.Volume{}, err
		}
	} else if r.Host, err = svc.place(ctx, project, req); err != nil {
		return api.Volume{}, err
	}
	k := key(project, req.Name)
	rev, err := quota.Reserve(ctx, svc.s, project, counts(1, req.SizeGiB), []store.Cond{store.Absent(k)}, append([]store.Op{
		store.PutJSON(k, r), events.Op(ctx, "volume", events.Created, project, url(project, req.Name), r.Volume), meterVolume(&r, r.SizeGiB, t),
	}, idempotency.Done(ctx, r.Volume)...))
	if errors.Is(err, store.ErrConflict) {
		return api.Volume{}, errs.Conflict("volume %q already exists in project %q", req.Name, project)
	}
	if err != nil {
		return api.Volume{}, err
	}
	r.Revision = rev
	return r.view(), nil
}

// place picks a volume's home: the host named, the host of the instance
// named by near, or the usable host with the fewest volumes.
func (svc *Service) place(ctx context.Context, project string, req api.VolumesPost) (string, error) {
	if req.Near != "" {
		in, _, err := svc.inst.Get(ctx, project, req.Near)
		if err != nil {
			return "", err
		}
		if h := instanceHost(in); h != "" {
			return h, nil
		}
		return "", errs.Conflict("instance %q is not on a host yet (%s): wait until it is placed", req.Near, in.State)
	}
	hosts, _, err := svc.hosts.List(ctx, "", 0)
	if err != nil {
		return "", err
	}
	if req.Host != "" {
		for _, h := range hosts {
			if h.Name == req.Host {
				return h.Name, nil
			}
		}
		return "", errs.Invalid("host", "no host %q", req.Host)
	}
	all, err := store.ListJSON[record](ctx, svc.s, prefix)
	if err != nil {
		return "", err
	}
	load := map[string]int{}
	for _, it := range all {
		load[it.Value.Host]++
	}
	var best []api.Host
	for _, h := range hosts {
		if h.Enabled && !h.Draining {
			best = append(best, h)
		}
	}
	if len(best) == 0 {
		return "", errs.Unavailable("no enabled host can keep a volume now")
	}
	// Online hosts first, then the fewest volumes, then by name.
	sort.Slice(best, func(i, j int) bool {
		if oi, oj := best[i].State == api.HostOnline, best[j].State == api.HostOnline; oi != oj {
			return oi
		}
		if load[best[i].Name] != load[best[j].Name] {
			return load[best[i].Name] < load[best[j].Name]
		}
		return best[i].Name < best[j].Name
	})
	return best[0].Name, nil
}

// instanceHost is where an instance is: its host, or its home.
func instanceHost(in api.Instance) string {
	if in.Host != "" {
		return in.Host
	}
	return in.Home
}

func (svc *Service) get(ctx context.Context, project, name string) (record, int64, error) {
	var r record
	rev, err := store.GetJSON(ctx, svc.s, key(project, name), &r)
	if errors.Is(err, store.ErrNotFound) {
		return r, 0, errs.NotFound("volume %q not found in project %q", name, project)
	}
	r.Revision = rev
	return r, rev, err
}

// Get returns a volume.
func (svc *Service) Get(ctx context.Context, project, name string) (api.Volume, error) {
	r, _, err := svc.get(ctx, project, name)
	return r.view(), err
}

// List returns a project's volumes.
func (svc *Service) List(ctx context.Context, project string) ([]api.Volume, error) {
	items, err := store.ListJSON[record](ctx, svc.s, prefix+project+"/")
	out := []api.Volume{}
	for _, it := range items {
		r := it.Value
		r.Revision = it.Revision
		out = append(out, r.view())
	}
	return out, err
}

// update changes a volume with CAS, with an event.
func (svc *Service) update(ctx context.Context, project, name string, fn func(*record) error) (api.Volume, error) {
	r, rev, err := store.UpdateJSON(ctx, svc.s, key(project, name), func(r *record) error {
		if err := fn(r); err != nil {
			return err
		}
		r.UpdatedAt = svc.now().UTC()
		return nil
	}, func(r *record) []store.Op {
		return []store.Op{events.Op(ctx, "volume", events.Updated, project, url(project, name), r.Volume)}
	})
	if errors.Is(err, store.ErrNotFound) {
		return api.Volume{}, errs.NotFound("volume %q not found in project %q", name, project)
	}
	if errors.Is(err, store.ErrConflict) {
		return api.Volume{}, errs.Conflict("volume %q changed meanwhile; try again", name)
	}
	r.Revision = rev
	return r.view(), err
}

// Resize grows a volume (never shrinks), charging the growth to the quota
// in the same transaction; its host grows the file (and, for an attached
// VM volume, tells the guest).
func (svc *Service) Resize(ctx context.Context, project, name string, gib int64) (api.Volume, error) {
	if err := checkSize("size_gib", gib); err != nil {
		return api.Volume{}, err
	}
	r, rev, err := svc.get(ctx, project, name)
	if err != nil {
		return api.Volume{}, err
	}
	switch {
	case gib < r.SizeGiB:
		return api.Volume{}, errs.Invalid("size_gib", "volume %q is %d GiB: volumes grow only, %d is smaller", name, r.SizeGiB, gib)
	case gib == r.SizeGiB:
		return r.view(), nil
	case r.Status == api.VolumeDeleting:
		return api.Volume{}, errs.Conflict("volume %q is being deleted", name)
	case r.Status == api.VolumeMoving:
		return api.Volume{}, errs.Conflict("volume %q is moving to host %q: resize it once it is there", name, r.MovingTo)
	}
	grow := gib - r.SizeGiB
	r.SizeGiB, r.UpdatedAt = gib, svc.now().UTC()
	nrev, err := quota.Reserve(ctx, svc.s, project, counts(0, grow), []store.Cond{store.At(key(project, name), rev)},
		[]store.Op{store.PutJSON(key(project, name), r), events.Op(ctx, "volume", events.Updated, project, url(project, name), r.Volume), meterVolume(&r, gib, r.UpdatedAt)})
	if errors.Is(err, store.ErrConflict) {
		return api.Volume{}, errs.Conflict("volume %q changed meanwhile; try again", name)
	}
	r.Revision = nrev
	return r.view(), err
}

// Delete marks a volume for deletion; its host removes the file and the
// record goes (and its quota with it) when it says so. An attached volume
// is refused.
func (svc *Service) Delete(ctx context.Context, project, name string) (api.Volume, error) {
	if snaps, err := store.ListAll(ctx, svc.s, snapPrefix+project+"/"+name+"/"); err != nil {
		return api.Volume{}, err
	} else if len(snaps) > 0 {
		return api.Volume{}, errs.Conflict("volume %q has %d snapshots: delete them first", name, len(snaps))
	}
	backups, err := store.ListJSON[api.VolumeBackup](ctx, svc.s, backupPrefix+project+"/")
	if err != nil {
		return api.Volume{}, err
	}
	return svc.update(ctx, project, name, func(r *record) error {
		for _, b := range backups {
			// Its host would remove the file under the copy, and the
			// backup would stay creating for good.
			if b.Value.VolumeID == r.ID && b.Value.Status == api.VolumeCreating {
				return errs.Conflict("backup %q of volume %q is being made: delete the volume once it is (or delete the backup)", b.Value.Name, name)
			}
		}
		if r.Attachment != nil {
			return errs.Conflict("volume %q is attached to instance %q: detach it first", name, r.Attachment.Instance)
		}
		if r.Status == api.VolumeMoving {
			return errs.Conflict("volume %q is moving to host %q: delete it once it is there", name, r.MovingTo)
		}
		r.Status = api.VolumeDeleting
		return nil
	})
}

// remove drops a volume record its host deleted, releasing its quota.
func (svc *Service) remove(ctx context.Context, r record, rev int64) error {
	_, err := quota.Reserve(ctx, svc.s, r.Project, counts(-1, -r.SizeGiB), []store.Cond{store.At(key(r.Project, r.Name), rev)},
		[]store.Op{store.Del(key(r.Project, r.Name)), events.Op(ctx, "volume", events.Deleted, r.Project, url(r.Project, r.Name), nil), meterVolume(&r, 0, svc.now())})
	return err
}

// ProjectVolumes counts a project's volumes (a project is deleted only
// without any).
func (svc *Service) ProjectVolumes(ctx context.Context, project string) (int, error) {
	items, err := store.ListJSON[record](ctx, svc.s, prefix+project+"/")
	return len(items), err
}

// devicePath checks an attachment's device (VMs) or path (containers).
func checkAttach(req *api.VolumeAttach, typ string) error {
	if err := validate.Name("instance", req.Instance); err != nil {
		return err
	}
	if typ == api.TypeVM {
		if req.Path != "" {
			return errs.Invalid("path", "a VM mounts its disks itself: give device, not path")
		}
		if req.Device == "" {
			return nil
		}
		if len(req.Device) != 3 || !strings.HasPrefix(req.Device, "vd") || req.Device[2] < 'b' || req.Device[2] > 'q' {
			return errs.Invalid("device", "device %q: use vdb to vdq", req.Device)
		}
		return nil
	}
	if req.Device != "" {
		return errs.Invalid("device", "a container sees a volume at a path: give path, not device")
	}
	if req.Path == "" {
		req.Path = "/data"
	}
	p := req.Path
	if !strings.HasPrefix(p, "/") || len(p) > 256 || p == "/" || strings.ContainsAny(p, "\x00\n") {
		return errs.Invalid("path", "path %q: an absolute path in the container, not /, at most 256 characters", p)
	}
	for _, part := range strings.Split(p[1:], "/") {
		if part == "" || part == "." || part == ".." {
			return errs.Invalid("path", "path %q: no empty, . or .. parts", p)
		}
	}
	for _, bad := range []string{"/proc", "/sys", "/dev"} {
		if p == bad || strings.HasPrefix(p, bad+"/") {
			return errs.Invalid("path", "path %q: not under %s", p, bad)
		}
	}
	return nil
}

// Attach attaches a volume to an instance of the project on the volume's
// host (any host for a shared pool). The instance's host does it: at once
// for a running VM (hot-plug), at its next start otherwise.
func (svc *Service) Attach(ctx context.Context, project, name string, req api.VolumeAttach) (api.Volume, error) {
	if err := validate.Name("instance", req.Instance); err != nil {
		return api.Volume{}, err
	}
	in, _, err := svc.inst.Get(ctx, project, req.Instance)
	if err != nil {
		return api.Volume{}, err
	}
	if err := checkAttach(&req, in.Type); err != nil {
		return api.Volume{}, err
	}
	if in.State == api.StateDone || in.State == api.StateShutdown || in.State == api.StateEpilog {
		return api.Volume{}, errs.Conflict("instance %q is %s", req.Instance, in.State)
	}
	if in.State == api.StateMigrate {
		return api.Volume{}, errs.Conflict("instance %q is migrating: attach once it has moved", req.Instance)
	}
	if in.State == api.StateUnknown {
		// Its host cannot carry the attachment out, and an HA decision
		// that recreates it elsewhere hands over only the volumes it read
		// (ha.go).
		return api.Volume{}, errs.Conflict("instance %q is UNKNOWN (its host %s is lost): attach once it is back", req.Instance, in.Host)
	}
	pools, err := svc.pools(ctx)
	if err != nil {
		return api.Volume{}, err
	}
	all, err := store.ListJSON[record](ctx, svc.s, prefix+project+"/")
	if err != nil {
		return api.Volume{}, err
	}
	used := map[string]bool{}
	for _, it := range all {
		if a := it.Value.Attachment; a != nil && a.InstanceID == in.ID && it.Value.Name != name {
			used[a.Device], used[a.Path] = true, true
		}
	}
	if in.Type == api.TypeVM && req.Device == "" {
		for c := 'b'; c <= 'q'; c++ {
			if d := "vd" + string(c); !used[d] {
				req.Device = d
				break
			}
		}
	}
	if used[req.Device+req.Path] && req.Device+req.Path != "" {
		return api.Volume{}, errs.Conflict("instance %q already has a volume at %s", req.Instance, req.Device+req.Path)
	}
	return svc.update(ctx, project, name, func(r *record) error {
		switch {
		case r.Attachment != nil && r.Attachment.InstanceID == in.ID && !r.Detaching:
			return errs.Conflict("volume %q is already attached to instance %q", name, req.Instance)
		case r.Attachment != nil:
			return errs.Conflict("volume %q is attached to instance %q: a volume is attached to one instance at a time", name, r.Attachment.Instance)
		case r.Status != api.VolumeAvailable:
			return errs.Conflict("volume %q is %s, not available", name, r.Status)
		case in.Type == api.TypeContainer && r.Format != api.VolumeExt4:
			return errs.Invalid("instance", "a container mounts filesystem volumes: volume %q is %s; make one with format ext4", name, r.Format)
		case in.Type == api.TypeVM && r.Format != api.VolumeQcow2:
			// A guest writes a disk's raw bytes: an ext4 volume it had
			// would later be mounted by the host's kernel for a container.
			return errs.Invalid("instance", "a VM takes qcow2 volumes: volume %q is %s (filesystem volumes are for containers)", name, r.Format)
		}
		if p := pools[r.Pool]; p.Type != api.PoolSharedDir {
			if h := instanceHost(in); h != r.Host {
				where := "is not placed yet"
				if h != "" {
					where = "is on host " + h
				}
				return errs.Conflict("volume %q lives on host %s and instance %q %s: a local volume attaches only to instances on its host (make it with near=%s)", name, r.Host, req.Instance, where, req.Instance)
			}
		}
		r.Attachment = &api.VolumeAttachment{Instance: in.Name, InstanceID: in.ID, Device: req.Device, Path: req.Path}
		r.Status = api.VolumeInUse
		return nil
	})
}

// Detach asks the instance's host to let the volume go; the attachment
// goes once it has.
func (svc *Service) Detach(ctx context.Context, project, name string) (api.Volume, error) {
	if r, _, err := svc.get(ctx, project, name); err == nil && r.Attachment != nil {
		if in, _, err := svc.inst.Get(ctx, project, r.Attachment.Instance); err == nil && in.State == api.StateMigrate && in.ID == r.Attachment.InstanceID {
			return api.Volume{}, errs.Conflict("instance %q is migrating: detach volume %q once it has moved", in.Name, name)
		}
	}
	return svc.update(ctx, project, name, func(r *record) error {
		if r.Attachment == nil {
			return errs.Conflict("volume %q is not attached", name)
		}
		if r.Attachment.Device == api.BootDevice {
			return errs.Conflict("volume %q is the root disk of instance %q: it is let go when the instance is terminated", name, r.Attachment.Instance)
		}
		if !r.Attachment.Attached {
			// Never attached on a host: nothing to undo.
			r.Attachment, r.Status, r.Detaching = nil, api.VolumeAvailable, false
			return nil
		}
		r.Detaching = true
		return nil
	})
}
