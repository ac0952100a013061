package qemu

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/kumocloud/kumo/api"
	"github.com/kumocloud/kumo/internal/driver"
	"github.com/kumocloud/kumo/internal/driver/local"
	"github.com/kumocloud/kumo/internal/qmp"
)

// BenchmarkMigrate measures, in one run, the driver's live migration of
// an idle 512 MiB tiny-vm between two drivers (two hosts' state dirs;
// disk mirrored over NBD, memory pre-copied, all through a tunnel)
// against a bare one: the same VM's QEMU command migrated over QMP
// "migrate tcp:" to a second QEMU started with -incoming (memory only,
// no disk copy, no tunnel). Total time and downtime are QEMU's
// query-migrate figures; ratio is kumo's total over the bare total.
func BenchmarkMigrate(b *testing.B) {
	sum, fetch := tinyVM(b)
	src := newDriver(b, b.TempDir(), fetch)
	dst := newDriver(b, b.TempDir(), fetch)
	ctx := context.Background()
	bareSrc, bareDst := spec("bare-src", sum, 512, ""), spec("bare-dst", sum, 512, "")
	for _, s := range []driver.Spec{bareSrc, bareDst} {
		if err := src.Prepare(ctx, s); err != nil {
			b.Fatal(err)
		}
	}
	defer src.Cleanup(ctx, bareSrc.ID, false)
	defer src.Cleanup(ctx, bareDst.ID, false)
	var kTotal, kDown, bTotal, bDown int64
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		s := spec(fmt.Sprintf("mig%d", i), sum, 512, "")
		if err := src.Prepare(ctx, s); err != nil {
			b.Fatal(err)
		}
		started := time.Now()
		if err := src.Start(ctx, s); err != nil {
			b.Fatal(err)
		}
		for st, _ := src.Status(ctx, s.ID); !st.Ready; st, _ = src.Status(ctx, s.ID) {
			if time.Since(started) > bootWait {
				b.Fatalf("the VM was not ready after %s: %s", bootWait, st.ReadyReason)
			}
			time.Sleep(10 * time.Millisecond)
		}
		tun := &pipeTunnel{ends: map[string]chan net.Conn{}}
		recv := make(chan error, 1)
		go func() { recv <- dst.LiveReceive(ctx, s, tun.open) }()
		st, err := src.LiveSend(ctx, s.ID, tun.open, driver.LiveOptions{DowntimeLimitMS: 300, AutoConverge: true}, func(api.MigrationStats) {})
		if err != nil {
			b.Fatal(err)
		}
		if err := <-recv; err != nil {
			b.Fatal(err)
		}
		kTotal, kDown = kTotal+st.TotalMS, kDown+st.DowntimeMS
		src.Cleanup(ctx, s.ID, false)
		dst.Cleanup(ctx, s.ID, false)

		t, d := bareMigrate(b, src, bareSrc, bareDst)
		bTotal, bDown = bTotal+t, bDown+d
	}
	b.StopTimer()
	n := float64(b.N)
	b.ReportMetric(float64(kTotal)/n, "kumo-total-ms")
	b.ReportMetric(float64(kDown)/n, "kumo-downtime-ms")
	b.ReportMetric(float64(bTotal)/n, "qemu-total-ms")
	b.ReportMetric(float64(bDown)/n, "qemu-downtime-ms")
	b.ReportMetric(float64(kTotal)/float64(max(bTotal, 1)), "ratio")
}

// bareMigrate boots the bare VM, starts a second QEMU with -incoming on a
// loopback port, migrates, and returns QEMU's total time and downtime.
func bareMigrate(b *testing.B, d *Driver, from, to driver.Spec) (int64, int64) {
	ctx := context.Background()
	mf, _ := d.readMeta(from.ID)
	mt, _ := d.readMeta(to.ID)
	log := d.path(from.ID, "console.log")
	os.Remove(log)
	for _, id := range []string{from.ID, to.ID} {
		os.MkdirAll(d.sock(id, ""), 0o700)
	}
	if out, err := exec.Command(d.qemu, d.args(from.ID, mf, "")...).CombinedOutput(); err != nil {
		b.Fatalf("bare qemu: %v %s", err, out)
	}
	defer d.ensureQuit(ctx, from.ID)
	for started := time.Now(); ; time.Sleep(10 * time.Millisecond) {
		if bs, _ := os.ReadFile(log); local.ReadyMarker.Match(bs) {
			break
		}
		if time.Since(started) > bootWait {
			b.Fatalf("the bare VM was not ready after %s", bootWait)
		}
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	args := append(d.args(to.ID, mt, ""), "-incoming", fmt.Sprintf("tcp:127.0.0.1:%d", port))
	if out, err := exec.Command(d.qemu, args...).CombinedOutput(); err != nil {
		b.Fatalf("bare qemu -incoming: %v %s", err, out)
	}
	defer d.ensureQuit(ctx, to.ID)
	c, err := qmp.Dial(ctx, d.sock(from.ID, "qmp.sock"))
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	if err := c.Execute(ctx, "migrate-set-parameters", map[string]any{"downtime-limit": 300}, nil); err != nil {
		b.Fatal(err)
	}
	if err := c.Execute(ctx, "migrate", map[string]any{"uri": fmt.Sprintf("tcp:127.0.0.1:%d", port)}, nil); err != nil {
		b.Fatal(err)
	}
	for {
		var mi migrationInfo
		if err := c.Execute(ctx, "query-migrate", nil, &mi); err != nil {
			b.Fatal(err)
		}
		switch mi.Status {
		case "completed":
			return mi.TotalTime, mi.Downtime
		case "failed", "cancelled":
			b.Fatalf("bare migration %s: %s", mi.Status, mi.ErrorDesc)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// bootWait bounds a benchmark's wait for a TCG guest to be ready (a
// failed boot ends the run instead of hanging it).
const bootWait = 3 * time.Minute
