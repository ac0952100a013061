package qemu

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/kumocloud/kumo/api"
	"github.com/kumocloud/kumo/internal/driver"
	"github.com/kumocloud/kumo/internal/qmp"
)

// pipeTunnel is a migration tunnel in one process: both sides opening a
// channel get the two ends of one pipe (the server splices real ones).
type pipeTunnel struct {
	mu   sync.Mutex
	ends map[string]chan net.Conn
}

func (p *pipeTunnel) open(ctx context.Context, channel string) (io.ReadWriteCloser, error) {
	p.mu.Lock()
	ch, ok := p.ends[channel]
	if !ok {
		ch = make(chan net.Conn, 1)
		p.ends[channel] = ch
		a, b := net.Pipe()
		ch <- b
		p.mu.Unlock()
		return a, nil
	}
	delete(p.ends, channel)
	p.mu.Unlock()
	return <-ch, nil
}

// TestLiveMigration: a running VM moves to another driver (another
// host's state dir) while it runs - its disk mirrored over NBD, its memory
// pre-copied, both through the tunnel - and its counter goes on there
// from where it was (memory kept); the source is paused for good and the
// figures (downtime, rounds) are QEMU's.
func TestLiveMigration(t *testing.T) {
	src, dst, s := runningOnOneOfTwo(t, "vm-live", counter)
	ctx := context.Background()
	waitFor(t, "the counter to reach 3", func() bool { n := ticks(t, src, s.ID); return len(n) > 0 && n[len(n)-1] >= 3 })
	tun := &pipeTunnel{ends: map[string]chan net.Conn{}}
	recv := make(chan error, 1)
	go func() { recv <- dst.LiveReceive(ctx, s, tun.open) }()
	var rounds []api.MigrationStats
	var st api.MigrationStats
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	sent := make(chan error, 1)
	go func() {
		var err error
		st, err = src.LiveSend(sctx, s.ID, tun.open, driver.LiveOptions{DowntimeLimitMS: 300, AutoConverge: true}, func(m api.MigrationStats) { rounds = append(rounds, m) })
		sent <- err
	}()
	if err := <-recv; err != nil {
		cancel()
		t.Fatalf("receive: %v", err)
	}
	if err := <-sent; err != nil {
		t.Fatal(err)
	}
	t.Logf("live migration: %+v (%d progress reports)", st, len(rounds))
	if st.Status != "completed" || st.Rounds < 1 || st.TotalMS <= 0 || st.Transferred <= 0 {
		t.Errorf("figures %+v", st)
	}
	last := ticks(t, src, s.ID)
	if qs, _ := src.qemuState(ctx, s.ID); qs != "postmigrate" && qs != "paused" {
		t.Errorf("the source is %q after the migration, not paused", qs)
	}
	// Generous: a TCG guest on a loaded machine ticks slowly.
	for deadline := time.Now().Add(3 * time.Minute); len(ticks(t, dst, s.ID)) < 2; {
		if time.Now().After(deadline) {
			qs, err := dst.qemuState(ctx, s.ID)
			logs, _ := dst.Logs(ctx, s.ID, 60)
			t.Fatalf("the counter does not go on on the target (QEMU %q %v); its console:\n%s", qs, err, logs)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if got := ticks(t, dst, s.ID); got[0] < last[len(last)-1] {
		t.Fatalf("on the target the counter printed %v after %v: the memory did not travel", got, last)
	}
	if st, err := dst.Status(ctx, s.ID); err != nil || st.State != driver.Running {
		t.Fatalf("target: %+v %v", st, err)
	}
}

// runningOnOneOfTwo starts VM id running userData on the first of two
// drivers (two hosts' state dirs); both are cleaned up and checked for
// leftovers at the end.
func runningOnOneOfTwo(t *testing.T, id, userData string) (src, dst *Driver, s driver.Spec) {
	sum, fetch := tinyVM(t)
	src = newDriver(t, t.TempDir(), fetch)
	dst = newDriver(t, t.TempDir(), fetch)
	t.Cleanup(func() { assertNoLeftovers(t, src); assertNoLeftovers(t, dst) })
	ctx := context.Background()
	s = spec(id, sum, 128, userData)
	if err := src.Prepare(ctx, s); err != nil {
		t.Fatal(err)
	}
	if err := src.Start(ctx, s); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { src.Cleanup(ctx, s.ID, false); dst.Cleanup(ctx, s.ID, false) })
	return src, dst, s
}

// TestLiveCancelEndsWhatAKilledAgentLeft: a source agent killed in the
// middle of a live migration leaves its QEMU migrating - the memory
// stream (here to a socket that takes nothing, as a stalled tunnel) and
// the disk mirror with its NBD client node. The restarted agent's driver
// (a new one on the same state dir), told the migration was cancelled
// (LiveCancel) or rolled back (LiveAbort), ends all of it: QEMU's
// migration is cancelled (a new one would otherwise be refused: "There's
// a migration process in progress"), no block job or target node is
// left, and the guest runs on.
func TestLiveCancelEndsWhatAKilledAgentLeft(t *testing.T) {
	src, _, s := runningOnOneOfTwo(t, "vm-abort", counter)
	ctx := context.Background()
	within(t, 5*time.Minute, "the counter to reach 2", func() bool { n := ticks(t, src, s.ID); return len(n) > 0 && n[len(n)-1] >= 2 })
	_, fetch := tinyVM(t)
	for _, end := range []string{"LiveCancel", "LiveAbort"} {
		leaveMigrating(t, src, s.ID)
		restarted := newDriver(t, src.root, fetch)
		var err error
		if end == "LiveCancel" {
			err = restarted.LiveCancel(ctx, s.ID)
		} else {
			err = restarted.LiveAbort(ctx, s.ID)
		}
		if err != nil {
			t.Fatalf("%s: %v", end, err)
		}
		c, err := qmp.Dial(ctx, src.sock(s.ID, "qmp.sock"))
		if err != nil {
			t.Fatal(err)
		}
		var mi migrationInfo
		if err := c.Execute(ctx, "query-migrate", nil, &mi); err != nil || mi.Status != "cancelled" {
			t.Errorf("QEMU's migration after %s: %q (%v), not cancelled", end, mi.Status, err)
		}
		var jobs []json.RawMessage
		if err := c.Execute(ctx, "query-block-jobs", nil, &jobs); err != nil || len(jobs) != 0 {
			t.Errorf("block jobs left after %s: %s (%v)", end, jobs, err)
		}
		if blockNodes(t, c)["kumo-mig-target"] != 0 {
			t.Errorf("the mirror's target node is left after %s", end)
		}
		if st, err := c.QueryStatus(ctx); err != nil || st.Status != "running" {
			t.Errorf("the guest is %q (%v) after %s, not running", st.Status, err, end)
		}
		c.Close()
	}
	// A source paused for the switch-over whose target then failed runs
	// again by LiveAbort (LiveCancel leaves that to the rollback).
	if err := src.do(ctx, s.ID, "stop", nil, nil); err != nil {
		t.Fatal(err)
	}
	if err := src.LiveCancel(ctx, s.ID); err != nil {
		t.Fatal(err)
	}
	if qs, _ := src.qemuState(ctx, s.ID); qs != "paused" {
		t.Errorf("LiveCancel left the guest %q, not paused", qs)
	}
	if err := src.LiveAbort(ctx, s.ID); err != nil {
		t.Fatal(err)
	}
	if qs, _ := src.qemuState(ctx, s.ID); qs != "running" {
		t.Errorf("LiveAbort left the guest %q, not running", qs)
	}
}

// blockNodes are a QEMU's named block nodes and their virtual sizes.
func blockNodes(t *testing.T, c *qmp.Conn) map[string]int64 {
	var nodes []struct {
		NodeName string `json:"node-name"`
		Image    struct {
			VirtualSize int64 `json:"virtual-size"`
		} `json:"image"`
	}
	if err := c.Execute(context.Background(), "query-named-block-nodes", nil, &nodes); err != nil {
		t.Fatal(err)
	}
	out := map[string]int64{}
	for _, n := range nodes {
		out[n.NodeName] = max(n.Image.VirtualSize, 1)
	}
	return out
}

// leaveMigrating does to VM id what a source agent killed in pre-copy
// leaves: a disk mirror (to a node that takes 1 byte/s) and a memory
// migration into a socket nobody reads, both under way, and no QMP
// client.
func leaveMigrating(t *testing.T, d *Driver, id string) {
	ctx := context.Background()
	stalled := filepath.Join(t.TempDir(), "stalled.sock")
	ln, err := net.Listen("unix", stalled)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		if c, err := ln.Accept(); err == nil {
			t.Cleanup(func() { c.Close() }) // held, never read
		}
	}()
	c, err := qmp.Dial(ctx, d.sock(id, "qmp.sock"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close() // the agent is killed
	steps := []struct {
		cmd  string
		args any
	}{
		{"blockdev-add", map[string]any{"driver": "null-co", "node-name": "kumo-mig-target", "size": blockNodes(t, c)["disk"]}},
		{"blockdev-mirror", map[string]any{"job-id": "kumo-mirror", "device": "disk", "target": "kumo-mig-target", "sync": "full", "speed": 1}},
		{"migrate-set-parameters", map[string]any{"max-bandwidth": 1 << 20}},
		{"migrate", map[string]any{"uri": "unix:" + stalled}},
	}
	for _, st := range steps {
		if err := c.Execute(ctx, st.cmd, st.args, nil); err != nil {
			t.Fatalf("%s: %v", st.cmd, err)
		}
	}
	var mi migrationInfo
	waitFor(t, "the migration to be under way", func() bool {
		return c.Execute(ctx, "query-migrate", nil, &mi) == nil && migrating(mi.Status)
	})
}

// TestLiveMigrationThereAndBack: a VM live-migrated to another driver
// moves back again, its second source a QEMU that was itself migrated in
// (its query-migrate mixes in that incoming migration; the driver follows
// its own by QEMU's events): the move back completes with QEMU's figures,
// its source ends paused and the counter goes on from where it was.
func TestLiveMigrationThereAndBack(t *testing.T) {
	src, dst, s := runningOnOneOfTwo(t, "vm-back", counter)
	ctx := context.Background()
	within(t, 5*time.Minute, "the counter to reach 3", func() bool { n := ticks(t, src, s.ID); return len(n) > 0 && n[len(n)-1] >= 3 })
	move := func(from, to *Driver) api.MigrationStats {
		t.Helper()
		tun := &pipeTunnel{ends: map[string]chan net.Conn{}}
		recv := make(chan error, 1)
		go func() { recv <- to.LiveReceive(ctx, s, tun.open) }()
		sctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
		defer cancel()
		st, err := from.LiveSend(sctx, s.ID, tun.open, driver.LiveOptions{DowntimeLimitMS: 300, AutoConverge: true}, func(api.MigrationStats) {})
		if err != nil {
			t.Fatal(err)
		}
		if err := <-recv; err != nil {
			t.Fatal(err)
		}
		if qs, _ := from.qemuState(ctx, s.ID); qs != "postmigrate" && qs != "paused" {
			t.Errorf("the source is %q after the migration, not paused", qs)
		}
		return st
	}
	there := move(src, dst)
	within(t, 3*time.Minute, "the counter to go on on the target", func() bool { return len(ticks(t, dst, s.ID)) >= 1 })
	src.Cleanup(ctx, s.ID, false)
	back := move(dst, src)
	t.Logf("there: %+v; back: %+v", there, back)
	if back.Status != "completed" || back.TotalMS <= 0 || back.Rounds < 1 {
		t.Errorf("the move back reports %+v: not QEMU's figures of a completed migration", back)
	}
	last := ticks(t, dst, s.ID)
	within(t, 3*time.Minute, "the counter to go on back on the source", func() bool {
		n := ticks(t, src, s.ID)
		return len(n) > 0 && n[0] >= last[len(last)-1]
	})
}
