package qemu

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/kumocloud/kumo/internal/driver"
	"github.com/kumocloud/kumo/internal/qmp"
	"github.com/kumocloud/kumo/internal/vmimage"
)

// Persistent volumes in a VM: each is a virtio disk whose node tree is
// given whole (format and file drivers: QEMU probes nothing), at a PCI
// slot fixed by its device name - vdb is slot 0x10, vdc 0x11... - so a VM
// sees the same layout at every boot and a saved state restores with its
// hot-plugged disks in place. Its serial is the volume's id (the first 20
// characters): the guest finds the disk by it (/sys/block/vdX/serial,
// /dev/disk/by-id/virtio-<serial>), as the kernel's vdX names go by probe
// order. Running VMs get them by hot-plug (blockdev-add, then device_add;
// device_del, then blockdev-del once the guest let go).

var (
	_ driver.VolumeAttacher = (*Driver)(nil)
	_ driver.VolumeResizer  = (*Driver)(nil)
)

// volNames are a volume's node, device and serial names.
func volNames(v driver.Volume) (node, dev, serial string) {
	short := strings.ReplaceAll(v.ID, "-", "")
	if len(short) > 20 {
		short = short[:20]
	}
	return "vol-" + short, "voldev-" + short, v.ID[:min(20, len(v.ID))]
}

// volSlot is the PCI slot of a volume's device name (vdb..vdq).
func volSlot(device string) (string, error) {
	if len(device) != 3 || !strings.HasPrefix(device, "vd") || device[2] < 'b' || device[2] > 'q' {
		return "", fmt.Errorf("volume device %q: vdb to vdq", device)
	}
	return fmt.Sprintf("0x%x", 0x10+int(device[2]-'b')), nil
}

func volNode(v driver.Volume) map[string]any {
	n := vmimage.Node(v.Source, v.Format)
	node, _, _ := volNames(v)
	n["node-name"] = node
	directIO(n, v.Source)
	return n
}

// directIO gives a disk node QEMU's cache=none (O_DIRECT on the file):
// the guest's own page cache is the only one, so the host's memory is not
// spent caching the disk twice (and charged to the VM's cgroup), and a
// guest flush is one flush. QEMU's documentation advises it for local
// files; libvirt and OpenStack use it. I/O stays on QEMU's thread pool
// (aio=threads): on this project's machine kind a bare QEMU with
// aio=native stopped completing a guest's writes once in a benchmark
// run (BenchmarkVolumeIO: fio hung in the guest, QEMU counted no more
// I/O), a risk not worth the thread pool's cost. A file
// whose filesystem takes no O_DIRECT (tmpfs before Linux 6.6, some FUSE
// filesystems) keeps QEMU's defaults, which work everywhere.
func directIO(n map[string]any, path string) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_DIRECT, 0)
	if err != nil {
		return
	}
	f.Close()
	cache := map[string]any{"direct": true, "no-flush": false}
	n["cache"] = cache
	n["file"].(map[string]any)["cache"] = cache
}

// volDevice is the device_add arguments of a volume.
func volDevice(v driver.Volume) (map[string]any, error) {
	slot, err := volSlot(v.Device)
	if err != nil {
		return nil, err
	}
	node, dev, serial := volNames(v)
	return map[string]any{"driver": "virtio-blk-pci", "drive": node, "id": dev, "serial": serial, "addr": slot}, nil
}

// volumeArgs are the command line of a VM's volumes.
func volumeArgs(vs []driver.Volume) []string {
	var a []string
	for _, v := range vs {
		dev, err := volDevice(v)
		if err != nil {
			continue
		}
		b, _ := json.Marshal(volNode(v))
		a = append(a, "-blockdev", string(b), "-device", fmt.Sprintf("virtio-blk-pci,drive=%s,id=%s,serial=%s,addr=%s", dev["drive"], dev["id"], dev["serial"], dev["addr"]))
	}
	return a
}

// withVolumes takes the volumes a start is given into the VM's record.
func withVolumes(m meta, s driver.Spec) meta {
	m.Spec.Volumes = s.Volumes
	return m
}

// AttachVolume implements driver.VolumeAttacher: hot-plug into a running
// VM; a VM that is not running has it at its next boot.
func (d *Driver) AttachVolume(ctx context.Context, id string, v driver.Volume) error {
	if m, err := d.readMeta(id); err == nil && m.Spec.BootVolume == v.ID {
		return nil // the root disk: in the VM from its boot on
	}
	dev, err := volDevice(v)
	if err != nil {
		return err
	}
	return d.act(ctx, id, func(m meta, qs string) error {
		if qs == "running" || qs == "paused" {
			c, err := d.dial(ctx, id)
			if err != nil {
				return err
			}
			defer c.Close()
			if err := c.Execute(ctx, "blockdev-add", volNode(v), nil); err != nil && !strings.Contains(err.Error(), "Duplicate") {
				return fmt.Errorf("blockdev-add: %w", err)
			}
			if err := c.Execute(ctx, "device_add", dev, nil); err != nil && !strings.Contains(err.Error(), "Duplicate") {
				node, _, _ := volNames(v)
				c.Execute(ctx, "blockdev-del", map[string]any{"node-name": node}, nil)
				return fmt.Errorf("device_add: %w", err)
			}
		}
		m.Spec.Volumes = slices.DeleteFunc(m.Spec.Volumes, func(x driver.Volume) bool { return x.ID == v.ID })
		m.Spec.Volumes = append(m.Spec.Volumes, v)
		return d.writeMeta(id, m)
	})
}

