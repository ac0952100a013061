package agent_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kumocloud/kumo/api"
)

// TestMigrateLiveWithVolumes: a VM booting from a volume of the local
// pool, with a second local volume attached, moves live between two
// agents (sim drivers; the qemu driver's TestLiveMigrationOfVolumes
// copies real bytes). The volumes go with it: in the commit the store
// names the target as their home, the target's agent has their files and
// the source's agent removes its own. A move back that is cancelled
// leaves them where they were: on the target's host, in the store and on
// disk, with no file left on the host the cancelled move aimed at.
func TestMigrateLiveWithVolumes(t *testing.T) {
	ctx := context.Background()
	var root, data api.Volume
	th := newTwoHosts(t, 3*time.Second, func(c *cloud) {
		var err error
		if root, err = c.admin.CreateVolume(ctx, "default", api.VolumesPost{Name: "root", SizeGiB: 1, Host: "src-0000"}); err != nil {
			t.Fatal(err)
		}
		if data, err = c.admin.CreateVolume(ctx, "default", api.VolumesPost{Name: "data", SizeGiB: 1, Host: "src-0000"}); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "the volumes to be made", func() bool {
			a, _ := c.admin.Volume(ctx, "default", "root")
			b, _ := c.admin.Volume(ctx, "default", "data")
			return a.Status == api.VolumeAvailable && b.Status == api.VolumeAvailable
		})
		if _, err := c.admin.CreateInstance(ctx, "default", api.InstancesPost{Name: "vm1", Type: api.TypeVM, Flavor: "tiny", Image: "x", BootVolume: "root"}); err != nil {
			t.Fatal(err)
		}
	})
	th.waitState("vm1", api.StateRunning)
	if _, err := th.admin.AttachVolume(ctx, "default", "data", api.VolumeAttach{Instance: "vm1"}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "data attached on the host", func() bool {
		v, _ := th.admin.Volume(ctx, "default", "data")
		return v.Attachment != nil && v.Attachment.Attached
	})
	file := func(home, id string) string { return filepath.Join(home, "volumes", "local", id+".qcow2") }
	exists := func(p string) bool { _, err := os.Stat(p); return err == nil }
	for _, v := range []api.Volume{root, data} {
		if !exists(file(th.srcHome, v.ID)) {
			t.Fatalf("volume %s has no file on the source", v.Name)
		}
	}

	op, err := th.migrate("vm1", api.InstanceMigrate{})
	if err != nil || op.Status != api.OpSucceeded {
		t.Fatalf("migrate: %v %+v\n%s", err, op, th.historyText("vm1"))
	}
	in := th.instance("vm1")
	if in.Host != "dst-0000" || in.State != api.StateRunning {
		t.Fatalf("vm1 %s on %s", in.State, in.Host)
	}
	for _, name := range []string{"root", "data"} {
		v, err := th.admin.Volume(ctx, "default", name)
		if err != nil || v.Host != "dst-0000" || v.Attachment == nil || v.Attachment.Instance != "vm1" {
			t.Fatalf("volume %s after the move: %+v %v", name, v, err)
		}
	}
	if h := th.historyText("vm1"); !strings.Contains(h, "volumes now on dst-0000: ") {
		t.Errorf("the history does not say the volumes moved:\n%s", h)
	}
	waitFor(t, "the source to remove its volume files and the target to attach them", func() bool {
		for _, v := range []api.Volume{root, data} {
			if exists(file(th.srcHome, v.ID)) || !exists(file(th.dstHome, v.ID)) {
				return false
			}
		}
		v, _ := th.admin.Volume(ctx, "default", "data")
		return v.Attachment != nil && v.Attachment.Attached && th.instance("vm1").Migration == nil
	})
	// An instance snapshot of a VM booting from a volume is taken (the
	// sim driver has no disk to give: the operation then fails with its
	// word, not with a refusal; the qemu driver's test reads the image).
	if _, err := th.admin.SnapshotInstance(ctx, "default", "vm1", api.InstanceSnapshotPost{Name: "vm1-img"}); err != nil {
		t.Errorf("an instance snapshot of a VM booting from a volume: %v", err)
	}
	// The scheduler no longer pins vm1 to src-0000: its volumes are on
	// dst-0000 and move with it when it moves live.
	if _, err := th.admin.DetachVolume(ctx, "default", "root"); err == nil {
		t.Fatal("the root disk was detached")
	}

	// A move back, cancelled: the volumes stay on dst-0000, and the
	// files src-0000 made to receive them go.
	if _, err := th.admin.MigrateInstance(ctx, "default", "vm1", api.InstanceMigrate{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "src-0000 to make the files it receives into", func() bool {
		return exists(file(th.srcHome, root.ID)) && exists(file(th.srcHome, data.ID))
	})
	if _, err := th.admin.AttachVolume(ctx, "default", "data", api.VolumeAttach{Instance: "vm1"}); err == nil || !strings.Contains(err.Error(), "migrating") {
		t.Errorf("an attach during the migration: %v", err)
	}
	if _, err := th.admin.CancelMigration(ctx, "default", "vm1"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the cancelled move to end", func() bool { return th.instance("vm1").Migration == nil })
	if in := th.instance("vm1"); in.Host != "dst-0000" || in.State != api.StateRunning {
		t.Fatalf("vm1 %s on %s after the cancel", in.State, in.Host)
	}
	waitFor(t, "src-0000 to remove the files of the cancelled move", func() bool {
		return !exists(file(th.srcHome, root.ID)) && !exists(file(th.srcHome, data.ID))
	})
	for _, v := range []api.Volume{root, data} {
		got, _ := th.admin.Volume(ctx, "default", v.Name)
		if got.Host != "dst-0000" || !exists(file(th.dstHome, v.ID)) {
			t.Fatalf("volume %s after the cancelled move: on %s, file on dst %v", v.Name, got.Host, exists(file(th.dstHome, v.ID)))
		}
	}
}
