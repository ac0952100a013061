package agent_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/kumocloud/kumo/api"
	"github.com/kumocloud/kumo/internal/agent"
	"github.com/kumocloud/kumo/internal/driver/qemu"
)

// TestLiveMigrateQemuBootVolumeBetweenAgents: a real VM (TCG) booting
// from a root volume of the local pool, with a second volume hot-plugged,
// migrates live between two agents through the server's tunnel. The
// volumes' home becomes the target, the target's agent holds their files
// (the data volume attached again there), the source's agent removes its
// own; the guest's counter goes on, and the root volume, kept after the
// VM is terminated, holds on the target what the guest wrote before the
// move and after it.
func TestLiveMigrateQemuBootVolumeBetweenAgents(t *testing.T) {
	needQemu(t)
	c := newCloud(t)
	ctx := context.Background()
	c.uploadTinyVM()
	srcHome, dstHome := t.TempDir(), t.TempDir()
	home := func(dir string) func(*agent.Config) { return func(cfg *agent.Config) { cfg.StateDir = dir } }
	src := c.qemuAgentWith("qsrc", home(srcHome))
	// The guest writes a mark once, then its tick every second, into
	// its root disk (the first virtio disk), fsync'd.
	ud := "#!/bin/sh\nprintf 'kumo-written-once' | dd of=/dev/vda bs=512 seek=4096 conv=fsync 2>/dev/null\n" +
		"(i=0; while :; do i=$((i+1)); printf 'kumo-tick-%08d' $i | dd of=/dev/vda bs=512 seek=2048 conv=fsync 2>/dev/null; echo \"tick $i\" >/dev/ttyS0; sleep 1; done) &\n"
	if _, err := c.admin.CreateInstance(ctx, "default", api.InstancesPost{Name: "vm", Type: api.TypeVM, Flavor: "tiny", Image: "tiny-vm",
		UserData: ud, RootVolumeSizeGiB: 1, KeepRootVolume: true}); err != nil {
		t.Fatal(err)
	}
	in := c.waitState("vm", api.StateRunning)
	if _, err := c.admin.CreateVolume(ctx, "default", api.VolumesPost{Name: "data", SizeGiB: 1, Near: "vm"}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "data made", func() bool { v, _ := c.admin.Volume(ctx, "default", "data"); return v.Status == api.VolumeAvailable })
	if _, err := c.admin.AttachVolume(ctx, "default", "data", api.VolumeAttach{Instance: "vm"}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "data attached", func() bool {
		v, _ := c.admin.Volume(ctx, "default", "data")
		return v.Attachment != nil && v.Attachment.Attached
	})
	root, _ := c.admin.Volume(ctx, "default", "vm-root")
	data, _ := c.admin.Volume(ctx, "default", "data")
	file := func(dir, id string) string { return filepath.Join(dir, "volumes", "local", id+".qcow2") }
	exists := func(p string) bool { _, err := os.Stat(p); return err == nil }

	dst := c.qemuAgentWith("qdst", home(dstHome))
	waitFor(t, "qdst online", func() bool { h, err := c.admin.Host(ctx, "qdst"); return err == nil && h.State == api.HostOnline })
	lastTick := func(d *qemu.Driver) int { return lastCount(d, in.ID, "tick") }
	until(t, 5*time.Minute, "the counter to reach 3", func() bool { return lastTick(src) >= 3 })
	op, err := c.migrate("vm", api.InstanceMigrate{})
	if err != nil || op.Status != api.OpSucceeded {
		t.Fatalf("migrate: %v %+v\n%s", err, op, c.historyText("vm"))
	}
	before := lastTick(src)
	if in = c.instance("vm"); in.Host != "qdst" || in.State != api.StateRunning {
		t.Fatalf("after: %s on %s\n%s", in.State, in.Host, c.historyText("vm"))
	}
	for _, name := range []string{"vm-root", "data"} {
		if v, _ := c.admin.Volume(ctx, "default", name); v.Host != "qdst" {
			t.Errorf("volume %s is on %q after the move", name, v.Host)
		}
	}
	until(t, 3*time.Minute, "the counter to go on on qdst", func() bool { return lastTick(dst) > before+1 })
	waitFor(t, "qsrc to remove its files, qdst to hold them and data attached there", func() bool {
		v, _ := c.admin.Volume(ctx, "default", "data")
		return !exists(file(srcHome, root.ID)) && !exists(file(srcHome, data.ID)) && exists(file(dstHome, root.ID)) && exists(file(dstHome, data.ID)) &&
			v.Attachment != nil && v.Attachment.Attached && v.Error == "" && c.instance("vm").Migration == nil
	})
	c.action("vm", api.ActionTerminate)
	c.waitState("vm", api.StateDone)
	waitFor(t, "vm-root detached", func() bool { v, _ := c.admin.Volume(ctx, "default", "vm-root"); return v.Status == api.VolumeAvailable })
	raw := filepath.Join(t.TempDir(), "raw")
	if out, err := exec.Command("qemu-img", "convert", "-U", "-f", "qcow2", "-O", "raw", file(dstHome, root.ID), raw).CombinedOutput(); err != nil {
		t.Fatalf("qemu-img convert: %v: %s", err, out)
	}
	b, err := os.ReadFile(raw)
	if err != nil {
		t.Fatal(err)
	}
	var tick int
	fmt.Sscanf(string(b[1<<20:1<<20+18]), "kumo-tick-%08d", &tick)
	if mark := string(b[2<<20 : 2<<20+17]); mark != "kumo-written-once" || tick <= before {
		t.Fatalf("the root volume on qdst holds %q and tick %d (the guest printed %d before the move)", mark, tick, before)
	}
	t.Log(c.historyText("vm"))
}

