package container

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kumocloud/kumo/api"
	"github.com/kumocloud/kumo/internal/driver"
	"github.com/kumocloud/kumo/internal/driver/drivertest"
	"github.com/kumocloud/kumo/internal/rootfs"
)

// tiny builds the tiny rootfs and serves it like the image service.
func tiny(t testing.TB) (string, func(context.Context, string) (io.ReadCloser, error)) {
	var buf bytes.Buffer
	if err := rootfs.Build(&buf, rootfs.Busybox); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(buf.Bytes())
	b := buf.Bytes()
	return hex.EncodeToString(sum[:]), func(context.Context, string) (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil }
}

func newDriver(t *testing.T, dir string, fetch func(context.Context, string) (io.ReadCloser, error)) *Driver {
	if os.Geteuid() != 0 {
		t.Skip("runc containers need root; CI runs as root")
	}
	d, err := New(context.Background(), driver.Common{StateDir: dir, Images: driver.ImageFunc(fetch), HostName: "testhost"}, Config{})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestConformance(t *testing.T) {
	sum, fetch := tiny(t)
	drivertest.Run(t, drivertest.Image{Name: "tiny", SHA256: sum}, func(t *testing.T, dir string) driver.Driver {
		d := newDriver(t, dir, fetch)
		t.Cleanup(func() { assertNoLeftovers(t, d) })
		return d
	})
}

// assertNoLeftovers: after the suite, no runc container, mount or cgroup
// of this driver remains.
func assertNoLeftovers(t *testing.T, d *Driver) {
	ctx := context.Background()
	noMountsOrLoops(t, d)
	out, _ := d.runcCmd(ctx, "list", "-q")
	if strings.TrimSpace(string(out)) != "" {
		t.Errorf("runc containers left: %s", out)
	}
}

func spec(id, sum string, mem int64, userData string) driver.Spec {
	return driver.Spec{ID: id, Name: id, Project: "p", Type: "container", Host: "testhost", Image: "tiny", ImageSHA256: sum, UserData: userData, Size: api.Size{VCPUs: 1, MemoryMiB: mem, DiskGiB: 1}}
}

// TestContainerFacts: hostname and user-data reach the container, 100
// containers would share one image copy (two do here), the memory limit
// is the cgroup's, and terminating leaves no cgroup behind.
func TestContainerFacts(t *testing.T) {
	sum, fetch := tiny(t)
	d := newDriver(t, t.TempDir(), fetch)
	ctx := context.Background()
	// The hog offers itself to the OOM killer first: the kernel otherwise
	// weighs processes by size, and under load init can lose that race.
	hog := "echo 1000 >/proc/self/oom_score_adj; x=$(head -c 67108864 /dev/zero | tr '\\000' a); echo survived\n"
	a, b := spec("c-a", sum, 16, hog), spec("c-b", sum, 64, "hostname > /var/lib/kumo/seen\n")
	for _, s := range []driver.Spec{a, b} {
		if err := d.Prepare(ctx, s); err != nil {
			t.Fatal(err)
		}
		if err := d.Start(ctx, s); err != nil {
			t.Fatal(err)
		}
	}
	defer func() {
		for _, s := range []driver.Spec{a, b} {
			d.Stop(ctx, s.ID, true)
			d.Cleanup(ctx, s.ID, false)
		}
		if _, err := os.Stat("/sys/fs/cgroup/memory/kumo/" + a.ID); err == nil {
			t.Error("the memory cgroup outlived the container")
		}
	}()
	seen := filepath.Join(d.dir(b.ID), "rootfs/var/lib/kumo/seen")
	waitFor(t, "user-data ran", func() bool { s, _ := os.ReadFile(seen); return strings.TrimSpace(string(s)) == "c-b" })
	// The kernel kills inside the container's memory cgroup (which process
	// it picks is its choice), and the cgroup never exceeds its limit.
	oomKills := func() string {
		b, _ := os.ReadFile("/sys/fs/cgroup/memory/kumo/" + a.ID + "/memory.oom_control")
		for _, l := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(l, "oom_kill "); ok {
				return v
			}
		}
		return ""
	}
	waitFor(t, "an OOM kill in the container's cgroup", func() bool { k := oomKills(); return k != "" && k != "0" })
	if peak, _ := os.ReadFile("/sys/fs/cgroup/memory/kumo/" + a.ID + "/memory.max_usage_in_bytes"); strings.TrimSpace(string(peak)) != "16777216" {
		t.Errorf("cgroup peak %q, want the 16 MiB limit", peak)
	}
	if st, err := d.Status(ctx, a.ID); err != nil || st.State != driver.Running {
		t.Errorf("the container itself (init) should still run: %+v %v", st, err)
	}
	// CPU time is read from the container's cgroups.
	waitFor(t, "CPU time from the cgroups", func() bool { st, _ := d.Status(ctx, b.ID); return st.CPUSeconds > 0 })
	imgs, _ := os.ReadDir(d.cache.Dir)
	if len(imgs) != 1 {
		t.Errorf("%d image copies for two containers of one image", len(imgs))
	}
	if log, _ := os.ReadFile(filepath.Join(d.dir(b.ID), "console.log")); !strings.Contains(string(log), "kumo: ready") {
		t.Errorf("console log: %q", log)
	}
}

