package qemu

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"

	"github.com/kumocloud/kumo/internal/driver"
	"github.com/kumocloud/kumo/internal/vmimage"
)

var _ driver.Snapshotter = (*Driver)(nil)

// Snapshot implements driver.Snapshotter: the VM's disk, its overlay and
// base flattened into one standalone qcow2 (qemu-img convert), written to
// w - inside a vm-kernel tarball with the kernel, initrd and cmdline when
// the VM boots from a kernel image. A running guest is paused while its
// disk is copied, so the copy is consistent as after a power cut, and
// continues afterwards. A VM booting from a volume has that volume's
// bytes as its disk.
func (d *Driver) Snapshot(ctx context.Context, id string, w io.Writer) error {
	tmp := d.path(id, "snapshot.qcow2")
	defer os.Remove(tmp)
	m, err := d.copyDisk(ctx, id, tmp)
	if err != nil {
		return err
	}
	if m.Kernel == "" {
		f, err := os.Open(tmp)
		if err != nil {
			return err
		}
		defer f.Close()
		_, err = io.Copy(w, f)
		return err
	}
	members := []vmimage.Member{{Name: "vmlinuz", Path: m.Kernel}}
	if m.Initrd != "" {
		members = append(members, vmimage.Member{Name: "initrd", Path: m.Initrd})
	}
	if m.Cmdline != "" {
		members = append(members, vmimage.Member{Name: "cmdline", Data: []byte(m.Cmdline + "\n")})
	}
	return vmimage.WriteKernelImage(w, append(members, vmimage.Member{Name: "disk.qcow2", Path: tmp}))
}

// copyDisk copies the VM's disk, flattened into one standalone qcow2, to
// tmp: paused while it is copied if it runs. It returns the VM's record.
func (d *Driver) copyDisk(ctx context.Context, id, tmp string) (meta, error) {
	var m meta
	err := d.act(ctx, id, func(rec meta, qs string) error {
		m = rec
		if qs == "running" {
			// Marked first: a driver killed before the cont below
			// (the agent's process) continues it when opened again.
			rec.PausedForCopy = true
			if err := d.writeMeta(id, rec); err != nil {
				return err
			}
			if err := d.do(ctx, id, "stop", nil, nil); err != nil {
				d.continueCopy(context.WithoutCancel(ctx), id)
				return err
			}
			defer d.continueCopy(context.WithoutCancel(ctx), id)
			copyPaused(id)
		}
		// -U: QEMU holds the image lock while it runs (paused here). The
		// source is the same node tree QEMU runs (diskTree): the base is
		// named explicitly, no header is followed, nothing is probed.
		var src string
		if rec.Spec.BootVolume != "" {
			// Its root disk is the volume it boots from (bootvolume.go).
			src = vmimage.JSONFilename(bootNode(rec))
		} else {
			rec, err := d.withBase(ctx, id, rec)
			if err != nil {
				return err
			}
			src = vmimage.JSONFilename(d.diskTree(id, rec))
		}
		out, err := exec.CommandContext(ctx, "qemu-img", "convert", "-U", "-O", "qcow2", src, tmp).CombinedOutput()
		if err != nil {
			return fmt.Errorf("qemu-img convert: %v: %s", err, strings.TrimSpace(string(out)))
		}
		return nil
	})
	return m, err
}

// continueCopy runs a VM copyDisk paused again and clears its mark.
func (d *Driver) continueCopy(ctx context.Context, id string) {
	if err := d.do(ctx, id, "cont", nil, nil); err != nil {
		return // the mark stays: the next opening of the driver tries again
	}
	if m, err := d.readMeta(id); err == nil && m.PausedForCopy {
		m.PausedForCopy = false
		d.writeMeta(id, m)
	}
}

// resumeCopies continues, as the driver opens, the VMs a killed driver
// paused to copy their disks (nothing of this driver copies yet): their
// guests would else stay paused while the cloud says they run.
func (d *Driver) resumeCopies(ctx context.Context) {
	ids, _ := d.inst.IDs()
	for _, id := range ids {
		m, err := d.readMeta(id)
		if err != nil || !m.PausedForCopy {
			continue
		}
		if qs, err := d.qemuState(ctx, id); err == nil && qs == "paused" {
			d.continueCopy(ctx, id)
			continue
		}
		m.PausedForCopy = false // not paused (any more): nothing to continue
		d.writeMeta(id, m)
	}
}

// copyPaused is called once copyDisk paused a VM (tests stop there, as a
// killed agent would).
var copyPaused = func(string) {}
