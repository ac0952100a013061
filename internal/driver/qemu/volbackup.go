package qemu

import (
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"strings"

	"github.com/kumocloud/kumo/internal/driver"
	"github.com/kumocloud/kumo/internal/qmp"
	"github.com/kumocloud/kumo/internal/vmimage"
)

// Backups of a running VM's volume read only what the guest wrote since
// the last one. Every backup copy is made at one instant by QEMU
// (blockdev-backup into a new qcow2) in one QMP transaction with a new
// persistent dirty bitmap, "kumo-since-<backup>", on the volume's node:
// from that instant it records which chunks (its granularity is the
// backup chunk, 4 MiB) the guest writes. QEMU keeps it in the volume's
// qcow2 when it closes the file (a VM stop, a detach) and loads it again;
// a QEMU that died with the file open leaves it marked in use, and QEMU
// then loads it as inconsistent. The next backup, given the name of the
// last one the server has, copies only the chunks that bitmap marks
// (sync incremental, through a frozen copy of it, so the bitmap itself
// goes on until the server has the new backup) and merges the marks into
// a persistent bitmap of the target file, which kumo reads from the file
// (vmimage.ReadQcow2Bitmap): that is the list of changed chunks. A
// bitmap missing (a volume restored, moved or reverted: its file was made
// anew), inconsistent, of another granularity, or on a volume that grew
// since, gives a full copy instead.

var _ driver.VolumeBackupCopier = (*Driver)(nil)

const (
	bitmapPrefix = "kumo-since-"
	bitmapFrozen = "kumo-frozen"
	bitmapCopied = "kumo-copied"
)

type dirtyBitmap struct {
	Name         string `json:"name"`
	Granularity  int64  `json:"granularity"`
	Recording    bool   `json:"recording"`
	Busy         bool   `json:"busy"`
	Persistent   bool   `json:"persistent"`
	Inconsistent bool   `json:"inconsistent"`
}

type blockNode struct {
	NodeName string `json:"node-name"`
	Image    struct {
		VirtualSize int64 `json:"virtual-size"`
	} `json:"image"`
	DirtyBitmaps []dirtyBitmap `json:"dirty-bitmaps"`
}

// volNodeInfo is what QEMU says of a volume's node.
func volNodeInfo(ctx context.Context, c *qmp.Conn, node string) (blockNode, error) {
	var info []blockNode
	if err := c.Execute(ctx, "query-named-block-nodes", map[string]any{"flat": true}, &info); err != nil {
		return blockNode{}, err
	}
	for _, n := range info {
		if n.NodeName == node {
			return n, nil
		}
	}
	return blockNode{}, fmt.Errorf("the VM has no disk %s open", node)
}

// onVolume runs fn with a QMP connection to the running (or paused) VM
// and what QEMU says of the volume's node.
func (d *Driver) onVolume(ctx context.Context, id, node string, fn func(c *qmp.Conn, n blockNode) error) error {
	return d.act(ctx, id, func(m meta, qs string) error {
		if qs != "running" && qs != "paused" {
			return fmt.Errorf("%w: the VM does not run", driver.ErrState)
		}
		c, err := d.dial(ctx, id)
		if err != nil {
			return err
		}
		defer c.Close()
		n, err := volNodeInfo(ctx, c, node)
		if err != nil {
			return err
		}
		return fn(c, n)
	})
}

