package agent_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kumocloud/kumo/api"
	"github.com/kumocloud/kumo/client"
	"github.com/kumocloud/kumo/internal/driver"
	"github.com/kumocloud/kumo/internal/driver/sim"
)

// twoHosts is a cloud with two agents, each with one simulated host:
// src-0000 (the first, where instances land) and dst-0000.
type twoHosts struct {
	*cloud
	src, dst         *sim.Driver
	srcAg, dstAg     *runningAgent
	srcDir, dstDir   string
	srcHome, dstHome string // the agents' state dirs
}

func simNamed(t *testing.T, prefix, dir string, boot time.Duration) *sim.Driver {
	t.Helper()
	d, err := sim.New(context.Background(), driver.Common{StateDir: dir}, sim.Config{Hosts: 1, Prefix: prefix, BootDelay: boot})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// newTwoHosts starts the source agent, makes the instances with mk (they
// can only land on src), then starts the target's agent.
func newTwoHosts(t *testing.T, boot time.Duration, mk func(c *cloud)) *twoHosts {
	c := newCloud(t)
	th := &twoHosts{cloud: c, srcDir: t.TempDir(), dstDir: t.TempDir(), srcHome: t.TempDir(), dstHome: t.TempDir()}
	th.src = simNamed(t, "src", th.srcDir, boot)
	th.srcAg = c.startAgentNamed("src", th.src, th.srcHome, time.Hour)
	mk(c)
	// Everything made lands on src before dst joins.
	waitFor(t, "the instances to be placed on src-0000", func() bool {
		ins, err := c.admin.Instances(context.Background(), "default", false, client.ListOptions{})
		if err != nil {
			return false
		}
		for _, in := range ins {
			if in.Host != "src-0000" && in.Home != "src-0000" {
				return false
			}
		}
		return true
	})
	th.dst = simNamed(t, "dst", th.dstDir, boot)
	th.dstAg = c.startAgentNamed("dst", th.dst, th.dstHome, time.Hour)
	waitFor(t, "dst-0000 to be online", func() bool {
		h, err := c.admin.Host(context.Background(), "dst-0000")
		return err == nil && h.State == api.HostOnline
	})
	return th
}

func (c *cloud) migrate(name string, req api.InstanceMigrate) (api.Operation, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	op, err := c.admin.MigrateInstance(ctx, "default", name, req)
	if err != nil {
		return op, err
	}
	return c.admin.WaitOperation(ctx, op.ID)
}

// historyText is an instance's history, a line a record.
func (c *cloud) historyText(name string) string {
	c.t.Helper()
	h, err := c.admin.InstanceHistory(context.Background(), "default", name)
	if err != nil {
		c.t.Fatal(err)
	}
	var b strings.Builder
	for _, r := range h {
		b.WriteString(string(r.From) + "->" + string(r.To) + " " + r.Host + " " + r.Reason + "\n")
	}
	return b.String()
}

func driverHas(d *sim.Driver, id string) (driver.Status, bool) {
	st, err := d.Status(context.Background(), id)
	return st, err == nil
}

// allocated is what the server counts on a host.
func (c *cloud) allocated(host string) api.Size {
	c.t.Helper()
	h, err := c.admin.Host(context.Background(), host)
	if err != nil {
		c.t.Fatal(err)
	}
	return h.Allocated
}

// TestMigrateLiveBetweenAgents: a running VM moves live through the
// tunnel between two agents; the history shows each stage, the source
// forgets it, the allocations follow.
func TestMigrateLiveBetweenAgents(t *testing.T) {
	th := newTwoHosts(t, 600*time.Millisecond, func(c *cloud) { c.create("vm1") })
	in := th.waitState("vm1", api.StateRunning)
	if in.Host != "src-0000" {
		t.Fatalf("vm1 is on %q", in.Host)
	}
	op, err := th.migrate("vm1", api.InstanceMigrate{})
	if err != nil || op.Status != api.OpSucceeded {
		t.Fatalf("migrate: %v %+v\n%s", err, op, th.historyText("vm1"))
	}
	in = th.instance("vm1")
	if in.State != api.StateRunning || in.Host != "dst-0000" || in.Home != "dst-0000" {
		t.Fatalf("after migrate: %s on %s (home %s)", in.State, in.Host, in.Home)
	}
	waitFor(t, "the source to clean up", func() bool {
		_, has := driverHas(th.src, in.ID)
		return !has && th.instance("vm1").Migration == nil
	})
	if st, ok := driverHas(th.dst, in.ID); !ok || st.State != driver.Running || st.Host != "dst-0000" {
		t.Fatalf("target driver: %+v %v", st, ok)
	}
	h := th.historyText("vm1")
	for _, want := range []string{"RUNNING->MIGRATE", "room reserved on dst-0000", "pre-copy round 1", "stop-and-copy done: downtime", "MIGRATE->RUNNING dst-0000 migrated (live)", "src-0000 cleaned up"} {
		if !strings.Contains(h, want) {
			t.Errorf("history lacks %q:\n%s", want, h)
		}
	}
	if a := th.allocated("src-0000"); a.VCPUs != 0 || a.MemoryMiB != 0 {
		t.Errorf("source still allocated %+v", a)
	}
	if a := th.allocated("dst-0000"); a.VCPUs != in.Size.VCPUs || a.MemoryMiB != in.Size.MemoryMiB {
		t.Errorf("target allocated %+v, want %+v", a, in.Size)
	}
	if len(in.Placements) != 2 || in.Placements[0].End.IsZero() || !in.Placements[1].End.IsZero() {
		t.Errorf("placements: %+v", in.Placements)
	}
}

// TestMigrateColdContainerAndStopped: a running container moves cold and
// runs again on the target; a STOPPED VM moves with its saved state and
// starts on its new home; a live container is refused with the reason.
func TestMigrateColdContainerAndStopped(t *testing.T) {
	th := newTwoHosts(t, 0, func(c *cloud) {
		if _, err := c.admin.CreateInstance(context.Background(), "default", api.InstancesPost{Name: "ct1", Type: api.TypeContainer, Flavor: "tiny", Image: "x"}); err != nil {
			t.Fatal(err)
		}
		c.create("vm2")
	})
	th.waitState("ct1", api.StateRunning)
	th.waitState("vm2", api.StateRunning)
	// The agents said what their driver can do: the server refuses a
	// live container move up front, before anything is reserved.
	if h, err := th.admin.Host(context.Background(), "src-0000"); err != nil ||
		!slices.Contains(h.Capabilities[api.TypeVM], api.CapLiveMigrate) || slices.Contains(h.Capabilities[api.TypeContainer], api.CapLiveMigrate) ||
		!slices.Contains(h.Capabilities[api.TypeContainer], api.CapMigrate) {
		t.Fatalf("src-0000's capabilities: %v %v", h.Capabilities, err)
	}
	_, err := th.migrate("ct1", api.InstanceMigrate{Mode: api.MigrateLive})
	if client.StatusOf(err) != 400 || !strings.Contains(err.Error(), "CRIU") || !strings.Contains(err.Error(), "driver sim") {
		t.Fatalf("live container migration: %v, want a 400 naming CRIU and the driver", err)
	}
	if ct := th.instance("ct1"); ct.State != api.StateRunning || ct.Migration != nil {
		t.Fatalf("a refused migration changed ct1: %s %+v", ct.State, ct.Migration)
	}
	if op, err := th.migrate("ct1", api.InstanceMigrate{Host: "dst-0000"}); err != nil || op.Status != api.OpSucceeded {
		t.Fatalf("cold migrate: %v %+v\n%s", err, op, th.historyText("ct1"))
	}
	ct := th.waitState("ct1", api.StateRunning)
	if ct.Host != "dst-0000" {
		t.Fatalf("ct1 runs on %s", ct.Host)
	}
	if h := th.historyText("ct1"); !strings.Contains(h, "MIGRATE->BOOT dst-0000 migrated (cold)") || !strings.Contains(h, "BOOT->RUNNING dst-0000") {
		t.Errorf("history:\n%s", h)
	}

	th.action("vm2", api.ActionStop)
	vm := th.waitState("vm2", api.StateStopped)
	if op, err := th.migrate("vm2", api.InstanceMigrate{}); err != nil || op.Status != api.OpSucceeded {
		t.Fatalf("migrate stopped: %v %+v\n%s", err, op, th.historyText("vm2"))
	}
	vm = th.waitState("vm2", api.StateStopped)
	if vm.Home != "dst-0000" || vm.Host != "" {
		t.Fatalf("stopped vm2: home %q host %q", vm.Home, vm.Host)
	}
	if st, ok := driverHas(th.dst, vm.ID); !ok || st.State != driver.Saved {
		t.Fatalf("target has %+v %v; want its saved state", st, ok)
	}
	th.action("vm2", api.ActionStart)
	if vm = th.waitState("vm2", api.StateRunning); vm.Host != "dst-0000" {
		t.Fatalf("vm2 started on %s", vm.Host)
	}
	waitFor(t, "the source to forget both", func() bool {
		_, a := driverHas(th.src, ct.ID)
		_, b := driverHas(th.src, vm.ID)
		return !a && !b
	})
}

// TestMigrateRollsBackWhenTheTargetDies: the target's agent dies in the
// middle of a live migration: the VM keeps running on the source, once;
// the target's room is given back; the target, back, holds nothing.
func TestMigrateRollsBackWhenTheTargetDies(t *testing.T) {
	th := newTwoHosts(t, 3*time.Second, func(c *cloud) { c.create("vm1") })
	in := th.waitState("vm1", api.StateRunning)
	op, err := th.admin.MigrateInstance(context.Background(), "default", "vm1", api.InstanceMigrate{})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the transfer to start", func() bool {
		m := th.instance("vm1").Migration
		return m != nil && m.Stats != nil && m.Stats.Rounds >= 1
	})
	if a := th.allocated("dst-0000"); a.MemoryMiB != in.Size.MemoryMiB {
		t.Errorf("target room not reserved during the transfer: %+v", a)
	}
	th.dstAg.stop()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	op, _ = th.admin.WaitOperation(ctx, op.ID)
	if op.Status != api.OpFailed || !strings.Contains(op.Error, "abandoned") {
		t.Fatalf("operation %+v", op)
	}
	in = th.waitState("vm1", api.StateRunning)
	if in.Host != "src-0000" {
		t.Fatalf("vm1 on %s after the rollback", in.Host)
	}
	if st, ok := driverHas(th.src, in.ID); !ok || st.State != driver.Running {
		t.Fatalf("source driver: %+v %v", st, ok)
	}
	if _, ok := driverHas(th.dst, in.ID); ok {
		t.Fatal("the dead target holds the instance")
	}
	if a := th.allocated("dst-0000"); a.MemoryMiB != 0 {
		t.Errorf("target still allocated %+v", a)
	}
	// The target comes back: it cleans up (nothing) and says so.
	th.dstAg = th.startAgentNamed("dst", th.dst, th.dstHome, time.Hour)
	waitFor(t, "the rollback's cleanup", func() bool { return th.instance("vm1").Migration == nil })
	if _, ok := driverHas(th.dst, in.ID); ok {
		t.Fatal("the target runs it too")
	}
	if h := th.historyText("vm1"); !strings.Contains(h, "abandoned the migration to dst-0000") {
		t.Errorf("history:\n%s", h)
	}
}

