package container

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// A container's writable layer (overlayfs's upper and work dirs) lives on
// a filesystem of its own: an ext4 image file of the flavor's disk size in
// the instance's directory (sparse: it takes host space only as the
// container writes), mounted through a loop device. A container that
// fills it gets ENOSPC, as on a disk of that size, and the host's own
// disk is untouched. The loop device is bound with autoclear, so the
// kernel frees it when the mount goes: unmounting is all there is to undo.
//
//	DIR/disk.img    the ext4 image
//	DIR/disk/       where it is mounted: upper/ and work/
//	DIR/rootfs/     the overlay (image rootfs + upper), runc's root

// MinDiskGiB is the disk of a container whose flavor says 0.
const MinDiskGiB = 1

func (d *Driver) diskImage(id string) string { return d.inst.Path(id, "disk.img") }
func (d *Driver) diskDir(id string) string   { return d.inst.Path(id, "disk") }
func (d *Driver) rootfs(id string) string    { return d.inst.Path(id, "rootfs") }

// upperRoot is where upper/ and work/ are: on the disk, or, for a
// container prepared before disks were bounded, in the instance's dir.
func (d *Driver) upperRoot(id string) string {
	if _, err := os.Stat(d.diskImage(id)); err == nil {
		return d.diskDir(id)
	}
	return d.dir(id)
}

// makeDisk makes the instance's ext4 image of gib GiB. The inode tables
// and journal are left to be zeroed lazily (never, for a sparse file that
// reads as zeros anyway), so this takes tens of milliseconds.
func (d *Driver) makeDisk(ctx context.Context, id string, gib int64) error {
	f, err := os.OpenFile(d.diskImage(id), os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	err = f.Truncate(max(gib, MinDiskGiB) << 30)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	out, err := exec.CommandContext(ctx, d.mkfs, "-q", "-F", "-m", "0", "-L", "kumo-upper",
		"-E", "lazy_itable_init=1,lazy_journal_init=1,nodiscard", d.diskImage(id)).CombinedOutput()
	if err != nil {
		return fmt.Errorf("mkfs.ext4: %v: %s", err, strings.TrimSpace(string(out)))
	}
	return nil
}

// mountDisk mounts the instance's ext4 image (if it has one and it is not
// mounted yet) and makes upper/ and work/ on it.
func (d *Driver) mountDisk(id string) error {
	img, dir := d.diskImage(id), d.diskDir(id)
	if _, err := os.Stat(img); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if !isMount(dir) {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return err
		}
		if err := loopMount(img, dir); err != nil {
			return fmt.Errorf("mounting the container's disk: %w", err)
		}
	}
	for _, sub := range []string{"upper", "work"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o700); err != nil {
			return err
		}
	}
	return nil
}

// loopMount binds img to a free loop device with autoclear and mounts it
// at dir. Other programs take loop devices too: one taken between asking
// for a free one and binding it is skipped for the next.
func loopMount(img, dir string) error {
	f, err := os.OpenFile(img, os.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	ctl, err := os.OpenFile("/dev/loop-control", os.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("no loop devices on this host: %w", err)
	}
	defer ctl.Close()
	for attempt := 0; ; attempt++ {
		n, err := unix.IoctlRetInt(int(ctl.Fd()), unix.LOOP_CTL_GET_FREE)
		if err != nil {
			return fmt.Errorf("finding a free loop device: %w", err)
		}
		dev := fmt.Sprintf("/dev/loop%d", n)
		if _, err := os.Stat(dev); errors.Is(err, os.ErrNotExist) {
			// A /dev without devtmpfs: make the node.
			unix.Mknod(dev, unix.S_IFBLK|0o660, int(unix.Mkdev(7, uint32(n))))
		}
		lf, err := os.OpenFile(dev, os.O_RDWR|unix.O_CLOEXEC, 0)
		if err != nil {
			return err
		}
		cfg := unix.LoopConfig{Fd: uint32(f.Fd()), Info: unix.LoopInfo64{Flags: unix.LO_FLAGS_AUTOCLEAR}}
		copy(cfg.Info.File_name[:], img)
		if err := unix.IoctlLoopConfigure(int(lf.Fd()), &cfg); err != nil {
			lf.Close()
			if errors.Is(err, unix.EBUSY) && attempt < 20 {
				continue
			}
			return fmt.Errorf("binding %s: %w", dev, err)
		}
		// The mount holds the device from here; closing our handle then
		// leaves it bound, closing it after a failed mount frees it.
		err = unix.Mount(dev, dir, "ext4", unix.MS_NOATIME, "noinit_itable")
		lf.Close()
		if err != nil {
			return fmt.Errorf("mount %s: %w", dev, err)
		}
		return nil
	}
}

// diskMounted says whether the instance's disk is mounted (or it has none).
func (d *Driver) diskMounted(id string) bool {
	return d.upperRoot(id) != d.diskDir(id) || isMount(d.diskDir(id))
}

// unmount takes a mount away (a lazy detach when something still holds
// it); a path that is not a mount point is no error.
func unmount(path string) error {
	err := unix.Unmount(path, 0)
	if errors.Is(err, unix.EBUSY) {
		err = unix.Unmount(path, unix.MNT_DETACH)
	}
	if err == nil || errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOENT) {
		return nil
	}
	return fmt.Errorf("unmount %s: %w", path, err)
}

// unmountAll takes the instance's overlay and then its disk away (the
// loop device goes with the disk's mount).
func (d *Driver) unmountAll(id string) error {
	return errors.Join(unmount(d.rootfs(id)), unmount(d.diskDir(id)))
}

// isMount says whether path is a mount point in this mount namespace (the
// kernel says so of the root of every mount; a mount detached lazily is
// not one any more).
func isMount(path string) bool {
	var st unix.Statx_t
	err := unix.Statx(unix.AT_FDCWD, path, unix.AT_SYMLINK_NOFOLLOW, unix.STATX_BASIC_STATS, &st)
	return err == nil && st.Attributes_mask&unix.STATX_ATTR_MOUNT_ROOT != 0 && st.Attributes&unix.STATX_ATTR_MOUNT_ROOT != 0
}
