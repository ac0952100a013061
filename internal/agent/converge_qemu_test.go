package agent_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/kumocloud/kumo/api"
	"github.com/kumocloud/kumo/internal/agent"
	"github.com/kumocloud/kumo/internal/driver"
	"github.com/kumocloud/kumo/internal/driver/qemu"
)

// dirtyGuest rewrites 16 MiB of random bytes in its memory without end
// and prints its pass count every second ("tick I dirty N").
const dirtyGuest = "#!/bin/sh\n" +
	"head -c 16777216 /dev/urandom >/tmp/src; echo 0 >/tmp/n\n" +
	"(n=0; while :; do cat /tmp/src >/tmp/dst; n=$((n+1)); echo $n >/tmp/n; done) &\n" +
	"(i=0; while :; do i=$((i+1)); echo \"tick $i dirty $(cat /tmp/n)\" >/dev/ttyS0; sleep 1; done) &\n"

// lastCount is the last number the guest printed after word on its
// console ("tick 5" -> 5 for "tick"), or -1.
func lastCount(d *qemu.Driver, id, word string) int {
	b, _ := d.Logs(context.Background(), id, 200)
	n := -1
	for _, l := range strings.Split(string(b), "\n") {
		if i := strings.LastIndex(l, word+" "); i >= 0 {
			fmt.Sscanf(l[i+len(word)+1:], "%d", &n)
		}
	}
	return n
}

func guestPasses(d *qemu.Driver, id string) int { return lastCount(d, id, "dirty") }

// TestLiveMigrateQemuAbandonedPastTheBound: a real VM (TCG) dirtying its
// memory faster than its source agent may send it (1 MiB/s, a 20 s
// bound) is not moved: the migration fails with the driver's figures as
// the reason in the history, the VM runs exactly once - on the source,
// still writing - the target keeps nothing of it, and the allocations of
// both hosts are what they were before.
func TestLiveMigrateQemuAbandonedPastTheBound(t *testing.T) {
	needQemu(t)
	c := newCloud(t)
	ctx := context.Background()
	c.uploadTinyVM()
	src := c.qemuAgentWith("qsrc", func(cfg *agent.Config) {
		cfg.LiveConvergeWithin, cfg.LiveBandwidth = 20*time.Second, 1<<20
	})
	if _, err := c.admin.CreateInstance(ctx, "default", api.InstancesPost{Name: "vm", Type: api.TypeVM, Flavor: "tiny", Image: "tiny-vm", UserData: dirtyGuest}); err != nil {
		t.Fatal(err)
	}
	in := c.waitState("vm", api.StateRunning)
	until(t, 3*time.Minute, "the guest to dirty its memory", func() bool { return guestPasses(src, in.ID) >= 2 })
	dst := c.qemuAgent("qdst")
	waitFor(t, "qdst online", func() bool { h, err := c.admin.Host(ctx, "qdst"); return err == nil && h.State == api.HostOnline })
	srcBefore, dstBefore := c.allocated("qsrc"), c.allocated("qdst")

	op, err := c.migrate("vm", api.InstanceMigrate{})
	if op.Status == api.OpSucceeded {
		t.Fatalf("a guest dirtying 16 MiB without end moved at 1 MiB/s within 20 s: %+v\n%s", op, c.historyText("vm"))
	}
	t.Logf("migration: %v %+v", err, op)
	waitFor(t, "the rollback's end", func() bool { in = c.instance("vm"); return in.Migration == nil })
	h := c.historyText("vm")
	t.Log(h)
	if in.State != api.StateRunning || in.Host != "qsrc" {
		t.Fatalf("after the abandon: %s on %s\n%s", in.State, in.Host, h)
	}
	if !strings.Contains(h, "the memory did not converge within 20s") {
		t.Errorf("the history does not say why:\n%s", h)
	}
	if st, err := src.Status(ctx, in.ID); err != nil || st.State != driver.Running {
		t.Errorf("source: %+v %v", st, err)
	}
	waitFor(t, "the target to keep nothing", func() bool { return !dst.Has(in.ID) })
	passes := guestPasses(src, in.ID)
	until(t, time.Minute, "the guest to go on writing on the source", func() bool { return guestPasses(src, in.ID) > passes })
	if a, b := c.allocated("qsrc"), c.allocated("qdst"); a != srcBefore || b != dstBefore {
		t.Errorf("allocations qsrc %+v qdst %+v; before %+v %+v", a, b, srcBefore, dstBefore)
	}
	c.action("vm", api.ActionTerminate)
	c.waitState("vm", api.StateDone)
}
