package agent_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kumocloud/kumo/api"
	"github.com/kumocloud/kumo/internal/agent"
	"github.com/kumocloud/kumo/internal/driver"
	"github.com/kumocloud/kumo/internal/driver/local"
	"github.com/kumocloud/kumo/internal/driver/qemu"
	"github.com/kumocloud/kumo/internal/rootfs"
	"github.com/kumocloud/kumo/internal/vmimage"
)

// qemuAgent runs an agent whose qemu driver fetches images through the
// agent's own connection, as 'kumo agent' does.
func (c *cloud) qemuAgent(name string) *qemu.Driver { return c.qemuAgentWith(name, nil) }

// qemuAgentWith is qemuAgent with the agent's configuration changed by set.
func (c *cloud) qemuAgentWith(name string, set func(*agent.Config)) *qemu.Driver {
	c.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	jt, err := c.admin.CreateJoinToken(ctx, api.JoinTokensPost{})
	if err != nil {
		c.t.Fatal(err)
	}
	conn := agent.NewConn(agent.ConnConfig{Server: c.url, JoinToken: jt.Token, Name: name, StateDir: c.t.TempDir()})
	// A cgroup parent per agent, as two machines would have: the two
	// QEMUs of a migration between them are in cgroups of their own.
	cgroups := local.Cgroups{Parent: "kumo-test-" + name + "-" + filepath.Base(c.t.TempDir())}
	c.t.Cleanup(cgroups.RemoveParent)
	d, err := qemu.New(ctx, driver.Common{StateDir: c.t.TempDir(), Images: conn, HostName: name, CgroupParent: cgroups.Parent}, qemu.Config{Accel: "tcg", StopTimeout: 10 * time.Second})
	if err != nil {
		c.t.Fatal(err)
	}
	cfg := agent.Config{Conn: conn, Driver: d, HeartbeatEvery: 200 * time.Millisecond, ResyncEvery: time.Hour, StateDir: c.t.TempDir()}
	if set != nil {
		set(&cfg)
	}
	a, err := agent.New(ctx, cfg)
	if err != nil {
		c.t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { a.Run(ctx); close(done) }()
	c.t.Cleanup(func() {
		cancel()
		<-done
		// A failed test leaves no VM behind.
		sts, _ := d.Recover(context.Background())
		for _, st := range sts {
			d.Stop(context.Background(), st.ID, true)
			d.Cleanup(context.Background(), st.ID, false)
		}
	})
	return d
}

// TestLiveMigrateQemuBetweenAgents: a real VM (TCG) migrates live from
// one agent's host to another's through the server's tunnel: it runs on
// the target with its memory (its counter goes on), the source keeps
// nothing, and the history has QEMU's figures.
func TestLiveMigrateQemuBetweenAgents(t *testing.T) {
	needQemu(t)
	c := newCloud(t)
	ctx := context.Background()
	c.uploadTinyVM()
	src := c.qemuAgent("qsrc")
	ud := "#!/bin/sh\n(i=0; while :; do i=$((i+1)); echo \"tick $i\" >/dev/ttyS0; sleep 1; done) &\n"
	if _, err := c.admin.CreateInstance(ctx, "default", api.InstancesPost{Name: "vm", Type: api.TypeVM, Flavor: "tiny", Image: "tiny-vm", UserData: ud}); err != nil {
		t.Fatal(err)
	}
	in := c.waitState("vm", api.StateRunning)
	dst := c.qemuAgent("qdst")
	waitFor(t, "qdst online", func() bool { h, err := c.admin.Host(ctx, "qdst"); return err == nil && h.State == api.HostOnline })
	lastTick := func(d *qemu.Driver) int { return lastCount(d, in.ID, "tick") }
	// A TCG guest boots slowly on a loaded machine: a generous wait.
	until(t, 5*time.Minute, "the counter to reach 3", func() bool { return lastTick(src) >= 3 })
	op, err := c.migrate("vm", api.InstanceMigrate{})
	if err != nil || op.Status != api.OpSucceeded {
		t.Fatalf("migrate: %v %+v\n%s", err, op, c.historyText("vm"))
	}
	before := lastTick(src)
	in = c.instance("vm")
	if in.Host != "qdst" || in.State != api.StateRunning {
		t.Fatalf("after: %s on %s\n%s", in.State, in.Host, c.historyText("vm"))
	}
	waitFor(t, "the counter to go on on qdst", func() bool { return lastTick(dst) > before })
	waitFor(t, "qsrc to clean up", func() bool { return !src.Has(in.ID) && c.instance("vm").Migration == nil })
	h := c.historyText("vm")
	t.Log(h)
	if !strings.Contains(h, "stop-and-copy done: downtime") {
		t.Errorf("history lacks the downtime:\n%s", h)
	}
	c.action("vm", api.ActionTerminate)
	c.waitState("vm", api.StateDone)
}

// uploadTinyVM registers the tiny-vm test image as "tiny-vm" of project
// default.
func (c *cloud) uploadTinyVM() {
	c.t.Helper()
	ctx := context.Background()
	path, err := vmimage.TinyVMCached(ctx, vmimage.DefaultCache, rootfs.Busybox)
	if err != nil {
		c.t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		c.t.Fatal(err)
	}
	defer f.Close()
	st, _ := f.Stat()
	if _, err := c.admin.CreateImage(ctx, "default", api.ImagesPost{Name: "tiny-vm", Kind: api.KindVMKernel, Format: "tar.gz"}); err != nil {
		c.t.Fatal(err)
	}
	if _, err := c.admin.UploadImage(ctx, "default", "tiny-vm", f, st.Size()); err != nil {
		c.t.Fatal(err)
	}
}

// needQemu skips unless QEMU and root are there (CI has both).
func needQemu(t testing.TB) {
	if _, err := exec.LookPath("qemu-system-x86_64"); err != nil || os.Geteuid() != 0 {
		t.Skip("needs qemu-system-x86_64 and root (CI has both)")
	}
}