// TestColdMigrateQemuStoppedBootVolumeBetweenAgents: a real VM (TCG)
// booting from a root volume of the local pool, with a second volume
// hot-plugged, is STOPPED (its memory saved) and migrated cold between
// two agents through the server's tunnel: the volumes' files travel with
// it (the target holds them, the source removes its own), it starts on
// the target with its memory (its counter goes on from where it was, no
// new boot), and what the guest wrote to both volumes before the move is
// in the target's files.
func TestColdMigrateQemuStoppedBootVolumeBetweenAgents(t *testing.T) {
	needQemu(t)
	c := newCloud(t)
	ctx := context.Background()
	c.uploadTinyVM()
	srcHome, dstHome := t.TempDir(), t.TempDir()
	home := func(dir string) func(*agent.Config) { return func(cfg *agent.Config) { cfg.StateDir = dir } }
	src := c.qemuAgentWith("qsrc", home(srcHome))
	// At each boot: a mark on its root disk, one on any other disk but
	// its seed and swap (the data volume, there from its second boot),
	// then a tick every second.
	ud := "#!/bin/sh\nprintf 'kumo-root-mark' | dd of=/dev/vda bs=512 seek=4096 conv=fsync 2>/dev/null\n" +
		"seed=$(findfs LABEL=cidata); sw=$(findfs LABEL=kumo-swap); for d in /dev/vd[b-z]; do [ \"$d\" = \"$seed\" ] || [ \"$d\" = \"$sw\" ] || " +
		"{ printf 'kumo-data-mark' | dd of=$d bs=512 seek=8192 conv=fsync 2>/dev/null && echo 'datamark 1' >/dev/ttyS0; }; done\n" +
		"(i=0; while :; do i=$((i+1)); echo \"tick $i\" >/dev/ttyS0; sleep 1; done) &\n"
	if _, err := c.admin.CreateInstance(ctx, "default", api.InstancesPost{Name: "vm", Type: api.TypeVM, Flavor: "tiny", Image: "tiny-vm",
		UserData: ud, RootVolumeSizeGiB: 1, KeepRootVolume: true}); err != nil {
		t.Fatal(err)
	}
	in := c.waitState("vm", api.StateRunning)
	if _, err := c.admin.CreateVolume(ctx, "default", api.VolumesPost{Name: "data", SizeGiB: 1, Near: "vm"}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "data made", func() bool { v, _ := c.admin.Volume(ctx, "default", "data"); return v.Status == api.VolumeAvailable })
	// Plugged in while it is off: it is there at the next boot.
	c.action("vm", api.ActionPoweroff)
	c.waitState("vm", api.StatePoweroff)
	if _, err := c.admin.AttachVolume(ctx, "default", "data", api.VolumeAttach{Instance: "vm"}); err != nil {
		t.Fatal(err)
	}
	c.action("vm", api.ActionStart)
	c.waitState("vm", api.StateRunning)
	until(t, 5*time.Minute, "the guest to write the data volume and count to 3", func() bool {
		return lastCount(src, in.ID, "datamark") == 1 && lastCount(src, in.ID, "tick") >= 3
	})
	c.action("vm", api.ActionStop)
	c.waitState("vm", api.StateStopped)
	before := lastCount(src, in.ID, "tick")
	root, _ := c.admin.Volume(ctx, "default", "vm-root")
	data, _ := c.admin.Volume(ctx, "default", "data")
	file := func(dir, id string) string { return filepath.Join(dir, "volumes", "local", id+".qcow2") }
	exists := func(p string) bool { _, err := os.Stat(p); return err == nil }

	dst := c.qemuAgentWith("qdst", home(dstHome))
	waitFor(t, "qdst online", func() bool { h, err := c.admin.Host(ctx, "qdst"); return err == nil && h.State == api.HostOnline })
	op, err := c.migrate("vm", api.InstanceMigrate{})
	if err != nil || op.Status != api.OpSucceeded {
		t.Fatalf("migrate: %v %+v\n%s", err, op, c.historyText("vm"))
	}
	if in = c.instance("vm"); in.Home != "qdst" || in.State != api.StateStopped {
		t.Fatalf("after: %s, home %s\n%s", in.State, in.Home, c.historyText("vm"))
	}
	for _, name := range []string{"vm-root", "data"} {
		if v, _ := c.admin.Volume(ctx, "default", name); v.Host != "qdst" {
			t.Errorf("volume %s is on %q after the move", name, v.Host)
		}
	}
	waitFor(t, "qsrc to remove its files and qdst to hold them", func() bool {
		return !exists(file(srcHome, root.ID)) && !exists(file(srcHome, data.ID)) && exists(file(dstHome, root.ID)) && exists(file(dstHome, data.ID)) &&
			c.instance("vm").Migration == nil
	})
	c.action("vm", api.ActionStart)
	if in = c.waitState("vm", api.StateRunning); in.Host != "qdst" {
		t.Fatalf("started on %s", in.Host)
	}
	until(t, 3*time.Minute, "the counter to go on on qdst", func() bool { return lastCount(dst, in.ID, "tick") > before+1 })
	c.action("vm", api.ActionTerminate)
	c.waitState("vm", api.StateDone)
	waitFor(t, "the volumes detached", func() bool {
		a, _ := c.admin.Volume(ctx, "default", "vm-root")
		b, _ := c.admin.Volume(ctx, "default", "data")
		return a.Status == api.VolumeAvailable && b.Status == api.VolumeAvailable
	})
	for _, m := range []struct {
		id   string
		off  int
		mark string
	}{{root.ID, 2 << 20, "kumo-root-mark"}, {data.ID, 4 << 20, "kumo-data-mark"}} {
		raw := filepath.Join(t.TempDir(), "raw")
		if out, err := exec.Command("qemu-img", "convert", "-U", "-f", "qcow2", "-O", "raw", file(dstHome, m.id), raw).CombinedOutput(); err != nil {
			t.Fatalf("qemu-img convert: %v: %s", err, out)
		}
		b, err := os.ReadFile(raw)
		if err != nil {
			t.Fatal(err)
		}
		if got := string(b[m.off : m.off+len(m.mark)]); got != m.mark {
			t.Errorf("the volume on qdst holds %q where the guest wrote %q", got, m.mark)
		}
	}
	t.Log(c.historyText("vm"))
}
