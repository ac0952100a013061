package agent_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kumocloud/kumo/api"
	"github.com/kumocloud/kumo/internal/agent"
	"github.com/kumocloud/kumo/internal/volumes/pool"
)

// coldVolumes is a two-host cloud with, on src-0000, a VM booting from a
// local volume with a second one attached (vm1, STOPPED) and a running
// container with a local ext4 volume mounted at /data (ct1).
type coldVolumes struct {
	*twoHosts
	root, data, cdata api.Volume
}

func newColdVolumes(t *testing.T, set func(*agent.Config)) *coldVolumes {
	ctx := context.Background()
	cv := &coldVolumes{}
	mkVol := func(c *cloud, name, format string) api.Volume {
		v, err := c.admin.CreateVolume(ctx, "default", api.VolumesPost{Name: name, SizeGiB: 1, Format: format, Host: "src-0000"})
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	cv.twoHosts = newTwoHosts(t, 0, func(c *cloud) {
		cv.root, cv.data, cv.cdata = mkVol(c, "root", ""), mkVol(c, "data", ""), mkVol(c, "cdata", "ext4")
		waitFor(t, "the volumes to be made", func() bool {
			for _, n := range []string{"root", "data", "cdata"} {
				if v, _ := c.admin.Volume(ctx, "default", n); v.Status != api.VolumeAvailable {
					return false
				}
			}
			return true
		})
		if _, err := c.admin.CreateInstance(ctx, "default", api.InstancesPost{Name: "vm1", Type: api.TypeVM, Flavor: "tiny", Image: "x", BootVolume: "root"}); err != nil {
			t.Fatal(err)
		}
		if _, err := c.admin.CreateInstance(ctx, "default", api.InstancesPost{Name: "ct1", Type: api.TypeContainer, Flavor: "tiny", Image: "x"}); err != nil {
			t.Fatal(err)
		}
	})
	if set != nil {
		// The source agent again, with set applied (same state dir).
		cv.srcAg.stop()
		cv.srcAg = cv.startAgentAs("src", cv.src, cv.srcHome, func(cfg *agent.Config) { cfg.ResyncEvery = time.Hour; set(cfg) })
	}
	cv.waitState("vm1", api.StateRunning)
	cv.waitState("ct1", api.StateRunning)
	for vol, inst := range map[string]api.VolumeAttach{"data": {Instance: "vm1"}, "cdata": {Instance: "ct1", Path: "/data"}} {
		if _, err := cv.admin.AttachVolume(ctx, "default", vol, inst); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "the volumes attached on src-0000", func() bool {
		for _, n := range []string{"data", "cdata"} {
			if v, _ := cv.admin.Volume(ctx, "default", n); v.Attachment == nil || !v.Attachment.Attached {
				return false
			}
		}
		return true
	})
	cv.action("vm1", api.ActionStop)
	cv.waitState("vm1", api.StateStopped)
	// Runs before the agents stop: the instances go, and with them the
	// container volume's host mount (wherever it is by then).
	t.Cleanup(func() {
		for _, n := range []string{"ct1", "vm1"} {
			cv.admin.InstanceAction(ctx, "default", n, api.ActionTerminate)
		}
		waitFor(t, "the container volume's mounts to go", func() bool {
			v, _ := cv.admin.Volume(ctx, "default", "cdata")
			return v.Attachment == nil && !pool.IsMount(volMount(cv.srcHome, cv.cdata)) && !pool.IsMount(volMount(cv.dstHome, cv.cdata))
		})
	})
	return cv
}

func volFile(home string, v api.Volume) string {
	return filepath.Join(home, "volumes", "local", v.ID+"."+v.Format)
}

func volMount(home string, v api.Volume) string {
	return filepath.Join(home, "volumes", "mounts", v.ID)
}

// needRoot skips unless root (loop mounts of ext4 volumes; CI is root).
func needRoot(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (CI is root)")
	}
}

func exists(p string) bool { _, err := os.Stat(p); return err == nil }

