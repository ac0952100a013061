package qemu

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kumocloud/kumo/api"
	"github.com/kumocloud/kumo/internal/driver"
	"github.com/kumocloud/kumo/internal/qmp"
)

// BenchmarkMigrate measures, in one run, three kinds of live migration
// of one idle 512 MiB tiny-vm (1 vCPU), booted once to its shell and then
// moved back and forth between two drivers (two hosts' state dirs), the
// kinds taking turns (each iteration starts with the next kind, so drift
// in the machine's load falls on all three):
//
//   - kumo: the driver's LiveSend/LiveReceive: the overlay mirrored over
//     NBD, then the memory pre-copied, all through a tunnel of loopback
//     TCP connections (the agents' tunnel adds TLS and the server's hop:
//     BenchmarkMigrationTunnel in internal/agent measures that);
//   - bare memory-only: QMP by hand, "migrate tcp:" to a second QEMU
//     waiting with -incoming, no disk copy (as with shared storage: the
//     overlay is copied beforehand, untimed);
//   - bare memory+disk: what kumo must do without shared storage, by hand
//     over QMP: the incoming QEMU exports its fresh overlay over NBD
//     (tcp:), the source mirrors into it (blockdev-mirror, sync top,
//     write-blocking), then "migrate tcp:", then the mirror is ended and
//     the target continued.
//
// Every QEMU is the driver's own command line in the VM's cgroup, with
// the same downtime limit (300 ms) and bandwidth (128 MiB/s). The two
// drivers have cgroup parents of their own (as two machines would): the
// two QEMUs of a move are in two cgroups, whichever kind moves it.
//
// Reported (medians): QEMU's own total time and downtime of the memory
// migration; the wall time of the whole move (from LiveSend, or the
// first QMP command of a bare move, until the target runs); the
// switch-over (from QEMU's "completed" on the source until the target
// runs: the guest's pause is QEMU's downtime plus this); and kumo's
// ratios to both bare kinds. Each kumo move logs its phases.
func BenchmarkMigrate(b *testing.B) {
	sum, fetch := tinyVM(b)
	drivers := []*Driver{newDriver(b, b.TempDir(), fetch), newDriver(b, b.TempDir(), fetch)}
	ctx := context.Background()
	var tl timeline
	liveTrace = tl.mark
	defer func() { liveTrace = nil }()
	s := spec("mig", sum, 512, "")
	bootReady(b, drivers[0], s)
	on := 0
	// Both sides: a failed move may leave a QEMU on either.
	defer func() {
		for _, d := range drivers {
			d.Cleanup(ctx, s.ID, false)
		}
	}()
	figures := map[string][]moveFigures{}
	kinds := []string{"kumo", "bare-mem", "bare-disk"}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for j := range kinds {
			kind := kinds[(i+j)%len(kinds)]
			from, to := drivers[on], drivers[1-on]
			var f moveFigures
			if kind == "kumo" {
				f = kumoMove(b, &tl, from, to, s)
				fmt.Fprintf(os.Stderr, "kumo #%d:%s\n", i, &tl)
			} else {
				f = bareMove(b, from, to, s, kind == "bare-disk")
			}
			from.Cleanup(ctx, s.ID, false)
			on = 1 - on
			figures[kind] = append(figures[kind], f)
			fmt.Fprintf(os.Stderr, "#%d %s %+v\n", i, kind, f)
		}
	}
	b.StopTimer()
	k, bm, bd := medians(figures["kumo"]), medians(figures["bare-mem"]), medians(figures["bare-disk"])
	for _, m := range []struct {
		kind string
		f    moveFigures
	}{{"kumo", k}, {"bare-mem", bm}, {"bare-disk", bd}} {
		b.ReportMetric(float64(m.f.total), m.kind+"-total-ms")
		b.ReportMetric(float64(m.f.down), m.kind+"-downtime-ms")
		b.ReportMetric(float64(m.f.wall), m.kind+"-wall-ms")
		b.ReportMetric(float64(m.f.after), m.kind+"-switchover-ms")
	}
	b.ReportMetric(float64(k.total)/float64(max(bm.total, 1)), "ratio-total-vs-mem")
	b.ReportMetric(float64(k.total)/float64(max(bd.total, 1)), "ratio-total-vs-disk")
	b.ReportMetric(float64(k.wall)/float64(max(bm.wall, 1)), "ratio-wall-vs-mem")
	b.ReportMetric(float64(k.wall)/float64(max(bd.wall, 1)), "ratio-wall-vs-disk")
}

