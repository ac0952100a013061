package qemu

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/cgroups/v3"

	"github.com/kumocloud/kumo/api"
	"github.com/kumocloud/kumo/internal/driver"
	"github.com/kumocloud/kumo/internal/driver/drivertest"
	"github.com/kumocloud/kumo/internal/driver/local"
	"github.com/kumocloud/kumo/internal/rootfs"
	"github.com/kumocloud/kumo/internal/vmimage"
)

var (
	tinyOnce  sync.Once
	tinyBytes []byte
	tinyErr   error
)

// tinyVM builds (once per machine, cached) the tiny-vm image and serves it
// like the image service.
func tinyVM(t testing.TB) (string, func(context.Context, string) (io.ReadCloser, error)) {
	if _, err := exec.LookPath("qemu-system-x86_64"); err != nil {
		t.Skip("qemu-system-x86_64 is not installed (make test installs it)")
	}
	tinyOnce.Do(func() {
		var path string
		if path, tinyErr = vmimage.TinyVMCached(context.Background(), vmimage.DefaultCache, rootfs.Busybox); tinyErr == nil {
			tinyBytes, tinyErr = os.ReadFile(path)
		}
	})
	if tinyErr != nil {
		t.Fatal(tinyErr)
	}
	sum := sha256.Sum256(tinyBytes)
	return hex.EncodeToString(sum[:]), func(context.Context, string) (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(tinyBytes)), nil
	}
}

