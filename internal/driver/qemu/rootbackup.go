package qemu

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"

	"github.com/kumocloud/kumo/internal/driver"
	"github.com/kumocloud/kumo/internal/vmimage"
)

// Root disk backups (driver.RootDiskCopier): a VM's own root disk (its
// overlay on the cached image) is copied flattened into one standalone
// qcow2, as for an instance snapshot (the guest paused meanwhile), and
// sent as a volume backup; a VM restored from one gets a standalone disk
// made of the backup's bytes (no base) in place of a new overlay, and
// the image, if it is a vm-kernel one, still gives the kernel.

var _ driver.RootDiskCopier = (*Driver)(nil)

// CopyRootDisk copies the VM's own root disk into target (qcow2).
func (d *Driver) CopyRootDisk(ctx context.Context, id, target string) (string, error) {
	m, err := d.readMeta(id)
	if err != nil {
		return "", driver.ErrNotFound
	}
	if m.Spec.BootVolume != "" {
		return "", errors.New("the VM boots from a volume: its root disk is backed up as that volume")
	}
	if _, err := d.copyDisk(ctx, id, target); err != nil {
		os.Remove(target)
		return "", err
	}
	return vmimage.FormatQcow2, nil
}

// prepareRootDisk is PROLOG for a VM whose root disk is restored from a
// backup (Spec.RootDisk, raw bytes): its disk.qcow2 is made of them,
// standalone, grown to the flavor's disk if smaller.
func (d *Driver) prepareRootDisk(ctx context.Context, s driver.Spec) error {
	raw := s.RootDisk
	s.RootDisk = "" // taken: not the VM's to keep
	return d.prepareWithoutOverlay(ctx, s, func() error {
		disk := d.path(s.ID, "disk.qcow2")
		src := vmimage.JSONFilename(vmimage.Node(raw, vmimage.FormatRaw))
		if out, err := exec.CommandContext(ctx, "qemu-img", "convert", "-O", "qcow2", src, disk).CombinedOutput(); err != nil {
			return fmt.Errorf("qemu-img convert: %v: %s", err, strings.TrimSpace(string(out)))
		}
		st, err := os.Stat(raw)
		if err != nil {
			return err
		}
		if want := s.Size.DiskGiB << 30; want > st.Size() {
			if out, err := exec.CommandContext(ctx, "qemu-img", "resize", "-f", "qcow2", disk, strconv.FormatInt(want, 10)).CombinedOutput(); err != nil {
				return fmt.Errorf("qemu-img resize: %v: %s", err, strings.TrimSpace(string(out)))
			}
		}
		return nil
	})
}
