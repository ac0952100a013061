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
