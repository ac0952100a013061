package driver

import (
	"context"
	"errors"
)

// Volume is a persistent volume attached to an instance, as its driver
// needs it. The agent makes the volume's file (and, for a container,
// mounts its filesystem on the host) before it hands it over.
type Volume struct {
	// ID is the volume's id (its device serial in a VM, 20 characters at
	// most kept).
	ID string `json:"id"`
	// Format is the file's format for a VM disk (qcow2 or raw).
	Format string `json:"format,omitempty"`
	// Source is the volume's file (VMs) or the host directory its
	// filesystem is mounted on (containers).
	Source string `json:"source"`
	// Device is a VM's disk name (vdb..vdq): it fixes the disk's PCI slot,
	// so the guest sees the same layout at every boot and restore.
	Device string `json:"device,omitempty"`
	// Target is where a container sees the volume.
	Target string `json:"target,omitempty"`
	// Local: the volume's file is on this host only (a local pool). A
	// live migration's target is given it as an empty file of the
	// volume's size, which the source mirrors into; a volume of a pool
	// every host mounts is opened as it is on both.
	Local bool `json:"local,omitempty"`
}

// ErrNoLiveAttach says a driver cannot attach or detach a volume while
// the instance runs: it takes effect at the next start.
var ErrNoLiveAttach = errors.New("driver: volumes attach at the next start")

// VolumeAttacher is the optional feature of drivers that attach volumes to
// running instances (VMs: hot-plug; containers: a mount into the running
// container). Volumes in Spec.Volumes are attached at every start whether
// or not a driver has it. Attaching one already attached, or detaching
// one that is not, is a no-op.
type VolumeAttacher interface {
	AttachVolume(ctx context.Context, id string, v Volume) error
	DetachVolume(ctx context.Context, id string, v Volume) error
}

var _ VolumeAttacher = (*combined)(nil)

// AttachVolume routes to the driver of the instance.
func (c *combined) AttachVolume(ctx context.Context, id string, v Volume) error {
	return c.on(ctx, id, func(d Driver) error {
		if va, ok := d.(VolumeAttacher); ok {
			return va.AttachVolume(ctx, id, v)
		}
		return ErrNoLiveAttach
	})
}

// DetachVolume routes to the driver of the instance.
func (c *combined) DetachVolume(ctx context.Context, id string, v Volume) error {
	return c.on(ctx, id, func(d Driver) error {
		if va, ok := d.(VolumeAttacher); ok {
			return va.DetachVolume(ctx, id, v)
		}
		return ErrNoLiveAttach
	})
}

// VolumeResizer is the optional feature of drivers that grow an attached
// volume through the instance (QEMU's block_resize: the guest sees the
// new size).
type VolumeResizer interface {
	ResizeVolume(ctx context.Context, id string, v Volume, size int64) error
}

var _ VolumeResizer = (*combined)(nil)

// ResizeVolume routes to the driver of the instance.
func (c *combined) ResizeVolume(ctx context.Context, id string, v Volume, size int64) error {
	return c.on(ctx, id, func(d Driver) error {
		if vr, ok := d.(VolumeResizer); ok {
			return vr.ResizeVolume(ctx, id, v, size)
		}
		return ErrNoLiveAttach
	})
}

// VolumeSnapshotter is the optional feature of drivers that copy an
// attached volume consistently while the instance runs (QEMU's
// blockdev-backup: the copy is the disk at one instant) into a new file.
type VolumeSnapshotter interface {
	SnapshotVolume(ctx context.Context, id string, v Volume, target string) error
}

var _ VolumeSnapshotter = (*combined)(nil)

// SnapshotVolume routes to the driver of the instance.
func (c *combined) SnapshotVolume(ctx context.Context, id string, v Volume, target string) error {
	return c.on(ctx, id, func(d Driver) error {
		if vs, ok := d.(VolumeSnapshotter); ok {
			return vs.SnapshotVolume(ctx, id, v, target)
		}
		return ErrNoLiveAttach
	})
}