func newDriver(t testing.TB, dir string, fetch func(context.Context, string) (io.ReadCloser, error)) *Driver {
	if os.Geteuid() != 0 {
		t.Skip("VM cgroups need root; CI runs as root")
	}
	// A cgroup parent per state dir, as each machine has a cgroup tree of
	// its own: the two drivers of a migration test put the two QEMUs of a
	// move in two cgroups (one would share one vCPU's quota between them),
	// and a driver opened again on a dir finds its VMs' cgroups.
	sum := sha256.Sum256([]byte(dir))
	cg := local.Cgroups{Parent: "kumo-test-" + hex.EncodeToString(sum[:4])}
	t.Cleanup(cg.RemoveParent)
	d, err := New(context.Background(), driver.Common{StateDir: dir, Images: driver.ImageFunc(fetch), HostName: "testhost", CgroupParent: cg.Parent}, Config{Accel: "tcg", StopTimeout: 20 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestConformance(t *testing.T) {
	sum, fetch := tinyVM(t)
	drivertest.Run(t, drivertest.Image{Name: "tiny-vm", SHA256: sum}, func(t *testing.T, dir string) driver.Driver {
		d := newDriver(t, dir, fetch)
		t.Cleanup(func() { assertNoLeftovers(t, d) })
		return d
	})
}

// assertNoLeftovers: after the suite, no QEMU process or cgroup of this
// driver remains.
func assertNoLeftovers(t *testing.T, d *Driver) {
	out, _ := exec.Command("pgrep", "-f", d.root).Output()
	if s := strings.TrimSpace(string(out)); s != "" {
		t.Errorf("qemu processes left: %s", s)
		exec.Command("pkill", "-9", "-f", d.root).Run()
	}
	es, _ := os.ReadDir(filepath.Join(d.root, "instances"))
	if len(es) != 0 {
		t.Errorf("%d instance dirs left", len(es))
	}
}

func spec(id, sum string, mem int64, userData string) driver.Spec {
	return driver.Spec{ID: id, Project: "p", Name: id, Type: api.TypeVM, Host: "testhost", Image: "tiny-vm", ImageSHA256: sum,
		UserData: userData, Size: api.Size{VCPUs: 1, MemoryMiB: mem, DiskGiB: 1}}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	within(t, 2*time.Minute, what, cond)
}

// within waits until cond holds, checking every 100 ms, for up to d of
// wall-clock time (longer bounds for what a TCG guest on a loaded machine
// does slowly: booting took over a minute).
func within(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(d); !cond(); time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
	}
}

// ticks returns the numbers the guest's counter printed on its console.
func ticks(t *testing.T, d *Driver, id string) []int {
	b, _ := d.Logs(context.Background(), id, 1000)
	var out []int
	for _, l := range strings.Split(string(b), "\n") {
		// The console is shared with the guest's shell: a tick may follow
		// a prompt on the same line.
		if i := strings.LastIndex(l, "tick "); i >= 0 {
			var v int
			if _, err := fmt.Sscanf(l[i:], "tick %d", &v); err == nil {
				out = append(out, v)
			}
		}
	}
	return out
}

const counter = "#!/bin/sh\n(i=0; while :; do i=$((i+1)); echo \"tick $i\" >/dev/ttyS0; sleep 1; done) &\n"

// TestGuest: the seed reaches the guest (hostname, user-data), readiness
// is seen, a save/restore keeps the guest's memory (its counter goes on
// from where it was), a guest poweroff is POWEROFF-worthy and a killed
// QEMU is a crash, with reasons.
func TestGuest(t *testing.T) {
	sum, fetch := tinyVM(t)
	d := newDriver(t, t.TempDir(), fetch)
	t.Cleanup(func() { assertNoLeftovers(t, d) })
	ctx := context.Background()
	s := spec("vm-guest", sum, 128, counter)
	s.Name = "counter-vm"
	if err := d.Prepare(ctx, s); err != nil {
		t.Fatal(err)
	}
	if err := d.Start(ctx, s); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "ready", func() bool { st, _ := d.Status(ctx, s.ID); return st.Ready })
	if log, _ := d.Logs(ctx, s.ID, 100); !strings.Contains(string(log), "kumo: ready (counter-vm)") {
		t.Fatalf("the hostname from the seed is not applied: %s", log)
	}
	waitFor(t, "the counter to reach 3", func() bool { n := ticks(t, d, s.ID); return len(n) > 0 && n[len(n)-1] >= 3 })

	if err := d.Save(ctx, s.ID); err != nil {
		t.Fatal(err)
	}
	before := ticks(t, d, s.ID)
	last := before[len(before)-1]
	if st, _ := d.Status(ctx, s.ID); st.State != driver.Saved || d.pid(s.ID) != 0 {
		t.Fatalf("after Save: %+v, pid %d", st, d.pid(s.ID))
	}
	time.Sleep(2 * time.Second) // a cold boot would be counting by now
	if err := d.Start(ctx, s); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the counter to go on", func() bool { return len(ticks(t, d, s.ID)) >= len(before)+2 })
	after := ticks(t, d, s.ID)[len(before):]
	if after[0] != last+1 || after[1] != last+2 {
		t.Fatalf("after restore the counter printed %v after %d: the guest's memory was not kept", after, last)
	}
	if st, _ := d.Status(ctx, s.ID); !st.Ready || st.State != driver.Running {
		t.Fatalf("a restored guest: %+v", st)
	}

	// A QEMU killed from outside is a crash, not a poweroff.
	syscall.Kill(d.pid(s.ID), syscall.SIGKILL)
	waitFor(t, "the crash to be seen", func() bool { st, _ := d.Status(ctx, s.ID); return st.State == driver.Crashed })
	if st, _ := d.Status(ctx, s.ID); !strings.Contains(st.Reason, "qemu exited unexpectedly") || !strings.Contains(st.Reason, "tick") {
		t.Fatalf("crash reason %q lacks the console tail", st.Reason)
	}

	// A guest that powers itself off: Stopped with the reason, QEMU gone.
	p := spec("vm-off", sum, 128, "#!/bin/sh\n(sleep 1; poweroff -f) &\n")
	if err := d.Prepare(ctx, p); err != nil {
		t.Fatal(err)
	}
	if err := d.Start(ctx, p); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the guest to power off", func() bool { st, _ := d.Status(ctx, p.ID); return st.State == driver.Stopped })
	if st, _ := d.Status(ctx, p.ID); st.Reason != "the guest powered itself off" || d.pid(p.ID) != 0 {
		t.Fatalf("after a guest poweroff: %+v pid %d", st, d.pid(p.ID))
	}
	for _, id := range []string{s.ID, p.ID} {
		if err := d.Cleanup(ctx, id, false); err != nil {
			t.Fatal(err)
		}
	}
}

// TestBadStarts: QEMU refusing to start, and a guest that never gets
// ready, are reported with their reasons; nothing is left behind.
func TestBadStarts(t *testing.T) {
	sum, fetch := tinyVM(t)
	dir := t.TempDir()
	d, err := New(context.Background(), driver.Common{StateDir: dir, Images: driver.ImageFunc(fetch), HostName: "testhost"}, Config{Accel: "tcg", ReadyTimeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { assertNoLeftovers(t, d) })
	ctx := context.Background()

	if err := d.Prepare(ctx, spec("vm-small", sum, 64, "")); err == nil || !strings.Contains(err.Error(), "at least 128 MiB") {
		t.Fatalf("a 64 MiB VM: %v", err)
	}
	huge := spec("vm-huge", sum, 128, "")
	huge.Size.VCPUs = 100000
	if err := d.Prepare(ctx, huge); err != nil {
		t.Fatal(err)
	}
	if err := d.Start(ctx, huge); err == nil || !strings.Contains(err.Error(), "qemu did not start") || !strings.Contains(err.Error(), "CPUs") {
		t.Fatalf("Start with 100000 vCPUs: %v", err)
	}
	if st, _ := d.Status(ctx, huge.ID); st.State != driver.Stopped || d.pid(huge.ID) != 0 {
		t.Fatalf("after a failed start: %+v", st)
	}
	d.Cleanup(ctx, huge.ID, false)

	stuck := spec("vm-stuck", sum, 128, "#!/bin/sh\nsleep 600\n")
	if err := d.Prepare(ctx, stuck); err != nil {
		t.Fatal(err)
	}
	if err := d.Start(ctx, stuck); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "ready=false with a reason", func() bool { st, _ := d.Status(ctx, stuck.ID); return st.ReadyReason != "" })
	if st, _ := d.Status(ctx, stuck.ID); st.Ready || st.State != driver.Running || !strings.Contains(st.ReadyReason, "did not say it was ready within 2s") {
		t.Fatalf("a guest that never gets ready: %+v", st)
	}
	d.Stop(ctx, stuck.ID, true)
	d.Cleanup(ctx, stuck.ID, false)
}

// TestDiskImagePrologue: a vm-disk image becomes the backing file of the
// instance's overlay, with the format qemu-img found, grown to the larger
// of the image's virtual size and the flavor's disk.
func TestDiskImagePrologue(t *testing.T) {
	tinyVM(t) // skips without qemu
	for _, tc := range []struct {
		name, format string
		virtual      string
		wantGiB      int64
	}{
		{"qcow2 larger than the flavor", "qcow2", "3G", 3},
		{"raw smaller than the flavor", "raw", "16M", 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			img := filepath.Join(t.TempDir(), "base")
			if out, err := exec.Command("qemu-img", "create", "-q", "-f", tc.format, img, tc.virtual).CombinedOutput(); err != nil {
				t.Fatalf("%v %s", err, out)
			}
			b, _ := os.ReadFile(img)
			sum := sha256.Sum256(b)
			d := newDriver(t, t.TempDir(), func(context.Context, string) (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil })
			s := spec("vm-disk", hex.EncodeToString(sum[:]), 128, "")
			ctx := context.Background()
			if err := d.Prepare(ctx, s); err != nil {
				t.Fatal(err)
			}
			defer d.Cleanup(ctx, s.ID, false)
			out, err := exec.Command("qemu-img", "info", "--output=json", d.path(s.ID, "disk.qcow2")).Output()
			if err != nil {
				t.Fatal(err)
			}
			var info struct {
				VirtualSize   int64  `json:"virtual-size"`
				Backing       string `json:"backing-filename"`
				BackingFormat string `json:"backing-filename-format"`
			}
			json.Unmarshal(out, &info)
			if info.VirtualSize != tc.wantGiB<<30 || info.BackingFormat != tc.format || !strings.HasSuffix(info.Backing, "disk."+tc.format) {
				t.Fatalf("overlay %+v; want %d GiB on a %s base", info, tc.wantGiB, tc.format)
			}
		})
	}
}

