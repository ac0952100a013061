package qemu

import (
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/kumocloud/kumo/api"
	"github.com/kumocloud/kumo/internal/driver"
)

// dirtier is a guest that rewrites 16 MiB of random bytes in its memory
// (a tmpfs file) over and over, and says every second how many passes it
// has made ("tick I dirty N").
const dirtier = "#!/bin/sh\n" +
	"head -c 16777216 /dev/urandom >/tmp/src; echo 0 >/tmp/n\n" +
	"(n=0; while :; do cat /tmp/src >/tmp/dst; n=$((n+1)); echo $n >/tmp/n; done) &\n" +
	"(i=0; while :; do i=$((i+1)); echo \"tick $i dirty $(cat /tmp/n)\" >/dev/ttyS0; sleep 1; done) &\n"

// dirtyPasses is the last pass count the dirtier printed (-1: none).
func dirtyPasses(t *testing.T, d *Driver, id string) int {
	b, _ := d.Logs(context.Background(), id, 1000)
	n := -1
	for _, l := range strings.Split(string(b), "\n") {
		if i := strings.LastIndex(l, "dirty "); i >= 0 {
			fmt.Sscanf(l[i:], "dirty %d", &n)
		}
	}
	return n
}

// TestLiveMigrationThatCannotConverge: a guest dirties its memory faster
// than the migration may send it (1 MiB/s, while the guest's 16 MiB of
// random bytes alone take 16 s, rewritten all the time), with
// auto-converge and a 50 ms downtime limit. Past the bound the
// migration is abandoned with QEMU's figures as the reason, the VM runs
// on at the source (its counter and its writer go on, memory intact)
// and nothing of it is left on the target.
func TestLiveMigrationThatCannotConverge(t *testing.T) {
	src, dst, s := runningOnOneOfTwo(t, "vm-dirty", dirtier)
	ctx := context.Background()
	within(t, 5*time.Minute, "the guest to dirty its memory", func() bool { return dirtyPasses(t, src, s.ID) >= 2 })
	before := dirtyPasses(t, src, s.ID)

	tun := &pipeTunnel{ends: map[string]chan net.Conn{}}
	recv := make(chan error, 1)
	go func() { recv <- dst.LiveReceive(ctx, s, tun.open) }()
	var last api.MigrationStats
	opt := driver.LiveOptions{DowntimeLimitMS: 50, AutoConverge: true, MaxBandwidth: 1 << 20, ConvergeWithin: 20 * time.Second}
	sctx, cancel := context.WithTimeout(ctx, 3*time.Minute) // far past the bound: the bound decides
	defer cancel()
	st, err := src.LiveSend(sctx, s.ID, tun.open, opt, func(m api.MigrationStats) { last = m })
	if err == nil {
		t.Fatalf("a guest dirtying 16 MiB without end migrated at 1 MiB/s within 20 s: %+v", st)
	}
	t.Logf("abandoned: %v (last figures %+v)", err, last)
	if sctx.Err() != nil || !strings.Contains(err.Error(), "did not converge within 20s") || !strings.Contains(err.Error(), "auto-converge true") {
		t.Fatalf("the reason %q does not say the bound was reached", err)
	}
	if last.Transferred <= 0 || last.Remaining <= 0 {
		t.Errorf("the migration sent nothing before it was abandoned: %+v", last)
	}
	select {
	case rerr := <-recv:
		if rerr == nil {
			t.Fatal("the target says it received an abandoned migration")
		}
	case <-time.After(time.Minute):
		t.Fatal("the target's receive did not end after the source abandoned")
	}
	if dst.Has(s.ID) {
		t.Error("the target keeps the instance of an abandoned migration")
	}
	// Runs exactly once: on the source, still writing.
	if qs, err := src.qemuState(ctx, s.ID); qs != "running" {
		t.Fatalf("the source is %q (%v) after the abandon, not running", qs, err)
	}
	n := ticks(t, src, s.ID)
	within(t, 3*time.Minute, "the source's counter to go on", func() bool { m := ticks(t, src, s.ID); return len(m) > 0 && m[len(m)-1] > n[len(n)-1] })
	within(t, 3*time.Minute, "the source's writer to go on", func() bool { return dirtyPasses(t, src, s.ID) > before })
	if st, err := src.Status(ctx, s.ID); err != nil || st.State != driver.Running {
		t.Fatalf("source: %+v %v", st, err)
	}
}