// CopyVolumeForBackup implements driver.VolumeBackupCopier.
func (d *Driver) CopyVolumeForBackup(ctx context.Context, id string, v driver.Volume, since string, size int64, next, target string, chunk int64) (driver.VolumeCopy, error) {
	var out driver.VolumeCopy
	node, _, _ := volNames(v)
	short := strings.TrimPrefix(node, "vol-")
	job, tnode := "bk-"+short, "bkt-"+short
	err := d.onVolume(ctx, id, node, func(c *qmp.Conn, n blockNode) error {
		out.Size = n.Image.VirtualSize
		incremental := false
		for _, b := range n.DirtyBitmaps {
			switch {
			case b.Name == bitmapPrefix+next || b.Name == bitmapFrozen:
				// Left by an earlier try of this copy.
				if err := c.Execute(ctx, "block-dirty-bitmap-remove", map[string]any{"node": node, "name": b.Name}, nil); err != nil {
					return fmt.Errorf("block-dirty-bitmap-remove: %w", err)
				}
			case since != "" && b.Name == bitmapPrefix+since:
				incremental = !b.Inconsistent && b.Recording && !b.Busy && b.Granularity == chunk && size == out.Size
			}
		}
		if out, err := exec.CommandContext(ctx, "qemu-img", "create", "-q", "-f", "qcow2", target, fmt.Sprint(out.Size)).CombinedOutput(); err != nil {
			return fmt.Errorf("qemu-img create: %v: %s", err, out)
		}
		tn := vmimage.Node(target, vmimage.FormatQcow2)
		tn["node-name"] = tnode
		if err := c.Execute(ctx, "blockdev-add", tn, nil); err != nil {
			return fmt.Errorf("blockdev-add of the copy: %w", err)
		}
		added := true
		defer func() {
			if added {
				c.Execute(context.WithoutCancel(ctx), "blockdev-del", map[string]any{"node-name": tnode}, nil)
			}
		}()
		actions := []map[string]any{{"type": "block-dirty-bitmap-add", "data": map[string]any{
			"node": node, "name": bitmapPrefix + next, "granularity": chunk, "persistent": true}}}
		if incremental {
			if err := c.Execute(ctx, "block-dirty-bitmap-add", map[string]any{"node": tnode, "name": bitmapCopied,
				"granularity": chunk, "persistent": true, "disabled": true}, nil); err != nil {
				return fmt.Errorf("block-dirty-bitmap-add: %w", err)
			}
			src := []any{map[string]any{"node": node, "name": bitmapPrefix + since}}
			actions = append(actions,
				map[string]any{"type": "block-dirty-bitmap-add", "data": map[string]any{"node": node, "name": bitmapFrozen, "granularity": chunk, "disabled": true}},
				map[string]any{"type": "block-dirty-bitmap-merge", "data": map[string]any{"node": node, "target": bitmapFrozen, "bitmaps": src}},
				map[string]any{"type": "block-dirty-bitmap-merge", "data": map[string]any{"node": tnode, "target": bitmapCopied, "bitmaps": src}},
				map[string]any{"type": "blockdev-backup", "data": map[string]any{"job-id": job, "device": node, "target": tnode,
					"sync": "incremental", "bitmap": bitmapFrozen, "bitmap-mode": "on-success", "auto-dismiss": true}})
		} else {
			actions = append(actions, map[string]any{"type": "blockdev-backup", "data": map[string]any{
				"job-id": job, "device": node, "target": tnode, "sync": "full", "auto-dismiss": true}})
		}
		if err := c.Execute(ctx, "transaction", map[string]any{"actions": actions}, nil); err != nil {
			return fmt.Errorf("starting the copy: %w", err)
		}
		if err := waitJob(ctx, c, job); err != nil {
			c.Execute(context.WithoutCancel(ctx), "block-dirty-bitmap-remove", map[string]any{"node": node, "name": bitmapPrefix + next}, nil)
			return err
		}
		if incremental {
			if err := c.Execute(ctx, "block-dirty-bitmap-remove", map[string]any{"node": node, "name": bitmapFrozen}, nil); err != nil {
				return fmt.Errorf("block-dirty-bitmap-remove: %w", err)
			}
		}
		// Closing the target writes its bitmap into the file.
		added = false
		if err := c.Execute(ctx, "blockdev-del", map[string]any{"node-name": tnode}, nil); err != nil {
			return fmt.Errorf("blockdev-del of the copy: %w", err)
		}
		if !incremental {
			return nil
		}
		g, set, err := vmimage.ReadQcow2Bitmap(target, bitmapCopied)
		if err != nil {
			return err
		}
		if g != chunk {
			return fmt.Errorf("the copy's bitmap has a granularity of %d bytes, not %d", g, chunk)
		}
		out.Incremental, out.Changed = true, set
		return nil
	})
	return out, err
}

// waitJob waits for a block job's end.
func waitJob(ctx context.Context, c *qmp.Conn, job string) error {
	for {
		e, err := c.WaitEvent(ctx, "BLOCK_JOB_COMPLETED")
		if err != nil {
			return err
		}
		var data struct {
			Device string `json:"device"`
			Error  string `json:"error"`
		}
		json.Unmarshal(e.Data, &data)
		if data.Device != job {
			continue
		}
		if data.Error != "" {
			return fmt.Errorf("the copy failed: %s", data.Error)
		}
		return nil
	}
}

// KeepVolumeTracking implements driver.VolumeBackupCopier: kumo's
// bitmaps on the volume's node but keep's are removed.
func (d *Driver) KeepVolumeTracking(ctx context.Context, id string, v driver.Volume, keep string) error {
	node, _, _ := volNames(v)
	return d.onVolume(ctx, id, node, func(c *qmp.Conn, n blockNode) error {
		for _, b := range n.DirtyBitmaps {
			if strings.HasPrefix(b.Name, bitmapPrefix) && (keep == "" || b.Name != bitmapPrefix+keep) {
				if err := c.Execute(ctx, "block-dirty-bitmap-remove", map[string]any{"node": node, "name": b.Name}, nil); err != nil {
					return fmt.Errorf("block-dirty-bitmap-remove %s: %w", b.Name, err)
				}
			}
		}
		return nil
	})
}