// VolumeCopy says what CopyVolumeForBackup copied.
type VolumeCopy struct {
	// Size is the volume's size in bytes.
	Size int64
	// Incremental: only the chunks in Changed were copied (the rest of
	// the target reads as zeros); otherwise the whole volume was.
	Incremental bool
	// Changed are the indices of the chunks written since the copy
	// tracked as since.
	Changed []int64
}

// ErrNotTracked says a driver tracks no writes to that volume: the
// caller copies it whole another way (SnapshotVolume).
var ErrNotTracked = errors.New("driver: the volume's writes are not tracked")

// VolumeBackupCopier is the optional feature of drivers that track what
// a running instance writes to a volume (QEMU's persistent dirty
// bitmaps), so that a backup reads only what changed since the last one.
type VolumeBackupCopier interface {
	// CopyVolumeForBackup copies the volume of a running instance into a
	// new file at target, at one instant, and tracks the writes made from
	// that instant on under the name next. When the writes since an
	// earlier copy (since, "" for none) are still tracked, consistently
	// (the instance did not crash since), in chunks of chunkSize bytes
	// and the volume is still size bytes, only the chunks written since
	// are copied; otherwise the whole volume is.
	CopyVolumeForBackup(ctx context.Context, id string, v Volume, since string, size int64, next, target string, chunkSize int64) (VolumeCopy, error)
	// KeepVolumeTracking stops tracking writes under every name but keep
	// ("": none).
	KeepVolumeTracking(ctx context.Context, id string, v Volume, keep string) error
}

var _ VolumeBackupCopier = (*combined)(nil)

// CopyVolumeForBackup routes to the driver of the instance.
func (c *combined) CopyVolumeForBackup(ctx context.Context, id string, v Volume, since string, size int64, next, target string, chunkSize int64) (VolumeCopy, error) {
	var out VolumeCopy
	err := c.on(ctx, id, func(d Driver) (err error) {
		if vc, ok := d.(VolumeBackupCopier); ok {
			out, err = vc.CopyVolumeForBackup(ctx, id, v, since, size, next, target, chunkSize)
			return err
		}
		return ErrNotTracked
	})
	return out, err
}

// KeepVolumeTracking routes to the driver of the instance.
func (c *combined) KeepVolumeTracking(ctx context.Context, id string, v Volume, keep string) error {
	return c.on(ctx, id, func(d Driver) error {
		if vc, ok := d.(VolumeBackupCopier); ok {
			return vc.KeepVolumeTracking(ctx, id, v, keep)
		}
		return ErrNotTracked
	})
}

// ErrNoRootCopy says a driver cannot copy an instance's root disk for a
// backup.
var ErrNoRootCopy = errors.New("driver: this driver does not back up root disks")

// RootDiskCopier is the optional feature of drivers whose instances have
// a root disk of their own to back up (a VM's disk that is not a volume,
// a container's writable layer): CopyRootDisk copies it, consistent (a VM
// paused, a filesystem frozen while it is copied), into a new file at
// target, in the format it returns. A driver with it takes Spec.RootDisk
// (raw bytes, or the filesystem image) in Prepare: the instance's root
// disk is made of that file (a restored backup) instead of anew.
type RootDiskCopier interface {
	CopyRootDisk(ctx context.Context, id, target string) (format string, err error)
}

var _ RootDiskCopier = (*combined)(nil)

// CopyRootDisk routes to the driver of the instance.
func (c *combined) CopyRootDisk(ctx context.Context, id, target string) (string, error) {
	var format string
	err := c.on(ctx, id, func(d Driver) (err error) {
		if rc, ok := d.(RootDiskCopier); ok {
			format, err = rc.CopyRootDisk(ctx, id, target)
			return err
		}
		return ErrNoRootCopy
	})
	return format, err
}