// TestMigrateColdWithVolumes: a STOPPED VM booting from a local volume
// with a data volume, and a running container with a local ext4 volume
// holding a file, migrate cold between two agents (sim drivers: the
// volumes' files are real). The volumes go with them - the store names
// the target their home in the commit, the target holds their bytes (the
// container's volume mounted there again, its file in it) and the source
// removes its copies - and an evacuation of the target brings everything
// back the same way.
func TestMigrateColdWithVolumes(t *testing.T) {
	needRoot(t)
	ctx := context.Background()
	cv := newColdVolumes(t, nil)
	// What the volumes hold.
	for _, v := range []api.Volume{cv.root, cv.data} {
		if err := qemuIO(t, volFile(cv.srcHome, v), "write -P 0x5a 1M 64k"); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(volMount(cv.srcHome, cv.cdata), "hello"), []byte("kept"), 0o644); err != nil {
		t.Fatal(err)
	}
	// A snapshot of data (what it holds now) goes with it.
	snap, err := cv.admin.CreateVolumeSnapshot(ctx, "default", "data", "s1")
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the snapshot made", func() bool {
		s, _ := cv.admin.VolumeSnapshot(ctx, "default", "data", "s1")
		return s.Status == api.VolumeAvailable
	})
	snapFile := func(home string) string {
		return filepath.Join(home, "volumes", "local", cv.data.ID+"@"+snap.ID+".qcow2")
	}
	if err := qemuIO(t, volFile(cv.srcHome, cv.data), "write -P 0x33 2M 64k"); err != nil {
		t.Fatal(err)
	}
	if op, err := cv.migrate("vm1", api.InstanceMigrate{}); err != nil || op.Status != api.OpSucceeded {
		t.Fatalf("migrate vm1: %v %+v\n%s", err, op, cv.historyText("vm1"))
	}
	if op, err := cv.migrate("ct1", api.InstanceMigrate{}); err != nil || op.Status != api.OpSucceeded {
		t.Fatalf("migrate ct1: %v %+v\n%s", err, op, cv.historyText("ct1"))
	}
	if vm := cv.waitState("vm1", api.StateStopped); vm.Home != "dst-0000" {
		t.Fatalf("vm1's home is %q", vm.Home)
	}
	if ct := cv.waitState("ct1", api.StateRunning); ct.Host != "dst-0000" {
		t.Fatalf("ct1 runs on %q", ct.Host)
	}
	cv.checkOn(t, "dst-0000", cv.dstHome, cv.srcHome)
	if exists(snapFile(cv.srcHome)) || qemuIO(t, snapFile(cv.dstHome), "read -P 0x5a 1M 64k") != nil || qemuIO(t, snapFile(cv.dstHome), "read -P 0 2M 64k") != nil ||
		qemuIO(t, volFile(cv.dstHome, cv.data), "read -P 0x33 2M 64k") != nil {
		t.Fatalf("the snapshot did not move with its volume (on src: %v)", exists(snapFile(cv.srcHome)))
	}
	if s, err := cv.admin.VolumeSnapshot(ctx, "default", "data", "s1"); err != nil || s.Status != api.VolumeAvailable {
		t.Fatalf("the snapshot after the move: %+v %v", s, err)
	}
	if h := cv.historyText("vm1"); !strings.Contains(h, "migrated (cold)") || !strings.Contains(h, "volumes now on dst-0000: ") {
		t.Errorf("vm1's history:\n%s", h)
	}

	// The evacuation of dst-0000 takes them back, volumes and all.
	ectx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	op, err := cv.admin.EvacuateHost(ectx, "dst-0000", 2)
	if err == nil {
		op, err = cv.admin.WaitOperation(ectx, op.ID)
	}
	if err != nil || op.Status != api.OpSucceeded {
		t.Fatalf("evacuate: %v %+v\n%s\n%s", err, op, cv.historyText("vm1"), cv.historyText("ct1"))
	}
	if ct := cv.waitState("ct1", api.StateRunning); ct.Host != "src-0000" {
		t.Fatalf("ct1 runs on %q after the evacuation", ct.Host)
	}
	if vm := cv.instance("vm1"); vm.Home != "src-0000" {
		t.Fatalf("vm1's home is %q after the evacuation", vm.Home)
	}
	cv.checkOn(t, "src-0000", cv.srcHome, cv.dstHome)
	if exists(snapFile(cv.dstHome)) || qemuIO(t, snapFile(cv.srcHome), "read -P 0x5a 1M 64k") != nil {
		t.Fatal("the snapshot did not move back with its volume")
	}
	// The VM starts where its volumes are.
	cv.action("vm1", api.ActionStart)
	if vm := cv.waitState("vm1", api.StateRunning); vm.Host != "src-0000" {
		t.Fatalf("vm1 started on %q", vm.Host)
	}
}