// TestMigrateCancelAndExplain: explain --migrate names the source; a
// cancelled migration leaves the VM on its source.
func TestMigrateCancelAndExplain(t *testing.T) {
	th := newTwoHosts(t, 3*time.Second, func(c *cloud) { c.create("vm1") })
	th.waitState("vm1", api.StateRunning)
	ex, err := th.admin.ExplainMigration(context.Background(), "default", "vm1")
	if err != nil {
		t.Fatal(err)
	}
	var src, dst api.ExplainHost
	for _, h := range ex.Hosts {
		switch h.Host {
		case "src-0000":
			src = h
		case "dst-0000":
			dst = h
		}
	}
	if src.Feasible || !strings.Contains(src.Reason, "source") || !dst.Feasible {
		t.Fatalf("explain: %+v", ex)
	}
	if _, err := th.admin.MigrateInstance(context.Background(), "default", "vm1", api.InstanceMigrate{Host: "src-0000"}); err == nil {
		t.Fatal("a migration to its own host was taken")
	}
	op, err := th.admin.MigrateInstance(context.Background(), "default", "vm1", api.InstanceMigrate{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := th.admin.CancelMigration(context.Background(), "default", "vm1"); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	op, _ = th.admin.WaitOperation(ctx, op.ID)
	if op.Status != api.OpFailed || !strings.Contains(op.Error, "cancel") {
		t.Fatalf("operation %+v", op)
	}
	in := th.waitState("vm1", api.StateRunning)
	if in.Host != "src-0000" {
		t.Fatalf("on %s", in.Host)
	}
	waitFor(t, "the cleanup", func() bool { return th.instance("vm1").Migration == nil })
	if _, ok := driverHas(th.dst, in.ID); ok {
		t.Fatal("target holds it")
	}
	if st, _ := driverHas(th.src, in.ID); st.State != driver.Running {
		t.Fatalf("source: %+v", st)
	}
}

// TestEvacuate: a host's instances all leave (live, cold, stopped), the
// host ends disabled and empty.
func TestEvacuate(t *testing.T) {
	th := newTwoHosts(t, 0, func(c *cloud) {
		c.create("a")
		c.create("b")
		if _, err := c.admin.CreateInstance(context.Background(), "default", api.InstancesPost{Name: "ct", Type: api.TypeContainer, Flavor: "tiny", Image: "x"}); err != nil {
			t.Fatal(err)
		}
	})
	for _, n := range []string{"a", "b", "ct"} {
		th.waitState(n, api.StateRunning)
	}
	th.action("b", api.ActionStop)
	th.waitState("b", api.StateStopped)
	plan, err := th.admin.EvacuationPlan(context.Background(), "src-0000")
	if err != nil || len(plan.Moves) != 3 {
		t.Fatalf("plan %+v %v", plan, err)
	}
	for _, m := range plan.Moves {
		if m.Target != "dst-0000" {
			t.Errorf("plan: %+v", m)
		}
	}
	if h, _ := th.admin.Host(context.Background(), "src-0000"); !h.Enabled {
		t.Fatal("a dry run disabled the host")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	op, err := th.admin.EvacuateHost(ctx, "src-0000", 2)
	if err != nil {
		t.Fatal(err)
	}
	if op, err = th.admin.WaitOperation(ctx, op.ID); err != nil || op.Status != api.OpSucceeded {
		t.Fatalf("evacuate: %v %+v", err, op)
	}
	h, _ := th.admin.Host(ctx, "src-0000")
	if h.Enabled || h.Instances != 0 {
		t.Fatalf("host after evacuation: enabled %v, %d instances", h.Enabled, h.Instances)
	}
	t.Cleanup(func() {
		if t.Failed() {
			for _, n := range []string{"a", "b", "ct"} {
				t.Logf("%s: %+v\n%s", n, th.instance(n), th.historyText(n))
			}
		}
	})
	for _, n := range []string{"a", "ct"} {
		if in := th.waitState(n, api.StateRunning); in.Host != "dst-0000" {
			t.Errorf("%s on %s", n, in.Host)
		}
	}
	if in := th.instance("b"); in.Home != "dst-0000" {
		t.Errorf("b's home is %s", in.Home)
	}
	waitFor(t, "the source driver to be empty", func() bool {
		sts, _ := th.src.Recover(ctx)
		return len(sts) == 0
	})
	_ = errors.New
}

// TestMigrateDeadline: a migration still transferring at its deadline is
// cancelled by the server (no user asked), and the VM stays on its source.
func TestMigrateDeadline(t *testing.T) {
	th := newTwoHosts(t, 8*time.Second, func(c *cloud) { c.create("vm1") })
	th.waitState("vm1", api.StateRunning)
	// The operation fails (WaitOperation says so too).
	op, err := th.migrate("vm1", api.InstanceMigrate{TimeoutSeconds: 1})
	if op.Status != api.OpFailed || !strings.Contains(op.Error, "cancel") {
		t.Fatalf("migrate past its deadline: %v %+v", err, op)
	}
	in := th.waitState("vm1", api.StateRunning)
	if in.Host != "src-0000" {
		t.Fatalf("on %s", in.Host)
	}
	if h := th.historyText("vm1"); !strings.Contains(h, "deadline") || !strings.Contains(h, "abandoned the migration") {
		t.Errorf("history:\n%s", h)
	}
	waitFor(t, "the rollback's cleanup", func() bool { return th.instance("vm1").Migration == nil })
	if st, _ := driverHas(th.src, in.ID); st.State != driver.Running {
		t.Fatalf("source: %+v", st)
	}
	if _, ok := driverHas(th.dst, in.ID); ok {
		t.Fatal("target holds it")
	}
}
