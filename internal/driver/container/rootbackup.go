package container

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"

	"github.com/kumocloud/kumo/internal/driver"
)

// Root filesystem backups (driver.RootDiskCopier): a container's root
// filesystem is the image's (shared, read-only) under its writable layer,
// the ext4 image DIR/disk.img; that image is what a backup keeps, and what
// a restored container gets back in place of a new, empty one.

var _ driver.RootDiskCopier = (*Driver)(nil)

// rootFormat is the format of a container's root filesystem copy.
const rootFormat = "ext4"

// CopyRootDisk copies the container's writable layer into target: its
// ext4 image, frozen (fsfreeze) while it is copied when it is mounted, so
// the copy is the filesystem at one instant; sparse, so only what the
// container wrote takes room.
func (d *Driver) CopyRootDisk(ctx context.Context, id, target string) (string, error) {
	if !d.Has(id) {
		return "", driver.ErrNotFound
	}
	img := d.diskImage(id)
	if _, err := os.Stat(img); err != nil {
		return "", fmt.Errorf("the container has no disk of its own (prepared by an older kumo): %w", err)
	}
	if isMount(d.diskDir(id)) {
		if out, err := exec.CommandContext(ctx, "fsfreeze", "-f", d.diskDir(id)).CombinedOutput(); err != nil {
			return "", fmt.Errorf("fsfreeze: %v: %s", err, strings.TrimSpace(string(out)))
		}
		defer exec.Command("fsfreeze", "-u", d.diskDir(id)).Run()
		diskFrozen(id)
	}
	os.Remove(target)
	if out, err := exec.CommandContext(ctx, "cp", "--sparse=always", img, target).CombinedOutput(); err != nil {
		os.Remove(target)
		return "", fmt.Errorf("cp: %v: %s", err, strings.TrimSpace(string(out)))
	}
	return rootFormat, nil
}

// diskFrozen is called once CopyRootDisk froze a container's disk (tests
// stop there, as a killed agent would).
var diskFrozen = func(string) {}

// thawDisks thaws, as the driver opens, the disks a killed driver froze
// to copy them (nothing of this driver copies yet): a container's writes
// would else block for good while the cloud says it runs. Thawing a disk
// that is not frozen fails, harmlessly.
func (d *Driver) thawDisks() {
	ids, _ := d.inst.IDs()
	for _, id := range ids {
		if isMount(d.diskDir(id)) {
			exec.Command("fsfreeze", "-u", d.diskDir(id)).Run()
		}
	}
}

// takeRootDisk makes a restored root filesystem (Spec.RootDisk) the
// instance's disk image: checked and repaired by e2fsck before the host
// mounts it (its bytes came from the backup store), no larger than the
// flavor's disk, grown to it when smaller.
func (d *Driver) takeRootDisk(ctx context.Context, s driver.Spec) error {
	want := max(s.Size.DiskGiB, MinDiskGiB) << 30
	st, err := os.Stat(s.RootDisk)
	if err != nil {
		return err
	}
	if st.Size() > want {
		return fmt.Errorf("the restored root filesystem is %d bytes, more than the flavor's %d GiB disk", st.Size(), want>>30)
	}
	img := d.diskImage(s.ID)
	if err := os.Rename(s.RootDisk, img); err != nil {
		if out, err := exec.CommandContext(ctx, "cp", "--sparse=always", s.RootDisk, img).CombinedOutput(); err != nil {
			return fmt.Errorf("cp: %v: %s", err, strings.TrimSpace(string(out)))
		}
	}
	// e2fsck: 0 clean, 1 errors fixed, 2 fixed (a reboot would be
	// needed were it mounted); more is a filesystem it cannot make right.
	out, err := exec.CommandContext(ctx, "e2fsck", "-f", "-y", img).CombinedOutput()
	var ee *exec.ExitError
	if err != nil && (!errors.As(err, &ee) || ee.ExitCode() > 2) {
		return fmt.Errorf("the restored root filesystem fails its check: e2fsck: %v: %s", err, lastLine(strings.TrimSpace(string(out))))
	}
	if st.Size() < want {
		if err := os.Truncate(img, want); err != nil {
			return err
		}
		if out, err := exec.CommandContext(ctx, "resize2fs", img).CombinedOutput(); err != nil {
			return fmt.Errorf("resize2fs: %v: %s", err, strings.TrimSpace(string(out)))
		}
	}
	return nil
}