// TestSnapshot: a running VM's disk becomes an image (the guest runs on);
// a VM booted from that image finds what the first one wrote on its disk.
func TestSnapshot(t *testing.T) {
	sum, fetch := tinyVM(t)
	var snap []byte
	snapSum := ""
	d := newDriver(t, t.TempDir(), func(ctx context.Context, s string) (io.ReadCloser, error) {
		if s == snapSum {
			return io.NopCloser(bytes.NewReader(snap)), nil
		}
		return fetch(ctx, s)
	})
	t.Cleanup(func() { assertNoLeftovers(t, d) })
	ctx := context.Background()
	a := spec("vm-a", sum, 128, "#!/bin/sh\necho kumo-disk-marker | dd of=/dev/vda conv=notrunc 2>/dev/null\nsync\n")
	if err := d.Prepare(ctx, a); err != nil {
		t.Fatal(err)
	}
	defer d.Cleanup(ctx, a.ID, false)
	if err := d.Start(ctx, a); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "vm-a ready", func() bool { st, _ := d.Status(ctx, a.ID); return st.Ready })
	var buf bytes.Buffer
	if err := d.Snapshot(ctx, a.ID, &buf); err != nil {
		t.Fatal(err)
	}
	if st, _ := d.Status(ctx, a.ID); st.State != driver.Running {
		t.Fatalf("after the snapshot vm-a is %s", st.State)
	}
	if _, err := vmimage.CheckKernelImage(ctx, bytes.NewReader(buf.Bytes()), t.TempDir(), -1); err != nil {
		t.Fatalf("the snapshot is not a valid vm-kernel image: %v", err)
	}
	snap = buf.Bytes()
	h := sha256.Sum256(snap)
	snapSum = hex.EncodeToString(h[:])
	b := spec("vm-b", snapSum, 128, "#!/bin/sh\necho \"found: $(head -c 16 /dev/vda)\" >/dev/ttyS0\n")
	if err := d.Prepare(ctx, b); err != nil {
		t.Fatal(err)
	}
	defer d.Cleanup(ctx, b.ID, false)
	if err := d.Start(ctx, b); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "vm-b to read its disk", func() bool {
		log, _ := d.Logs(ctx, b.ID, 100)
		return strings.Contains(string(log), "found: kumo-disk-marker")
	})
}

