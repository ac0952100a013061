package qemu

import (
	"context"
	"fmt"
	"os"

	"github.com/kumocloud/kumo/internal/driver"
	"github.com/kumocloud/kumo/internal/vmimage"
)

// Boot from volume: a VM whose Spec.BootVolume names one of its volumes
// has that volume as its root disk - the first disk, where the overlay on
// the image would be (node "disk"; the guest sees /dev/vda, the volume's
// full size) - and no overlay. The image, if any, gives only its kernel,
// initrd and command line (a vm-kernel image); a vm-disk image's bytes
// are already in the volume (it was made from them), so the VM boots the
// volume with its own boot loader. The volume's file belongs to the
// volume job: Cleanup never touches it.

// bootVolume is the spec's boot volume.
func bootVolume(s driver.Spec) (driver.Volume, bool) {
	for _, v := range s.Volumes {
		if v.ID == s.BootVolume {
			return v, true
		}
	}
	return driver.Volume{}, false
}

// prepareBootVolume is PROLOG for a VM booting from a volume: the image's
// kernel (if it is a vm-kernel image), the seed and swap; no disk.
func (d *Driver) prepareBootVolume(ctx context.Context, s driver.Spec) error {
	if _, ok := bootVolume(s); !ok {
		return fmt.Errorf("boot volume %s is not attached on this host", s.BootVolume)
	}
	return d.prepareWithoutOverlay(ctx, s, nil)
}

// prepareWithoutOverlay is PROLOG for a VM whose root disk is not an
// overlay on its image: the image gives only its kernel (a vm-kernel
// image), makeDisk (if any) makes the disk in the VM's directory; then
// the seed and swap. Nothing is left when it fails.
func (d *Driver) prepareWithoutOverlay(ctx context.Context, s driver.Spec, makeDisk func() error) (err error) {
	m := meta{Spec: s, Want: wantPrepared, BaseKnown: true}
	if s.Image != "" {
		img, err := d.image(ctx, s)
		if err != nil {
			return err
		}
		m = withKernel(m, img)
	}
	dir := d.dir(s.ID)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	defer func() {
		if err != nil {
			os.RemoveAll(dir)
		}
	}()
	if makeDisk != nil {
		if err := makeDisk(); err != nil {
			return err
		}
	}
	return d.finishPrepare(ctx, s, m)
}

// bootNode is the root disk node of a VM booting from a volume: the
// volume's file, its format given (QEMU probes nothing).
func bootNode(m meta) map[string]any {
	v, _ := bootVolume(m.Spec)
	n := vmimage.Node(v.Source, v.Format)
	n["discard"] = "unmap"
	n["file"].(map[string]any)["discard"] = "unmap"
	return n
}
