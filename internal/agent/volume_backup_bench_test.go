package agent

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/kumocloud/kumo/api"
	"github.com/kumocloud/kumo/internal/driver"
	"github.com/kumocloud/kumo/internal/driver/qemu"
	"github.com/kumocloud/kumo/internal/qmp"
	"github.com/kumocloud/kumo/internal/rootfs"
	"github.com/kumocloud/kumo/internal/vmimage"
	"github.com/kumocloud/kumo/internal/volumes/pool"
)

// gzipServer keeps chunks as the server does (volumes.PutChunk): each
// checked against its hash, gzip-compressed, written to its own file and
// synced; a manifest is answered with the chunks it lacks.
type gzipServer struct {
	dir          string
	sent, stored int64
}

func (s *gzipServer) BackupManifest(_ context.Context, _ string, m api.BackupManifest) (api.BackupMissing, error) {
	out := api.BackupMissing{Missing: []string{}}
	for _, c := range m.Chunks {
		if _, err := os.Stat(filepath.Join(s.dir, c)); c != "" && err != nil {
			out.Missing = append(out.Missing, c)
		}
	}
	return out, nil
}

func (s *gzipServer) BackupChunk(_ context.Context, _, sum string, data []byte) error {
	h := sha256.Sum256(data)
	if hex.EncodeToString(h[:]) != sum {
		return errors.New("bad chunk")
	}
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	zw.Write(data)
	zw.Close()
	f, err := os.Create(filepath.Join(s.dir, sum))
	if err != nil {
		return err
	}
	defer f.Close()
	f.Write(buf.Bytes())
	s.sent++
	s.stored += int64(buf.Len())
	return f.Sync()
}

func (s *gzipServer) RestoreManifest(context.Context, string, int64, int64) (api.BackupManifest, error) {
	return api.BackupManifest{}, errors.New("not here")
}

func (s *gzipServer) RestoreChunk(context.Context, string, string) (io.ReadCloser, error) {
	return nil, errors.New("not here")
}

var qmpArg = regexp.MustCompile(`unix:([^,\x00]+/qmp\.sock)`)

