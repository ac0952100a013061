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
// bundle on an already-mounted rootfs, and reports the ratio; and, apart,
// what making and mounting the container's disk (mkfs.ext4, loop mount)
// takes of the driver's time.
func BenchmarkStartVsRunc(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Skip("needs root")
	}
	sum, fetch := tiny(b)
	d, err := New(context.Background(), driver.Common{StateDir: b.TempDir(), Images: driver.ImageFunc(fetch), HostName: "bench"}, Config{})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	// Warm the image cache and keep one prepared bundle for bare runc.
	base := spec("bare", sum, 64, "")
	if err := d.Prepare(ctx, base); err != nil {
		b.Fatal(err)
	}
	var kumo, bare, disk time.Duration
	scratch := "disk-scratch"
	if err := os.MkdirAll(d.dir(scratch), 0o700); err != nil {
		b.Fatal(err)
	}
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

		t0 = time.Now()
		if err := d.makeDisk(ctx, scratch, 1); err != nil {
			b.Fatal(err)
		}
		if err := d.mountDisk(scratch); err != nil {
			b.Fatal(err)
		}
		disk += time.Since(t0)
		d.unmountAll(scratch)
		os.RemoveAll(d.dir(scratch))
		os.MkdirAll(d.dir(scratch), 0o700)
	}
	b.StopTimer()
	os.RemoveAll(d.dir(scratch))
	d.Cleanup(ctx, base.ID, false)
	b.ReportMetric(float64(kumo.Milliseconds())/float64(b.N), "kumo-ms/start")
	b.ReportMetric(float64(bare.Milliseconds())/float64(b.N), "runc-ms/start")
	b.ReportMetric(float64(kumo)/float64(bare), "ratio")
	b.ReportMetric(float64(disk.Milliseconds())/float64(b.N), "disk-ms/start")
}