// kumoMove live-migrates s with the driver, from one driver to the other.
func kumoMove(b *testing.B, tl *timeline, from, to *Driver, s driver.Spec) moveFigures {
	ctx := context.Background()
	tun := &tcpTunnel{ends: map[string]chan net.Conn{}}
	defer tun.close()
	tl.reset()
	recv := make(chan error, 1)
	go func() { recv <- to.LiveReceive(ctx, s, tun.open) }()
	// As for the bare moves, the target's QEMU is up before the clock
	// starts (an agent starts it while the source sets up).
	if err := tl.await("target: ready, waiting for go", recv); err != nil {
		b.Fatal(err)
	}
	tl.mark(s.ID, "bench: LiveSend called")
	st, err := from.LiveSend(ctx, s.ID, tun.open, driver.LiveOptions{DowntimeLimitMS: 300, AutoConverge: true}, func(api.MigrationStats) {})
	if err != nil {
		b.Fatal(err)
	}
	if err := <-recv; err != nil {
		b.Fatal(err)
	}
	return moveFigures{total: st.TotalMS, down: st.DowntimeMS, wall: tl.between("bench: LiveSend called", "target: running"),
		after: tl.between("source: migration completed", "target: running")}
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

// bareMove migrates s by hand over QMP from its QEMU under one driver
// to a QEMU the other driver starts for it (the driver's command line
// and cgroup, -S -incoming defer) on loopback TCP; withDisk, the overlay
// is mirrored first into the target's over NBD, else it is copied
// before (untimed: shared storage). The target then runs it as the
// driver's own (as LiveReceive leaves it). It returns QEMU's figures and
// the wall time from the first timed command until the target runs.
func bareMove(b *testing.B, from, to *Driver, s driver.Spec, withDisk bool) moveFigures {
	ctx := context.Background()
	if _, err := driver.PrepareAfresh(ctx, to, s); err != nil {
		b.Fatal(err)
	}
	m, err := to.readMeta(s.ID)
	if err != nil {
		b.Fatal(err)
	}
	m.Want, m.Accel, m.BootAt, m.BootOffset = wantRunning, to.accel, time.Now().UTC(), 0
	if err := to.writeMeta(s.ID, m); err != nil {
		b.Fatal(err)
	}
	if !withDisk {
		if out, err := exec.Command("cp", from.path(s.ID, "disk.qcow2"), to.path(s.ID, "disk.qcow2")).CombinedOutput(); err != nil {
			b.Fatalf("copying the overlay: %v %s", err, out)
		}
	}
	if err := to.spawn(ctx, s.ID, m, incomingLive); err != nil {
		b.Fatal(err)
	}
	sc, err := from.dial(ctx, s.ID)
	if err != nil {
		b.Fatal(err)
	}
	defer sc.Close()
	tc, err := to.dial(ctx, s.ID)
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
	// An earlier kumo move left its settings in this QEMU: the same ones.
	must(sc, "migrate-set-capabilities", map[string]any{"capabilities": []map[string]any{{"capability": "events", "state": true}, {"capability": "auto-converge", "state": true}}})
	must(sc, "migrate-set-parameters", map[string]any{"downtime-limit": 300, "max-bandwidth": qemuMaxBandwidth})
	started := time.Now()
	if withDisk {
		must(sc, "blockdev-add", map[string]any{"driver": "nbd", "node-name": "bare-target", "export": "disk",
			"server": map[string]any{"type": "inet", "host": "127.0.0.1", "port": fmt.Sprint(nbdPort)}})
		must(sc, "blockdev-mirror", map[string]any{"job-id": "bare-mirror", "device": "disk", "target": "bare-target",
			"sync": "top", "copy-mode": "write-blocking"})
		benchWaitJob(b, sc, func(status string) bool { return status == "ready" })
	}
	must(sc, "migrate", map[string]any{"uri": fmt.Sprintf("tcp:127.0.0.1:%d", memPort)})
	mi := waitMigration(b, sc, true)
	completed := time.Now()
	if withDisk {
		must(sc, "block-job-cancel", map[string]any{"device": "bare-mirror"})
		benchWaitJob(b, sc, func(status string) bool { return status == "null" })
		must(sc, "blockdev-del", map[string]any{"node-name": "bare-target"})
	}
	waitMigration(b, tc, false)
	if withDisk {
		must(tc, "nbd-server-stop", nil)
	}
	must(tc, "cont", nil)
	return moveFigures{total: mi.TotalTime, down: mi.Downtime, wall: time.Since(started).Milliseconds(), after: time.Since(completed).Milliseconds()}
}

// benchWaitJob waits, by QEMU's JOB_STATUS_CHANGE events, until the one block
// job reaches a status.
func benchWaitJob(b *testing.B, c *qmp.Conn, done func(string) bool) {
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

// waitMigration waits, by QEMU's MIGRATION events (query-migrate's
// status is not the outgoing migration's on a QEMU migrated in, see
// LiveSend), until its migration (outgoing or incoming) completed.
func waitMigration(b *testing.B, c *qmp.Conn, outgoing bool) migrationInfo {
	ctx, cancel := context.WithTimeout(context.Background(), bootWait)
	defer cancel()
	status := ""
	for status != "completed" {
		var err error
		if status, err = nextStatus(ctx, c, 100*time.Millisecond, status); err != nil {
			b.Fatalf("the bare migration (%s): %v", status, err)
		}
		if status == "failed" || status == "cancelled" {
			var mi migrationInfo
			c.Execute(ctx, "query-migrate", nil, &mi)
			b.Fatalf("bare migration %s: %s", status, mi.ErrorDesc)
		}
	}
	var mi migrationInfo
	// QEMU says "completed" a moment before it has the outgoing one's
	// figures (an incoming one has none).
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		if err := c.Execute(ctx, "query-migrate", nil, &mi); err != nil {
			b.Fatal(err)
		}
		if !outgoing || mi.TotalTime != 0 {
			break
		}
		if time.Now().After(deadline) {
			b.Fatalf("QEMU said completed but gave no figures in 10 s: %+v", mi)
		}
	}
	return mi
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