// BenchmarkVolumeBackup measures the backup of a 1 GiB volume full of
// random bytes attached to a running VM (tiny-vm, TCG), as the agent
// makes it (the consistent copy, reading and hashing, the chunks sent to
// a server that compresses and syncs each as kumo's does; the HTTP hop
// is left out): the first (full) backup; an incremental after a 1%
// change (ten 1 MiB writes at random places, through QEMU as the
// guest's writes go) with the dirty bitmap; and one after another 1%
// change without it (the agent's base removed: the whole volume is
// copied, read and hashed, only the changed chunks sent, as every
// backup was before bitmaps). Reported: MiB/s of the volume's size.
//
//	go test -run '^$' -bench VolumeBackup -benchtime 1x ./internal/agent
func BenchmarkVolumeBackup(b *testing.B) {
	if _, err := exec.LookPath("qemu-system-x86_64"); err != nil || os.Geteuid() != 0 {
		b.Skip("needs qemu-system-x86_64 and root (CI has both)")
	}
	ctx := context.Background()
	img, err := vmimage.TinyVMCached(ctx, vmimage.DefaultCache, rootfs.Busybox)
	if err != nil {
		b.Fatal(err)
	}
	tiny, _ := os.ReadFile(img)
	h := sha256.Sum256(tiny)
	dir := b.TempDir()
	d, err := qemu.New(ctx, driver.Common{StateDir: filepath.Join(dir, "qemu"), HostName: "h",
		Images: driver.ImageFunc(func(context.Context, string) (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(tiny)), nil })},
		qemu.Config{Accel: "tcg", StopTimeout: 10 * time.Second})
	if err != nil {
		b.Fatal(err)
	}
	const gib = 1 << 30
	volID := "0badc0de-0000-4000-8000-000000000001"
	pv := pool.Volume{ID: volID, Format: pool.Qcow2, SizeGiB: 1}
	j := newVolumeJob(nil, nil, d, nil, filepath.Join(dir, "volumes"), slog.New(slog.NewTextHandler(io.Discard, nil)))
	src := j.localPool().Source(pv)
	os.MkdirAll(filepath.Dir(src), 0o700)
	random := filepath.Join(dir, "random.raw")
	if out, err := exec.Command("dd", "if=/dev/urandom", "of="+random, "bs=4M", "count=256", "status=none").CombinedOutput(); err != nil {
		b.Fatalf("dd: %v %s", err, out)
	}
	if out, err := exec.Command("qemu-img", "convert", "-f", "raw", "-O", "qcow2", random, src).CombinedOutput(); err != nil {
		b.Fatalf("qemu-img convert: %v %s", err, out)
	}
	os.Remove(random)
	v := driver.Volume{ID: volID, Format: "qcow2", Source: src, Device: "vdb"}
	s := driver.Spec{ID: "bk-vm", Project: "p", Name: "bk-vm", Type: api.TypeVM, Host: "h", Image: "tiny-vm", ImageSHA256: hex.EncodeToString(h[:]),
		Size: api.Size{VCPUs: 1, MemoryMiB: 128, DiskGiB: 1}, Volumes: []driver.Volume{v}}
	if err := d.Prepare(ctx, s); err != nil {
		b.Fatal(err)
	}
	defer d.Cleanup(ctx, s.ID, false)
	if err := d.Start(ctx, s); err != nil {
		b.Fatal(err)
	}
	defer d.Stop(ctx, s.ID, true)
	j.att[volID] = attachment{InstanceID: s.ID, Type: api.TypeVM, Volume: v, Backend: pv}

	// The 1% change goes through QEMU, on the disk's own block backend.
	pid, _ := os.ReadFile(filepath.Join(dir, "qemu", "instances", s.ID, "qemu.pid"))
	cmdline, _ := os.ReadFile("/proc/" + string(bytes.TrimSpace(pid)) + "/cmdline")
	m := qmpArg.FindSubmatch(cmdline)
	if m == nil {
		b.Fatalf("no QMP socket in %q", cmdline)
	}
	change := func() {
		c, err := qmp.Dial(ctx, string(m[1]))
		if err != nil {
			b.Fatal(err)
		}
		defer c.Close()
		dev := "/machine/peripheral/voldev-" + strings.ReplaceAll(volID, "-", "")[:20] + "/virtio-backend"
		for i := 0; i < 10; i++ {
			var out string
			cmd := fmt.Sprintf("qemu-io -d %s \"write -P %d %d 1M\"", dev, rand.IntN(255)+1, rand.Int64N(gib>>20)<<20)
			if err := c.Execute(ctx, "human-monitor-command", map[string]any{"command-line": cmd}, &out); err != nil || bytes.Contains([]byte(out), []byte("rror")) {
				b.Fatalf("%s: %v %s", cmd, err, out)
			}
		}
	}
	var full, incr, scan time.Duration
	var incrSent, scanSent int64
	backup := func(srv *gzipServer, id string) time.Duration {
		j.bk = srv
		t0 := time.Now()
		cp := filepath.Join(j.dir, "tmp", "backup-"+id+".qcow2")
		os.MkdirAll(filepath.Dir(cp), 0o700)
		t, err := j.backupCopy(ctx, j.localPool(), pv, volID, id, cp)
		if err != nil {
			b.Fatal(err)
		}
		copied := time.Since(t0)
		err = j.sendBackup(ctx, id, cp, pool.Qcow2, t)
		if t != nil {
			b.Logf("%s: incremental %v, %d chunks changed; copy %v, all %v", id, t.copy.Incremental, len(t.copy.Changed), copied, time.Since(t0))
		}
		if t != nil {
			j.tracked(ctx, volID, id, t, err)
		}
		os.Remove(cp)
		if err != nil {
			b.Fatal(err)
		}
		return time.Since(t0)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		srv := &gzipServer{dir: filepath.Join(dir, fmt.Sprintf("chunks%d", i))}
		os.MkdirAll(srv.dir, 0o700)
		os.Remove(j.basePath(volID))
		full += backup(srv, fmt.Sprintf("0badbac1-0000-4000-8000-%012d", i))
		change()
		n := srv.sent
		incr += backup(srv, fmt.Sprintf("0badbac2-0000-4000-8000-%012d", i))
		incrSent += srv.sent - n
		change()
		os.Remove(j.basePath(volID))
		n = srv.sent
		scan += backup(srv, fmt.Sprintf("0badbac3-0000-4000-8000-%012d", i))
		scanSent += srv.sent - n
		os.RemoveAll(srv.dir)
	}
	b.StopTimer()
	mibs := func(d time.Duration) float64 { return float64(b.N) * 1024 / d.Seconds() }
	b.ReportMetric(mibs(full), "full-MiB/s")
	b.ReportMetric(mibs(incr), "incr-bitmap-MiB/s")
	b.ReportMetric(mibs(scan), "incr-scan-MiB/s")
	b.ReportMetric(float64(full.Milliseconds())/float64(b.N), "full-ms")
	b.ReportMetric(float64(incr.Milliseconds())/float64(b.N), "incr-bitmap-ms")
	b.ReportMetric(float64(scan.Milliseconds())/float64(b.N), "incr-scan-ms")
	b.ReportMetric(float64(incrSent)/float64(b.N), "incr-bitmap-chunks")
	b.ReportMetric(float64(scanSent)/float64(b.N), "incr-scan-chunks")
}
