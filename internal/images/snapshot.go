package images

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/kumocloud/kumo/api"
	"github.com/kumocloud/kumo/internal/errs"
	"github.com/kumocloud/kumo/internal/operations"
	"github.com/kumocloud/kumo/internal/reqctx"
	"github.com/kumocloud/kumo/internal/secret"
)

// OpSnapshot is the kind of the operation that copies a VM's disk into an
// image.
const OpSnapshot = "instance.snapshot"

// Instances is what a snapshot reads of compute.
type Instances interface {
	Instance(ctx context.Context, project, name string) (api.Instance, error)
}

// DiskReader streams a VM's disk from the host that keeps it, with the
// size the host announces (0: not told). The size is the host's word: it
// only scales progress; Upload bounds what is really taken.
type DiskReader interface {
	ReadDisk(ctx context.Context, in api.Instance) (io.ReadCloser, int64, error)
}

// Operations is what snapshots need of the operations manager.
type Operations interface {
	Register(kind string, h operations.Handler)
	Start(ctx context.Context, project, kind, description, resource string, args map[string]string) (api.Operation, error)
}

// Snapshots copy VM disks into new images, each as a durable operation.
//
// The request registers the image (counted in the quota), so that a name
// taken, a full quota or an instance without a disk to copy is refused at
// once; the operation then has the host stream the disk and uploads the
// stream (Upload checks it as any import), reporting the bytes received
// over the announced size as progress. On failure, nothing is left: the
// image record, its quota and any bytes go.
//
// A server restart cuts the host's stream, so an operation cut short is
// not resumed but ended: failed, with its image removed (or succeeded, if
// its image had become active before the restart). Operations know they
// were cut short because another server process (boot) started them.
type Snapshots struct {
	images    *Service
	instances Instances
	disks     DiskReader
	ops       Operations
	boot      string
}

// NewSnapshots returns the snapshot service and registers its operation
// with ops (before ops resumes operations).
func NewSnapshots(images *Service, instances Instances, disks DiskReader, ops Operations) *Snapshots {
	sn := &Snapshots{images: images, instances: instances, disks: disks, ops: ops, boot: secret.Hex(8)}
	ops.Register(OpSnapshot, sn.run)
	return sn
}

// diskKept refuses instances whose disk cannot be copied: only VMs, and
// only while a host keeps their disk.
func diskKept(in api.Instance) error {
	if in.Type != api.TypeVM {
		return errs.Conflict("instance %q is a %s; snapshots are of VM disks", in.Name, in.Type)
	}
	switch in.State {
	case api.StateRunning, api.StateSuspended, api.StatePoweroff, api.StateStopped:
		return nil
	}
	return errs.Conflict("instance %q is %s; a snapshot needs its disk on a host (RUNNING, SUSPENDED, POWEROFF or STOPPED)", in.Name, in.State)
}

// Start registers the image req names in project and starts the operation
// that fills it from instance's disk.
func (sn *Snapshots) Start(ctx context.Context, project, instance string, req api.InstanceSnapshotPost) (api.Operation, error) {
	in, err := sn.instances.Instance(ctx, project, instance)
	if err != nil {
		return api.Operation{}, err
	}
	if err := diskKept(in); err != nil {
		return api.Operation{}, err
	}
	kind, format := api.KindVMDisk, "qcow2"
	if src, err := sn.images.Resolve(ctx, project, in.Image); err == nil && src.Kind == api.KindVMKernel {
		kind, format = api.KindVMKernel, "tar.gz"
	}
	img, err := sn.images.Create(ctx, project, api.ImagesPost{Name: req.Name, Kind: kind, Format: format, Visibility: req.Visibility, Labels: req.Labels,
		Properties: map[string]string{"source_instance": in.Name}})
	if err != nil {
		return api.Operation{}, err
	}
	op, err := sn.ops.Start(ctx, project, OpSnapshot, fmt.Sprintf("Snapshot of instance %s into image %s", in.Name, img.Name), url(project, img.Name),
		map[string]string{"project": project, "instance": in.Name, "instance_id": in.ID, "image": img.Name, "image_id": img.ID, "boot": sn.boot})
	if err != nil {
		sn.drop(context.WithoutCancel(ctx), project, img.Name, img.ID)
		return api.Operation{}, err
	}
	return op, nil
}

// run is the operation: the copy, or, for one another server process
// started, its end.
func (sn *Snapshots) run(ctx context.Context, op *operations.Op) error {
	a := op.Args
	project, name, id := a["project"], a["image"], a["image_id"]
	if a["boot"] != sn.boot {
		if r, _, err := sn.images.get(ctx, project, name); err == nil && r.ID == id && r.Status == api.ImageActive {
			return nil
		}
		return sn.fail(ctx, project, name, id, errs.Unavailable("the server restarted during the copy, which cannot go on without it; the image was removed: try again"))
	}
	err := sn.copyDisk(ctx, op)
	if err != nil {
		// Also when ctx ended (the server is stopping): the image goes
		// now, the operation ends when the next server start resumes it.
		return sn.fail(context.WithoutCancel(ctx), project, name, id, err)
	}
	return nil
}

func (sn *Snapshots) copyDisk(ctx context.Context, op *operations.Op) error {
	a := op.Args
	in, err := sn.instances.Instance(ctx, a["project"], a["instance"])
	if err == nil && in.ID != a["instance_id"] {
		err = errs.Conflict("instance %q was deleted during the snapshot", a["instance"])
	}
	if err == nil {
		err = diskKept(in)
	}
	if err != nil {
		return err
	}
	disk, size, err := sn.disks.ReadDisk(ctx, in)
	if err != nil {
		return err
	}
	defer disk.Close()
	_, err = sn.images.upload(ctx, a["project"], a["image"], a["image_id"], &progressReader{r: disk, size: size, report: func(pct int) { op.Progress(ctx, pct) }})
	return err
}

// fail removes what the operation made and returns its error, with the
// image's name if it could not be removed.
func (sn *Snapshots) fail(ctx context.Context, project, name, id string, err error) error {
	if derr := sn.drop(ctx, project, name, id); derr != nil {
		reqctx.Logger(ctx).Warn("removing a failed snapshot's image", "image", name, "err", derr)
		return fmt.Errorf("%w (and image %q could not be removed: %v; delete it)", err, name, derr)
	}
	return err
}

// drop deletes the image the operation registered, if it is still there
// (not one of the same name made since).
func (sn *Snapshots) drop(ctx context.Context, project, name, id string) error {
	r, rev, err := sn.images.get(ctx, project, name)
	if errors.Is(err, errs.ErrNotFound) || err == nil && r.ID != id {
		return nil
	}
	if err != nil {
		return err
	}
	return sn.images.remove(ctx, r, rev)
}

// progressReader reports the share of size read so far, in percent, and
// holds the stream to the size announced: a host that stops early (an
// agent killed mid-stream ends it as cleanly as one that is done) or
// sends more is an error, not an image.
type progressReader struct {
	r      io.Reader
	n      int64
	size   int64 // 0: not told
	report func(pct int)
}

func (p *progressReader) Read(b []byte) (int, error) {
	n, err := p.r.Read(b)
	p.n += int64(n)
	if p.size <= 0 {
		return n, err
	}
	if p.n > p.size {
		return n, fmt.Errorf("the host announced %d bytes and sent more", p.size)
	}
	if n > 0 {
		p.report(int(p.n * 100 / p.size))
	}
	if err == io.EOF && p.n < p.size {
		err = fmt.Errorf("the host sent %d of %d bytes", p.n, p.size)
	}
	return n, err
}