// TestSwap: a flavor's swap becomes a swap disk the guest uses.
func TestSwap(t *testing.T) {
	sum, fetch := tinyVM(t)
	d := newDriver(t, t.TempDir(), fetch)
	t.Cleanup(func() { assertNoLeftovers(t, d) })
	ctx := context.Background()
	s := spec("vm-swap", sum, 128, "#!/bin/sh\necho \"swap-kib: $(awk 'NR==2 {print $3}' /proc/swaps)\" >/dev/ttyS0\n")
	s.Size.SwapMiB = 64
	if err := d.Prepare(ctx, s); err != nil {
		t.Fatal(err)
	}
	defer d.Cleanup(ctx, s.ID, false)
	if err := d.Start(ctx, s); err != nil {
		t.Fatal(err)
	}
	var kib int
	waitFor(t, "the guest to report its swap", func() bool {
		log, _ := d.Logs(ctx, s.ID, 100)
		i := strings.Index(string(log), "swap-kib: ")
		return i >= 0 && func() bool { _, err := fmt.Sscanf(string(log[i:]), "swap-kib: %d", &kib); return err == nil }()
	})
	if kib < 60000 || kib > 64*1024 {
		t.Fatalf("the guest swaps on %d KiB; want the flavor's 64 MiB", kib)
	}
}

// TestVMCgroup: a VM's QEMU is in its cgroup in every hierarchy the host
// has (cpu and cpuacct mounted apart here), so its CPU time reaches
// Status and it is held to its vCPUs' CPU time and a memory bound; the
// cgroup goes with the VM.
func TestVMCgroup(t *testing.T) {
	sum, fetch := tinyVM(t)
	d := newDriver(t, t.TempDir(), fetch)
	t.Cleanup(func() { assertNoLeftovers(t, d) })
	ctx := context.Background()
	s := spec("vm-cgroup", sum, 128, "")
	s.Size.VCPUs = 2
	if err := d.Prepare(ctx, s); err != nil {
		t.Fatal(err)
	}
	defer d.Cleanup(ctx, s.ID, false)
	defer d.Stop(ctx, s.ID, true)
	if err := d.Start(ctx, s); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "CPU time in Status", func() bool { st, _ := d.Status(ctx, s.ID); return st.CPUSeconds > 0 })
	wantMem := (128 + QEMUOverheadMiB + min(1024, local.HostFacts(d.root).MemoryMiB/8)) << 20
	read := func(p string) string {
		b, err := os.ReadFile(filepath.Join("/sys/fs/cgroup", p))
		if err != nil {
			t.Errorf("the VM's cgroup: %v", err)
		}
		return strings.TrimSpace(string(b))
	}
	cg := d.cgroups.Path(s.ID)
	if cgroups.Mode() == cgroups.Unified {
		if got := read(cg + "/cpu.max"); got != "200000 100000" {
			t.Errorf("cpu.max %q, want 2 vCPUs' worth", got)
		}
		if got := read(cg + "/memory.max"); got != fmt.Sprint(wantMem) {
			t.Errorf("memory.max %s, want %d", got, wantMem)
		}
	} else {
		if got := read("cpu" + cg + "/cpu.cfs_quota_us"); got != "200000" {
			t.Errorf("cpu.cfs_quota_us %s, want 2 vCPUs' worth", got)
		}
		if got := read("memory" + cg + "/memory.limit_in_bytes"); got != fmt.Sprint(wantMem) {
			t.Errorf("memory.limit_in_bytes %s, want %d", got, wantMem)
		}
		if procs := read("cpuacct" + cg + "/cgroup.procs"); procs != fmt.Sprint(d.pid(s.ID)) {
			t.Errorf("cpuacct cgroup holds %q, not QEMU (%d)", procs, d.pid(s.ID))
		}
	}
	// QEMU runs under its seccomp filter (mode 2), which forbids new
	// processes: a guest that escaped emulation could not exec a shell.
	if st, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", d.pid(s.ID))); err != nil || !strings.Contains(string(st), "Seccomp:\t2") {
		t.Errorf("QEMU is not under a seccomp filter (%v): %s", err, st)
	}
	d.Stop(ctx, s.ID, true)
	if err := d.Cleanup(ctx, s.ID, false); err != nil {
		t.Fatal(err)
	}
	for _, h := range []string{"cpu", "cpuacct", "memory", "unified", ""} {
		if _, err := os.Stat(filepath.Join("/sys/fs/cgroup", h, cg)); err == nil {
			t.Errorf("the VM's cgroup outlived it in %s", filepath.Join("/sys/fs/cgroup", h))
		}
	}
}

