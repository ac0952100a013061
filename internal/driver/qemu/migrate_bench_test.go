package qemu

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kumocloud/kumo/api"
	"github.com/kumocloud/kumo/internal/driver"
	"github.com/kumocloud/kumo/internal/driver/local"
	"github.com/kumocloud/kumo/internal/qmp"
)

// BenchmarkMigrate measures, in one run, three live migrations of an idle
// 512 MiB tiny-vm (1 vCPU), each VM freshly booted to its shell:
//
//   - kumo: the driver's LiveSend/LiveReceive between two drivers (two
//     hosts' state dirs): the overlay mirrored over NBD, then the memory
//     pre-copied, all through a tunnel of loopback TCP connections (the
//     agents' tunnel adds TLS and the server's hop; not here);
//   - bare memory-only: the same VM's QEMU command (same cgroup limits,
//     same downtime limit and bandwidth) migrated with QMP "migrate tcp:"
//     to a second QEMU waiting with -incoming - no disk copy (it would
//     need shared storage);
//   - bare memory+disk: what kumo must do without shared storage, by hand
//     over QMP: the incoming QEMU exports its fresh overlay over NBD
//     (tcp:), the source mirrors into it (blockdev-mirror, sync top,
//     write-blocking), then "migrate tcp:", then the mirror is ended and
//     the target continued.
//
// Reported: QEMU's own total time and downtime of the memory migration;
// the wall time of the whole move (from the first mirror command, or the
// "migrate" for memory-only, until the target runs: the guest's pause is
// QEMU's downtime plus what follows its migration until that "cont");
// and kumo's ratios to both bare variants. Each run logs kumo's phases.
func BenchmarkMigrate(b *testing.B) {
	sum, fetch := tinyVM(b)
	src := newDriver(b, b.TempDir(), fetch)
	dst := newDriver(b, b.TempDir(), fetch)
	ctx := context.Background()
	var tl timeline
	liveTrace = tl.mark
	defer func() { liveTrace = nil }()
	var k, bm, bd []moveFigures
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		s := spec(fmt.Sprintf("mig%d", i), sum, 512, "")
		bootReady(b, src, s)
		tun := &tcpTunnel{ends: map[string]chan net.Conn{}}
		defer tun.close()
		tl.reset()
		recv := make(chan error, 1)
		go func() { recv <- dst.LiveReceive(ctx, s, tun.open) }()
		// As for the bare ones, the target's QEMU is up before the clock
		// starts (an agent starts it while the source sets up).
		if err := tl.await("target: ready, waiting for go", recv); err != nil {
			b.Fatal(err)
		}
		tl.mark(s.ID, "bench: LiveSend called")
		st, err := src.LiveSend(ctx, s.ID, tun.open, driver.LiveOptions{DowntimeLimitMS: 300, AutoConverge: true}, func(api.MigrationStats) {})
		if err != nil {
			b.Fatal(err)
		}
		if err := <-recv; err != nil {
			b.Fatal(err)
		}
		wall := tl.between("bench: LiveSend called", "target: running")
		k = append(k, moveFigures{total: st.TotalMS, down: st.DowntimeMS, wall: wall,
			after: tl.between("source: migration completed", "target: running")})
		b.Logf("kumo #%d:%s", i, &tl)
		src.Cleanup(ctx, s.ID, false)
		dst.Cleanup(ctx, s.ID, false)

		bm = append(bm, bareMigrate(b, src, sum, fmt.Sprintf("bare-mem%d", i), false))
		bd = append(bd, bareMigrate(b, src, sum, fmt.Sprintf("bare-disk%d", i), true))
		b.Logf("#%d kumo %+v, bare memory-only %+v, bare memory+disk %+v", i, k[i], bm[i], bd[i])
	}
	b.StopTimer()
	km, bmm, bdm := medians(k), medians(bm), medians(bd)
	b.ReportMetric(float64(km.total), "kumo-total-ms")
	b.ReportMetric(float64(km.down), "kumo-downtime-ms")
	b.ReportMetric(float64(km.wall), "kumo-wall-ms")
	b.ReportMetric(float64(km.after), "kumo-switchover-ms")
	b.ReportMetric(float64(bmm.total), "bare-mem-total-ms")
	b.ReportMetric(float64(bmm.down), "bare-mem-downtime-ms")
	b.ReportMetric(float64(bmm.wall), "bare-mem-wall-ms")
	b.ReportMetric(float64(bdm.total), "bare-disk-total-ms")
	b.ReportMetric(float64(bdm.down), "bare-disk-downtime-ms")
	b.ReportMetric(float64(bdm.wall), "bare-disk-wall-ms")
	b.ReportMetric(float64(bdm.after), "bare-disk-switchover-ms")
	b.ReportMetric(float64(km.total)/float64(max(bmm.total, 1)), "ratio-total-vs-mem")
	b.ReportMetric(float64(km.total)/float64(max(bdm.total, 1)), "ratio-total-vs-disk")
	b.ReportMetric(float64(km.wall)/float64(max(bmm.wall, 1)), "ratio-wall-vs-mem")
	b.ReportMetric(float64(km.wall)/float64(max(bdm.wall, 1)), "ratio-wall-vs-disk")
}

