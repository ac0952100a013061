package container

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/kumocloud/kumo/internal/driver"
)

// BenchmarkStartVsRunc measures, in one run, the driver's Prepare+Start of
// a container from a cached image against a bare 'runc run -d' of the same
// bundle on an already-mounted rootfs, and reports the ratio.
func BenchmarkStartVsRunc(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Skip("needs root")
	}
	sum, fetch := tiny(b)
	d, err := New(driver.Options{StateDir: b.TempDir(), FetchImage: fetch, HostName: "bench"})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	// Warm the image cache and keep one prepared bundle for bare runc.
	base := spec("bare", sum, 64, "")
	if err := d.Prepare(ctx, base); err != nil {
		b.Fatal(err)
	}
	var kumo, bare time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		s := spec(fmt.Sprintf("k%d", i), sum, 64, "")
		t0 := time.Now()
		if err := d.Prepare(ctx, s); err != nil {
			b.Fatal(err)
		}
		if err := d.Start(ctx, s); err != nil {
			b.Fatal(err)
		}
		kumo += time.Since(t0)
		d.Stop(ctx, s.ID, true)
		d.Cleanup(ctx, s.ID, false)

		id := fmt.Sprintf("bare%d", i)
		t0 = time.Now()
		log, _ := os.OpenFile(filepath.Join(d.dir(base.ID), "bare.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
		cmd := exec.Command(d.runc, "--root", filepath.Join(d.root, "runc"), "run", "--detach", "--bundle", d.dir(base.ID), id)
		cmd.Stdout, cmd.Stderr = log, log // as the driver does: the container keeps them
		err := cmd.Run()
		log.Close()
		if err != nil {
			b.Fatalf("bare runc: %v", err)
		}
		bare += time.Since(t0)
		d.runcCmd(ctx, "delete", "--force", id)
	}
	b.StopTimer()
	d.Cleanup(ctx, base.ID, false)
	b.ReportMetric(float64(kumo.Milliseconds())/float64(b.N), "kumo-ms/start")
	b.ReportMetric(float64(bare.Milliseconds())/float64(b.N), "runc-ms/start")
	b.ReportMetric(float64(kumo)/float64(bare), "ratio")
}
