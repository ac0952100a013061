package qemu

import (
	"context"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/kumocloud/kumo/api"
	"github.com/kumocloud/kumo/internal/driver"
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