// moveFigures are one migration's: QEMU's total time and downtime, the
// wall time of the whole move, and the time from QEMU's completion
// until the target runs (ms).
type moveFigures struct{ total, down, wall, after int64 }

// medians are the figures' medians, each taken on its own.
func medians(fs []moveFigures) moveFigures {
	med := func(get func(moveFigures) int64) int64 {
		v := make([]int64, len(fs))
		for i, f := range fs {
			v[i] = get(f)
		}
		sort.Slice(v, func(i, j int) bool { return v[i] < v[j] })
		return v[len(v)/2]
	}
	return moveFigures{med(func(f moveFigures) int64 { return f.total }), med(func(f moveFigures) int64 { return f.down }),
		med(func(f moveFigures) int64 { return f.wall }), med(func(f moveFigures) int64 { return f.after })}
}

// timeline keeps the phases liveTrace reports, with their times.
type timeline struct {
	mu     sync.Mutex
	start  time.Time
	phases []string
	at     map[string]time.Duration
}

func (t *timeline) reset() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.start, t.phases, t.at = time.Now(), nil, map[string]time.Duration{}
}

func (t *timeline) mark(_, phase string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.phases = append(t.phases, phase)
	t.at[phase] = time.Since(t.start)
}

// await waits until a phase is reached, or the receiver failed.
func (t *timeline) await(phase string, recv <-chan error) error {
	for start := time.Now(); time.Since(start) < bootWait; time.Sleep(time.Millisecond) {
		t.mu.Lock()
		_, ok := t.at[phase]
		t.mu.Unlock()
		if ok {
			return nil
		}
		select {
		case err := <-recv:
			return fmt.Errorf("the target ended before %q: %v", phase, err)
		default:
		}
	}
	return fmt.Errorf("no %q after %s", phase, bootWait)
}

func (t *timeline) between(a, b string) int64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	return (t.at[b] - t.at[a]).Milliseconds()
}

func (t *timeline) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	var sb strings.Builder
	for _, p := range t.phases {
		fmt.Fprintf(&sb, " %d ms %s;", t.at[p].Milliseconds(), p)
	}
	return sb.String()
}

// tcpTunnel is a migration tunnel in one process made of loopback TCP
// connections (kernel socket buffers, as between two hosts' agents).
type tcpTunnel struct {
	mu    sync.Mutex
	ends  map[string]chan net.Conn
	conns []net.Conn
}

func (p *tcpTunnel) open(ctx context.Context, channel string) (io.ReadWriteCloser, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	ch, ok := p.ends[channel]
	if ok {
		delete(p.ends, channel)
		return <-ch, nil
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	defer ln.Close()
	a, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		return nil, err
	}
	c, err := ln.Accept()
	if err != nil {
		a.Close()
		return nil, err
	}
	ch = make(chan net.Conn, 1)
	ch <- c
	p.ends[channel] = ch
	p.conns = append(p.conns, a, c)
	return a, nil
}

func (p *tcpTunnel) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		c.Close()
	}
}

