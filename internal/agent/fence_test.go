package agent_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/kumocloud/kumo/api"
	"github.com/kumocloud/kumo/internal/agent"
	"github.com/kumocloud/kumo/internal/driver"
	"github.com/kumocloud/kumo/internal/driver/sim"
	"github.com/kumocloud/kumo/internal/server"
)

// haCloud is a cloud whose HA fence timeout is short, and a sim host
// (one agent) whose agent self-fences after a second.
func haCloud(t *testing.T) *cloud {
	return newCloudWith(t, func(cfg *server.Config) { cfg.HAFenceTimeout = 7 * time.Second })
}

func haSim(t *testing.T, prefix string) *sim.Driver {
	t.Helper()
	d, err := sim.New(context.Background(), driver.Common{StateDir: t.TempDir()}, sim.Config{Hosts: 1, Prefix: prefix, CPUs: 16, MemoryMiB: 65536, DiskGiB: 1000})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func (c *cloud) startFencing(d driver.Driver, stateDir string) *runningAgent {
	return c.startAgentWith(d, stateDir, func(cfg *agent.Config) { cfg.FenceGrace = time.Second })
}

func running(d driver.Driver, id string) bool {
	st, err := d.Status(context.Background(), id)
	return err == nil && st.State == driver.Running
}

// history says whether an instance's history has a record by actor whose
// reason contains what.
func (c *cloud) history(name, actor, what string) bool {
	hist, err := c.admin.InstanceHistory(context.Background(), "default", name)
	if err != nil {
		c.t.Fatal(err)
	}
	for _, h := range hist {
		if strings.HasPrefix(h.Actor, actor) && strings.Contains(h.Reason, what) {
			return true
		}
	}
	return false
}

// The agent cut off from its server stops its HA instance itself; the
// server recreates it on the other host after the fence timeout; when the
// network is back the old host sweeps its copy and never gets it back. At
// no point do both hosts run it.
func TestHAFenceThenRecreateElsewhere(t *testing.T) {
	c := haCloud(t)
	da, db := haSim(t, "hosta"), haSim(t, "hostb")
	a := c.startFencing(da, t.TempDir())
	if _, err := c.admin.CreateInstance(context.Background(), "default", api.InstancesPost{Name: "web", Type: api.TypeVM, Flavor: "tiny", Image: "x", HA: true}); err != nil {
		t.Fatal(err)
	}
	in := c.waitState("web", api.StateRunning)
	if in.Host != "hosta-0000" || !in.HA {
		t.Fatalf("web on %s (ha %v)", in.Host, in.HA)
	}
	c.startFencing(db, t.TempDir())
	twice := func() {
		if running(da, in.ID) && running(db, in.ID) {
			t.Fatal("web runs on both hosts")
		}
	}
	a.link.cut.Store(true)
	waitFor(t, "the cut-off agent to fence web", func() bool {
		twice()
		st, err := da.Status(context.Background(), in.ID)
		return err == nil && st.State == driver.Stopped
	})
	waitFor(t, "web RUNNING on hostb", func() bool {
		twice()
		in = c.instance("web")
		return in.State == api.StateRunning && in.Host == "hostb-0000"
	})
	if !c.history("web", "ha", "host hosta-0000 lost") {
		t.Fatal("the history does not say why web moved")
	}
	a.link.cut.Store(false)
	waitFor(t, "hosta to sweep its fenced copy", func() bool {
		twice()
		_, err := da.Status(context.Background(), in.ID)
		return errors.Is(err, driver.ErrNotFound)
	})
	waitFor(t, "hosta ONLINE", func() bool {
		h, err := c.admin.Host(context.Background(), "hosta-0000")
		return err == nil && h.State == api.HostOnline
	})
	if in = c.instance("web"); in.State != api.StateRunning || in.Host != "hostb-0000" || !running(db, in.ID) {
		t.Fatalf("web is %s on %s after hosta returned", in.State, in.Host)
	}
}

// An agent back before the fence timeout reports its fenced HA instance
// with the reason, and the server starts it again on the same host.
func TestHAFencedInstanceRestartsWhenBackInTime(t *testing.T) {
	c := newCloudWith(t, func(cfg *server.Config) { cfg.HAFenceTimeout = time.Hour })
	da := haSim(t, "hosta")
	a := c.startFencing(da, t.TempDir())
	if _, err := c.admin.CreateInstance(context.Background(), "default", api.InstancesPost{Name: "web", Type: api.TypeVM, Flavor: "tiny", Image: "x", HA: true}); err != nil {
		t.Fatal(err)
	}
	in := c.waitState("web", api.StateRunning)
	a.link.cut.Store(true)
	waitFor(t, "the cut-off agent to fence web", func() bool {
		st, err := da.Status(context.Background(), in.ID)
		return err == nil && st.State == driver.Stopped
	})
	a.link.cut.Store(false)
	waitFor(t, "web RUNNING again on hosta", func() bool {
		in = c.instance("web")
		return in.State == api.StateRunning && in.Host == "hosta-0000" && running(da, in.ID)
	})
	if !c.history("web", "agent:", api.SelfFenced) || !c.history("web", "ha", "started again") {
		t.Fatal("the history does not say web was fenced and started again")
	}
}

// An agent restarted while cut off fences from the last contact it
// recorded, before it ever reaches the server.
func TestHAFenceSurvivesAgentRestart(t *testing.T) {
	c := newCloudWith(t, func(cfg *server.Config) { cfg.HAFenceTimeout = time.Hour })
	da := haSim(t, "hosta")
	dir := t.TempDir()
	a := c.startFencing(da, dir)
	if _, err := c.admin.CreateInstance(context.Background(), "default", api.InstancesPost{Name: "web", Type: api.TypeVM, Flavor: "tiny", Image: "x", HA: true}); err != nil {
		t.Fatal(err)
	}
	in := c.waitState("web", api.StateRunning)
	a.stop()
	// The server is out of reach of the new agent: its first call fails,
	// and it keeps retrying inside New.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	conn := agent.NewConn(agent.ConnConfig{Server: "https://127.0.0.1:1", StateDir: dir})
	go agent.New(ctx, agent.Config{Conn: conn, Driver: da, FenceGrace: time.Second})
	waitFor(t, "the restarted, cut-off agent to fence web", func() bool {
		st, err := da.Status(context.Background(), in.ID)
		return err == nil && st.State == driver.Stopped
	})
}
