package qemu

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/kumocloud/kumo/internal/driver"
	"github.com/kumocloud/kumo/internal/driver/local"
)

// BenchmarkBootVsQemu measures, in one run, the driver's Prepare+Start of
// tiny-vm (to RUNNING: QEMU runs the guest; to ready: the guest's
// readiness line) against the bare qemu-system-x86_64 command with the
// same arguments, started and watched for the same line, and reports the
// ratios. Acceleration: whatever this machine's probe picks.
func BenchmarkBootVsQemu(b *testing.B) {
	sum, fetch := tinyVM(b)
	d := newDriver(b, b.TempDir(), fetch)
	ctx := context.Background()
	base := spec("bare", sum, 256, "")
	if err := d.Prepare(ctx, base); err != nil { // warms the image cache
		b.Fatal(err)
	}
	m, _ := d.readMeta(base.ID)
	args := d.args(base.ID, m, "")
	var running, ready, bare time.Duration
	var rss int64
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		s := spec(fmt.Sprintf("k%d", i), sum, 256, "")
		t0 := time.Now()
		if err := d.Prepare(ctx, s); err != nil {
			b.Fatal(err)
		}
		if err := d.Start(ctx, s); err != nil {
			b.Fatal(err)
		}
		running += time.Since(t0)
		for limit := time.Now().Add(2 * time.Minute); ; {
			st, _ := d.Status(ctx, s.ID)
			if st.Ready {
				rss += st.MemoryMiB
				break
			}
			if time.Now().After(limit) {
				b.Fatalf("kumo's guest not ready after 2 minutes")
			}
			time.Sleep(5 * time.Millisecond)
		}
		ready += time.Since(t0)
		d.Stop(ctx, s.ID, true)
		d.Cleanup(ctx, s.ID, false)

		log := d.path(base.ID, "console.log")
		os.Remove(log)
		os.MkdirAll(d.sock(base.ID, ""), 0o700)
		t0 = time.Now()
		// QEMU does not daemonize (its sandbox forbids the fork): it runs
		// beside the benchmark, and exits when ensureQuit asks it to.
		var out bytes.Buffer
		cmd := exec.Command(d.qemu, args...)
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Start(); err != nil {
			b.Fatalf("bare qemu: %v", err)
		}
		exited := make(chan error, 1)
		go func() { exited <- cmd.Wait() }()
		deadline := time.After(2 * time.Minute)
		for {
			if bs, _ := os.ReadFile(log); local.ReadyMarker.Match(bs) {
				break
			}
			select {
			case err := <-exited:
				b.Fatalf("bare qemu exited before its guest was ready: %v %s", err, out.Bytes())
			case <-deadline:
				cmd.Process.Kill()
				b.Fatalf("bare qemu's guest not ready after 2 minutes")
			case <-time.After(5 * time.Millisecond):
			}
		}
		bare += time.Since(t0)
		d.ensureQuit(ctx, base.ID)
		<-exited
	}
	b.StopTimer()
	d.Cleanup(ctx, base.ID, false)
	n := float64(b.N)
	b.ReportMetric(float64(running.Milliseconds())/n, "kumo-running-ms")
	b.ReportMetric(float64(ready.Milliseconds())/n, "kumo-ready-ms")
	b.ReportMetric(float64(bare.Milliseconds())/n, "qemu-ready-ms")
	b.ReportMetric(float64(ready)/float64(bare), "ratio")
	b.ReportMetric(float64(rss)/n, "guest-MiB")
}

// BenchmarkSaveRestore measures the stop/start round trip of a running
// 256 MiB tiny-vm: its whole state to a file and back (Save, then Start).
func BenchmarkSaveRestore(b *testing.B) {
	sum, fetch := tinyVM(b)
	d := newDriver(b, b.TempDir(), fetch)
	ctx := context.Background()
	s := spec("sr", sum, 256, "")
	if err := d.Prepare(ctx, s); err != nil {
		b.Fatal(err)
	}
	if err := d.Start(ctx, s); err != nil {
		b.Fatal(err)
	}
	defer d.Cleanup(ctx, s.ID, false)
	for st, _ := d.Status(ctx, s.ID); !st.Ready; st, _ = d.Status(ctx, s.ID) {
		time.Sleep(10 * time.Millisecond)
	}
	var save, restore time.Duration
	var size int64
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		if err := d.Save(ctx, s.ID); err != nil {
			b.Fatal(err)
		}
		save += time.Since(t0)
		if fi, err := os.Stat(d.path(s.ID, "state.bin")); err == nil {
			size += fi.Size()
		}
		t0 = time.Now()
		if err := d.Start(ctx, s); err != nil {
			b.Fatal(err)
		}
		restore += time.Since(t0)
		if st, _ := d.Status(ctx, s.ID); st.State != driver.Running {
			b.Fatalf("after restore: %+v", st)
		}
	}
	b.StopTimer()
	n := float64(b.N)
	b.ReportMetric(float64(save.Milliseconds())/n, "save-ms")
	b.ReportMetric(float64(restore.Milliseconds())/n, "restore-ms")
	b.ReportMetric(float64(size>>20)/n, "state-MiB")
}