// TestImageCacheEviction: with space short, cached images no instance
// uses go, oldest first; one in use stays.
func TestImageCacheEviction(t *testing.T) {
	sum, fetch := tiny(t)
	d := newDriver(t, t.TempDir(), fetch)
	ctx := context.Background()
	s := spec("c-e", sum, 64, "")
	if err := d.Prepare(ctx, s); err != nil {
		t.Fatal(err)
	}
	defer d.Cleanup(ctx, s.ID, false)
	stale := filepath.Join(d.cache.Dir, strings.Repeat("a", 64))
	os.MkdirAll(filepath.Join(stale, "rootfs"), 0o700)
	d.cache.MinFree = 1 << 62 // pretend the disk is full
	d.cache.Evict("")
	if _, err := os.Stat(stale); !os.IsNotExist(err) {
		t.Error("an unused cached image was kept while space is short")
	}
	if _, err := os.Stat(filepath.Join(d.cache.Dir, sum)); err != nil {
		t.Error("the image an instance uses was evicted")
	}
}

// TestOldCacheAdopted: a host upgraded from a kumo whose container driver
// kept its own image cache (STATE_DIR/images/<sha256>/rootfs) with a
// container running over it: the shared cache adopts the rootfs without
// fetching it again, the container runs on, and after a reboot it starts
// again over the adopted rootfs.
func TestOldCacheAdopted(t *testing.T) {
	sum, fetch := tiny(t)
	base := t.TempDir()
	dir := filepath.Join(base, "container")
	old := newDriver(t, dir, fetch) // alone: its cache is STATE_DIR/images, the old layout
	ctx := context.Background()
	s := spec("c-upgraded", sum, 64, "")
	if err := old.Prepare(ctx, s); err != nil {
		t.Fatal(err)
	}
	defer old.Cleanup(ctx, s.ID, false)
	if err := old.Start(ctx, s); err != nil {
		t.Fatal(err)
	}
	defer old.Stop(ctx, s.ID, true)
	os.Remove(filepath.Join(old.cache.Dir, sum, "blob")) // an old entry had only the rootfs

	fetches := 0
	counted := driver.ImageFunc(func(ctx context.Context, sum string) (io.ReadCloser, error) { fetches++; return fetch(ctx, sum) })
	d, err := New(ctx, driver.Common{StateDir: dir, Images: counted, HostName: "testhost", Shared: &driver.Shared{Dir: base}}, Config{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "images")); !os.IsNotExist(err) || d.cache.Dir != filepath.Join(base, "images") {
		t.Errorf("the old cache is still there (%v), or the cache is %s", err, d.cache.Dir)
	}
	var out strings.Builder
	if code, err := d.Exec(ctx, s.ID, []string{"cat", "/etc/hostname"}, &out); err != nil || code != 0 || out.String() != s.Name+"\n" {
		t.Fatalf("the running container after the upgrade: %d %v %q", code, err, out.String())
	}
	if err := d.Stop(ctx, s.ID, true); err != nil {
		t.Fatal(err)
	}
	if err := d.unmountAll(s.ID); err != nil { // as a reboot of the host does
		t.Fatal(err)
	}
	if err := d.Start(ctx, s); err != nil {
		t.Fatalf("a start over the adopted rootfs: %v", err)
	}
	if st, err := d.Status(ctx, s.ID); err != nil || st.State != driver.Running || fetches != 0 {
		t.Fatalf("after a restart: %+v %v, %d fetches", st, err, fetches)
	}
	d.Stop(ctx, s.ID, true)
	if err := d.Cleanup(ctx, s.ID, false); err != nil {
		t.Fatal(err)
	}
	assertNoLeftovers(t, d)
}