// DetachVolume implements driver.VolumeAttacher: the guest is asked to let
// the disk go (ACPI hot-unplug) and, once it has, the node is closed.
func (d *Driver) DetachVolume(ctx context.Context, id string, v driver.Volume) error {
	node, dev, _ := volNames(v)
	return d.act(ctx, id, func(m meta, qs string) error {
		if qs == "running" || qs == "paused" {
			c, err := d.dial(ctx, id)
			if err != nil {
				return err
			}
			defer c.Close()
			var blocks []struct {
				NodeName string `json:"node-name"`
			}
			c.Execute(ctx, "query-named-block-nodes", map[string]any{"flat": true}, &blocks)
			plugged := slices.ContainsFunc(blocks, func(b struct {
				NodeName string `json:"node-name"`
			}) bool {
				return b.NodeName == node
			})
			if plugged {
				err := c.Execute(ctx, "device_del", map[string]any{"id": dev}, nil)
				if err == nil {
					wctx, cancel := context.WithTimeout(ctx, 60*time.Second)
					err = waitDeleted(wctx, c, dev)
					cancel()
				} else if strings.Contains(err.Error(), "not found") {
					err = nil
				}
				if err != nil {
					return fmt.Errorf("the guest did not let disk %s go: %w", v.Device, err)
				}
				if err := c.Execute(ctx, "blockdev-del", map[string]any{"node-name": node}, nil); err != nil {
					return fmt.Errorf("blockdev-del: %w", err)
				}
			}
		}
		m.Spec.Volumes = slices.DeleteFunc(m.Spec.Volumes, func(x driver.Volume) bool { return x.ID == v.ID })
		return d.writeMeta(id, m)
	})
}

// waitDeleted waits for the guest to release a device.
func waitDeleted(ctx context.Context, c *qmp.Conn, dev string) error {
	for {
		e, err := c.WaitEvent(ctx, "DEVICE_DELETED")
		if err != nil {
			return err
		}
		var data struct {
			Device string `json:"device"`
		}
		json.Unmarshal(e.Data, &data)
		if data.Device == dev {
			return nil
		}
	}
}

// ResizeVolume implements driver.VolumeResizer: QEMU grows the disk it
// has open and the guest is told.
func (d *Driver) ResizeVolume(ctx context.Context, id string, v driver.Volume, size int64) error {
	node, _, _ := volNames(v)
	return d.do(ctx, id, "block_resize", map[string]any{"node-name": node, "size": size}, nil)
}

var _ driver.VolumeSnapshotter = (*Driver)(nil)

// SnapshotVolume implements driver.VolumeSnapshotter: QEMU copies the
// disk as it is at one instant (blockdev-backup, sync full) into a new
// qcow2 at target while the guest runs on; the guest's filesystem is
// crash-consistent there (no guest agent freezes it).
func (d *Driver) SnapshotVolume(ctx context.Context, id string, v driver.Volume, target string) error {
	node, _, _ := volNames(v)
	job := "snap-" + node
	tnode := "snapt-" + strings.TrimPrefix(node, "vol-")
	return d.onVolume(ctx, id, node, func(c *qmp.Conn, n blockNode) error {
		size := n.Image.VirtualSize
		if out, err := exec.CommandContext(ctx, "qemu-img", "create", "-q", "-f", "qcow2", target, fmt.Sprint(size)).CombinedOutput(); err != nil {
			return fmt.Errorf("qemu-img create: %v: %s", err, out)
		}
		tn := vmimage.Node(target, vmimage.FormatQcow2)
		tn["node-name"] = tnode
		if err := c.Execute(ctx, "blockdev-add", tn, nil); err != nil {
			return fmt.Errorf("blockdev-add of the copy: %w", err)
		}
		defer c.Execute(context.WithoutCancel(ctx), "blockdev-del", map[string]any{"node-name": tnode}, nil)
		if err := c.Execute(ctx, "blockdev-backup", map[string]any{"job-id": job, "device": node, "target": tnode, "sync": "full", "auto-dismiss": true}, nil); err != nil {
			return fmt.Errorf("blockdev-backup: %w", err)
		}
		return waitJob(ctx, c, job)
	})
}
