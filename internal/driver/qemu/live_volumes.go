package qemu

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/kumocloud/kumo/internal/driver"
	"github.com/kumocloud/kumo/internal/qmp"
)

// The disks a live migration copies: the VM's own disk (its overlay, or
// the volume it boots from if that is in a local pool) and each attached
// volume of a local pool. The target opens them as empty files of the
// same size and serves them over NBD; the source mirrors each into its
// export, through a tunnel channel of its own. A volume of a pool every
// host mounts (shared-dir) is opened as it is on both sides and not
// copied: the target's QEMU takes it over when it activates.

// liveDisk is one disk a live migration copies.
type liveDisk struct {
	node    string // the node both QEMUs have (and the NBD export's name)
	job     string // the source's mirror job
	target  string // the source's NBD client node
	channel string // the tunnel channel
	sock    string // the source's unix socket (its name in the socket dir)
	sync    string // blockdev-mirror's sync
}

// liveDisks are the disks of s a live migration copies; copies says
// whether a volume is.
func liveDisks(s driver.Spec, copies func(driver.Volume) bool) []liveDisk {
	var out []liveDisk
	if b, ok := bootVolume(s); s.BootVolume == "" || ok && copies(b) {
		out = append(out, liveDisk{node: "disk", job: "kumo-mirror", target: "kumo-mig-target", channel: driver.ChannelDisk, sock: "nbd-out.sock", sync: "top"})
	}
	for _, v := range s.Volumes {
		if v.ID == s.BootVolume || !copies(v) {
			continue
		}
		if _, err := volSlot(v.Device); err != nil {
			continue // not a disk of the VM (volumeArgs skips it too)
		}
		node, _, _ := volNames(v)
		short := strings.TrimPrefix(node, "vol-")
		out = append(out, liveDisk{node: node, job: "kumo-mirror-" + short, target: "kumo-mig-" + short, channel: driver.VolumeChannel(v.ID),
			sock: fmt.Sprintf("nbd-out%d.sock", len(out)), sync: "full"})
	}
	return out
}

// serveDisks is the target's part: every disk it receives is served
// over NBD (writable); it returns their tunnel channels.
func serveDisks(ctx context.Context, c *qmp.Conn, s driver.Spec) ([]string, error) {
	var chans []string
	for _, ld := range liveDisks(s, func(v driver.Volume) bool { return v.Local }) {
		if err := c.Execute(ctx, "nbd-server-add", map[string]any{"device": ld.node, "writable": true}, nil); err != nil {
			return nil, fmt.Errorf("nbd-server-add %s: %w", ld.node, err)
		}
		chans = append(chans, ld.channel)
	}
	return chans, nil
}

// mirrorDisks is the source's disk part: each disk the migration copies
// is mirrored into the target's export (write-blocking: once in step,
// every guest write reaches both) until all are in step. It returns the
// disks and the bytes mirrored so far; on an error the caller ends what
// was begun (endOutgoing).
func (d *Driver) mirrorDisks(ctx, bctx context.Context, c *qmp.Conn, id string, t driver.Tunnel, opt driver.LiveOptions) ([]liveDisk, int64, error) {
	m, err := d.readMeta(id)
	if err != nil {
		return nil, 0, err
	}
	disks := liveDisks(m.Spec, func(v driver.Volume) bool { return slices.Contains(opt.CopyVolumes, v.ID) })
	ended := make(chan error, len(disks))
	for _, ld := range disks {
		path := d.sock(id, ld.sock)
		ln, done, err := bridgeFrom(bctx, t, ld.channel, path)
		if err != nil {
			return disks, 0, err
		}
		defer ln.Close()
		go func() { ended <- <-done }()
		if err := c.Execute(ctx, "blockdev-add", map[string]any{"driver": "nbd", "node-name": ld.target,
			"server": map[string]any{"type": "unix", "path": path}, "export": ld.node}, nil); err != nil {
			return disks, 0, fmt.Errorf("connecting to the target's disk %s: %w", ld.node, err)
		}
		mirror := map[string]any{"job-id": ld.job, "device": ld.node, "target": ld.target,
			"sync": ld.sync, "copy-mode": "write-blocking", "auto-finalize": true}
		if bw := d.o.MigrateBandwidthMiB; bw > 0 {
			mirror["speed"] = bw << 20
		}
		if err := c.Execute(ctx, "blockdev-mirror", mirror, nil); err != nil {
			return disks, 0, fmt.Errorf("blockdev-mirror of %s: %w", ld.node, err)
		}
	}
	// In step when QEMU says every job is ready (JOB_STATUS_CHANGE), or
	// a check at least every 100 ms finds them so.
	var bytes int64
	err = await(ctx, c, "JOB_STATUS_CHANGE", 100*time.Millisecond, func() (bool, error) {
		var jobs []struct {
			Device string `json:"device"`
			Ready  bool   `json:"ready"`
			Offset int64  `json:"offset"`
		}
		if err := c.Execute(ctx, "query-block-jobs", nil, &jobs); err != nil {
			return false, err
		}
		bytes = 0
		ready := 0
		for _, ld := range disks {
			i := slices.IndexFunc(jobs, func(j struct {
				Device string `json:"device"`
				Ready  bool   `json:"ready"`
				Offset int64  `json:"offset"`
			}) bool {
				return j.Device == ld.job
			})
			if i < 0 {
				return false, fmt.Errorf("the mirror of disk %s ended before it was in step", ld.node)
			}
			bytes += jobs[i].Offset
			if jobs[i].Ready {
				ready++
			}
		}
		select {
		case err := <-ended:
			return false, fmt.Errorf("the disk's tunnel ended: %v", err)
		default:
		}
		return ready == len(disks), nil
	})
	return disks, bytes, err
}