// checkOn waits until the three volumes are on host (home dir to), with
// their bytes, and gone from the other agent's dir.
func (cv *coldVolumes) checkOn(t *testing.T, host, to, from string) {
	t.Helper()
	ctx := context.Background()
	for _, v := range []api.Volume{cv.root, cv.data, cv.cdata} {
		if got, _ := cv.admin.Volume(ctx, "default", v.Name); got.Host != host {
			t.Fatalf("volume %s is on %q, not %s", v.Name, got.Host, host)
		}
	}
	waitFor(t, "the volumes' files to be on "+host+" only, cdata mounted there", func() bool {
		for _, v := range []api.Volume{cv.root, cv.data, cv.cdata} {
			if !exists(volFile(to, v)) || exists(volFile(from, v)) || exists(volFile(to, v)+".tmp") {
				return false
			}
		}
		v, _ := cv.admin.Volume(ctx, "default", "cdata")
		return exists(filepath.Join(volMount(to, cv.cdata), "hello")) && !exists(volMount(from, cv.cdata)) &&
			v.Attachment != nil && v.Attachment.Attached && cv.instance("vm1").Migration == nil && cv.instance("ct1").Migration == nil
	})
	if b, err := os.ReadFile(filepath.Join(volMount(to, cv.cdata), "hello")); err != nil || string(b) != "kept" {
		t.Fatalf("the container's file on %s: %q %v", host, b, err)
	}
	for _, v := range []api.Volume{cv.root, cv.data} {
		if err := qemuIO(t, volFile(to, v), "read -P 0x5a 1M 64k"); err != nil {
			t.Fatalf("volume %s on %s does not hold what was written: %v", v.Name, host, err)
		}
	}
}

// TestMigrateColdVolumesTargetDies: the target's agent dies while a
// STOPPED VM's volumes stream to it (the source's migration bandwidth
// capped so that the stream lasts): the migration is rolled back, the VM
// and its volumes stay on the source with their bytes, and the target,
// back, removes the partial files.
func TestMigrateColdVolumesTargetDies(t *testing.T) {
	needRoot(t)
	ctx := context.Background()
	cv := newColdVolumes(t, func(cfg *agent.Config) { cfg.VolumeBandwidth = 1 << 20 })
	// 16 MiB of data: 16 s at 1 MiB/s.
	if err := qemuIO(t, volFile(cv.srcHome, cv.data), "write -P 0x5a 0 16M"); err != nil {
		t.Fatal(err)
	}
	op, err := cv.admin.MigrateInstance(ctx, "default", "vm1", api.InstanceMigrate{})
	if err != nil {
		t.Fatal(err)
	}
	partial := volFile(cv.dstHome, cv.data) + ".tmp"
	waitFor(t, "the data volume to arrive on dst-0000", func() bool {
		st, err := os.Stat(partial)
		return err == nil && st.Size() > 0
	})
	cv.dstAg.stop()
	wctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	if op, _ = cv.admin.WaitOperation(wctx, op.ID); op.Status != api.OpFailed || !strings.Contains(op.Error, "abandoned") {
		t.Fatalf("operation %+v\n%s", op, cv.historyText("vm1"))
	}
	if vm := cv.waitState("vm1", api.StateStopped); vm.Home != "src-0000" {
		t.Fatalf("vm1's home is %q after the rollback", vm.Home)
	}
	// The agent here stops as its context ends (its receive removes what
	// it wrote); a kill -9 leaves the partial file: as that would.
	if err := os.WriteFile(partial, []byte("partial"), 0o600); err != nil {
		t.Fatal(err)
	}
	cv.dstAg = cv.startAgentNamed("dst", cv.dst, cv.dstHome, time.Hour)
	waitFor(t, "the rollback's cleanup, the target's files gone", func() bool {
		ents, _ := os.ReadDir(filepath.Join(cv.dstHome, "volumes", "local"))
		return cv.instance("vm1").Migration == nil && len(ents) == 0
	})
	for _, v := range []api.Volume{cv.root, cv.data} {
		if got, _ := cv.admin.Volume(ctx, "default", v.Name); got.Host != "src-0000" || !exists(volFile(cv.srcHome, v)) {
			t.Fatalf("volume %s after the rollback: on %q, file on src %v", v.Name, got.Host, exists(volFile(cv.srcHome, v)))
		}
	}
	if err := qemuIO(t, volFile(cv.srcHome, cv.data), "read -P 0x5a 0 16M"); err != nil {
		t.Fatalf("the data volume on src-0000: %v", err)
	}
	cv.action("vm1", api.ActionStart)
	cv.waitState("vm1", api.StateRunning)
}