// bootReady prepares and starts a VM and waits until its guest is up.
func bootReady(b *testing.B, d *Driver, s driver.Spec) {
	ctx := context.Background()
	if err := d.Prepare(ctx, s); err != nil {
		b.Fatal(err)
	}
	started := time.Now()
	if err := d.Start(ctx, s); err != nil {
		b.Fatal(err)
	}
	for st, _ := d.Status(ctx, s.ID); !st.Ready; st, _ = d.Status(ctx, s.ID) {
		if time.Since(started) > bootWait {
			b.Fatalf("the VM was not ready after %s: %s", bootWait, st.ReadyReason)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// bareMigrate boots a VM's QEMU command (as the driver spawns it: same
// arguments, same cgroup limits) and migrates it by hand over QMP to a
// second QEMU started -S -incoming defer on loopback TCP; withDisk, the
// overlay is mirrored first into the target's over NBD. It returns
// QEMU's figures and the wall time from the first command until the
// target was continued.
func bareMigrate(b *testing.B, d *Driver, sum, name string, withDisk bool) moveFigures {
	ctx := context.Background()
	from, to := spec(name+"-src", sum, 512, ""), spec(name+"-dst", sum, 512, "")
	for _, s := range []driver.Spec{from, to} {
		if err := d.Prepare(ctx, s); err != nil {
			b.Fatal(err)
		}
		defer d.Cleanup(ctx, s.ID, false)
	}
	mf, _ := d.readMeta(from.ID)
	mt, _ := d.readMeta(to.ID)
	if err := d.spawn(ctx, from.ID, mf, ""); err != nil {
		b.Fatal(err)
	}
	defer d.ensureQuit(ctx, from.ID)
	log := d.path(from.ID, "console.log")
	for started := time.Now(); ; time.Sleep(10 * time.Millisecond) {
		if bs, _ := os.ReadFile(log); local.ReadyMarker.Match(bs) {
			break
		}
		if time.Since(started) > bootWait {
			b.Fatalf("the bare VM was not ready after %s", bootWait)
		}
	}
	if err := d.spawn(ctx, to.ID, mt, incomingLive); err != nil {
		b.Fatal(err)
	}
	defer d.ensureQuit(ctx, to.ID)
	sc, err := d.dial(ctx, from.ID)
	if err != nil {
		b.Fatal(err)
	}
	defer sc.Close()
	tc, err := d.dial(ctx, to.ID)
	if err != nil {
		b.Fatal(err)
	}
	defer tc.Close()
	must := func(c *qmp.Conn, cmd string, args any) {
		if err := c.Execute(ctx, cmd, args, nil); err != nil {
			b.Fatalf("bare %s: %v", cmd, err)
		}
	}
	events := []map[string]any{{"capability": "events", "state": true}}
	must(tc, "migrate-set-capabilities", map[string]any{"capabilities": events})
	memPort, nbdPort := freePort(b), freePort(b)
	if withDisk {
		must(tc, "nbd-server-start", map[string]any{"addr": map[string]any{"type": "inet", "data": map[string]any{"host": "127.0.0.1", "port": fmt.Sprint(nbdPort)}}})
		must(tc, "nbd-server-add", map[string]any{"device": "disk", "writable": true})
	}
	must(tc, "migrate-incoming", map[string]any{"uri": fmt.Sprintf("tcp:127.0.0.1:%d", memPort)})
	must(sc, "migrate-set-capabilities", map[string]any{"capabilities": events})
	must(sc, "migrate-set-parameters", map[string]any{"downtime-limit": 300, "max-bandwidth": qemuMaxBandwidth})
	started := time.Now()
	if withDisk {
		must(sc, "blockdev-add", map[string]any{"driver": "nbd", "node-name": "bare-target", "export": "disk",
			"server": map[string]any{"type": "inet", "host": "127.0.0.1", "port": fmt.Sprint(nbdPort)}})
		must(sc, "blockdev-mirror", map[string]any{"job-id": "bare-mirror", "device": "disk", "target": "bare-target",
			"sync": "top", "copy-mode": "write-blocking"})
		waitJob(b, sc, func(status string) bool { return status == "ready" })
	}
	must(sc, "migrate", map[string]any{"uri": fmt.Sprintf("tcp:127.0.0.1:%d", memPort)})
	mi := waitMigration(b, sc)
	completed := time.Now()
	if withDisk {
		must(sc, "block-job-cancel", map[string]any{"device": "bare-mirror"})
		waitJob(b, sc, func(status string) bool { return status == "null" })
	}
	waitMigration(b, tc)
	if withDisk {
		must(tc, "nbd-server-stop", nil)
	}
	must(tc, "cont", nil)
	return moveFigures{total: mi.TotalTime, down: mi.Downtime, wall: time.Since(started).Milliseconds(), after: time.Since(completed).Milliseconds()}
}

// waitJob waits, by QEMU's JOB_STATUS_CHANGE events, until the one block
// job reaches a status.
func waitJob(b *testing.B, c *qmp.Conn, done func(string) bool) {
	ctx, cancel := context.WithTimeout(context.Background(), bootWait)
	defer cancel()
	for {
		ev, err := c.WaitEvent(ctx, "JOB_STATUS_CHANGE")
		if err != nil {
			b.Fatal(err)
		}
		var st struct {
			Status string `json:"status"`
		}
		json.Unmarshal(ev.Data, &st)
		if st.Status == "aborting" {
			b.Fatal("the bare mirror failed")
		}
		if done(st.Status) {
			return
		}
	}
}

// waitMigration waits, by QEMU's MIGRATION events, until its migration
// (outgoing or incoming) completed.
func waitMigration(b *testing.B, c *qmp.Conn) migrationInfo {
	ctx, cancel := context.WithTimeout(context.Background(), bootWait)
	defer cancel()
	for {
		var mi migrationInfo
		if err := c.Execute(ctx, "query-migrate", nil, &mi); err != nil {
			b.Fatal(err)
		}
		switch mi.Status {
		case "completed":
			return mi
		case "failed", "cancelled":
			b.Fatalf("bare migration %s: %s", mi.Status, mi.ErrorDesc)
		}
		if _, err := c.WaitEvent(ctx, "MIGRATION"); err != nil {
			b.Fatal(err)
		}
	}
}

func freePort(b *testing.B) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// bootWait bounds a benchmark's wait for a TCG guest to be ready (a
// failed boot ends the run instead of hanging it).
const bootWait = 3 * time.Minute