// endMirrors ends the mirrors of a migration that completed (the source
// paused for good): each ends in step, then its NBD client goes.
func endMirrors(ctx context.Context, c *qmp.Conn, disks []liveDisk) error {
	for _, ld := range disks {
		if err := c.Execute(ctx, "block-job-cancel", map[string]any{"device": ld.job}, nil); err != nil {
			return err
		}
	}
	// Ended when QEMU says so (JOB_STATUS_CHANGE), or a check at least
	// every 50 ms finds no job left; 30 s at most.
	deadline := time.Now().Add(30 * time.Second)
	if err := await(ctx, c, "JOB_STATUS_CHANGE", 50*time.Millisecond, func() (bool, error) {
		left := mirrorsLeft(ctx, c)
		switch {
		case left < 0:
			return false, errors.New("query-block-jobs failed")
		case left > 0 && time.Now().After(deadline):
			return false, errors.New("the disk mirror did not end")
		}
		return left == 0, nil
	}); err != nil {
		return err
	}
	for _, ld := range disks {
		c.Execute(ctx, "blockdev-del", map[string]any{"node-name": ld.target}, nil)
	}
	return nil
}

// mirrorsLeft counts the migration mirror jobs in QEMU (-1: it did not
// answer).
func mirrorsLeft(ctx context.Context, c *qmp.Conn) int {
	var jobs []struct {
		Device string `json:"device"`
	}
	if err := c.Execute(ctx, "query-block-jobs", nil, &jobs); err != nil {
		return -1
	}
	left := 0
	for _, j := range jobs {
		if strings.HasPrefix(j.Device, "kumo-mirror") {
			left++
		}
	}
	return left
}

// endMirrorsForced ends whatever mirror an outgoing migration left, and
// their NBD client nodes, whether this driver began them or an agent
// killed since did (the disks it copied are not known then: every job
// and node of kumo's names goes).
func endMirrorsForced(ctx context.Context, c *qmp.Conn) {
	var jobs []struct {
		Device string `json:"device"`
	}
	c.Execute(ctx, "query-block-jobs", nil, &jobs)
	for _, j := range jobs {
		if strings.HasPrefix(j.Device, "kumo-mirror") {
			c.Execute(ctx, "block-job-cancel", map[string]any{"device": j.Device, "force": true}, nil)
		}
	}
	for i := 0; i < 50 && mirrorsLeft(ctx, c) > 0; i++ {
		time.Sleep(100 * time.Millisecond)
	}
	var nodes []struct {
		NodeName string `json:"node-name"`
	}
	c.Execute(ctx, "query-named-block-nodes", map[string]any{"flat": true}, &nodes)
	for _, n := range nodes {
		if strings.HasPrefix(n.NodeName, "kumo-mig-") {
			c.Execute(ctx, "blockdev-del", map[string]any{"node-name": n.NodeName}, nil)
		}
	}
}