// TestOldCacheAdopted: a host upgraded from a kumo whose qemu driver kept
// its own image cache (STATE_DIR/images/<sha256>/disk...) with a VM
// running from it: the shared cache adopts the entry without fetching it
// again, the VM runs on, and once stopped it starts again from the
// adopted files (its record's paths follow them).
func TestOldCacheAdopted(t *testing.T) {
	sum, fetch := tinyVM(t)
	base := t.TempDir()
	dir := filepath.Join(base, "qemu")
	old := newDriver(t, dir, fetch)
	ctx := context.Background()
	s := spec("vm-upgraded", sum, 128, "")
	if err := old.Prepare(ctx, s); err != nil {
		t.Fatal(err)
	}
	defer old.Cleanup(ctx, s.ID, false)
	if err := old.Start(ctx, s); err != nil {
		t.Fatal(err)
	}
	defer old.Stop(ctx, s.ID, true)
	// What the older kumo left: the entry's files at its top, and the
	// VM's record naming them there.
	entry := filepath.Join(dir, "images", sum)
	tmp := filepath.Join(dir, "images", ".old")
	if err := os.Rename(filepath.Join(entry, imageForm), tmp); err != nil {
		t.Fatal(err)
	}
	os.RemoveAll(entry)
	os.Rename(tmp, entry)
	rec := old.inst.Path(s.ID, "meta.json")
	b, _ := os.ReadFile(rec)
	os.WriteFile(rec, bytes.ReplaceAll(b, []byte(entry+"/"+imageForm+"/"), []byte(entry+"/")), 0o600)
	if !bytes.Contains(b, []byte(entry)) {
		t.Fatalf("the record names no file of the cache: %s", b)
	}

	fetches := 0
	counted := driver.ImageFunc(func(ctx context.Context, sum string) (io.ReadCloser, error) { fetches++; return fetch(ctx, sum) })
	d, err := New(ctx, driver.Common{StateDir: dir, Images: counted, HostName: "testhost", Shared: &driver.Shared{Dir: base}, CgroupParent: old.cgroups.Parent}, Config{Accel: "tcg", StopTimeout: 20 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { assertNoLeftovers(t, d) })
	if _, err := os.Stat(filepath.Join(dir, "images")); !os.IsNotExist(err) {
		t.Errorf("the old cache is still there: %v", err)
	}
	if st, err := d.Status(ctx, s.ID); err != nil || st.State != driver.Running {
		t.Fatalf("after the upgrade: %+v %v", st, err)
	}
	if err := d.Stop(ctx, s.ID, true); err != nil {
		t.Fatal(err)
	}
	if err := d.Start(ctx, s); err != nil {
		t.Fatalf("a start from the adopted cache: %v", err)
	}
	m, _ := d.readMeta(s.ID)
	if want := filepath.Join(base, "images", sum, imageForm) + "/"; !strings.HasPrefix(m.Kernel, want) || fetches != 0 {
		t.Errorf("the VM boots %s (want from %s), after %d fetches", m.Kernel, want, fetches)
	}
	if err := d.Stop(ctx, s.ID, true); err != nil {
		t.Fatal(err)
	}
	if err := d.Cleanup(ctx, s.ID, false); err != nil {
		t.Fatal(err)
	}
}
