package qemu

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kumocloud/kumo/internal/driver"
	"github.com/kumocloud/kumo/internal/rootfs"
	"github.com/kumocloud/kumo/internal/vmimage"
)

// TestProbe: the probe boot tells a kernel that reaches the guest's ready
// line from one that does not, and auto never picks an accel that failed.
func TestProbe(t *testing.T) {
	tinyVM(t) // skips without qemu
	ctx := context.Background()
	k, initrd, err := vmimage.TinyPartsCached(ctx, vmimage.DefaultCache, rootfs.Busybox)
	if err != nil {
		t.Fatal(err)
	}
	// The probe's own bound (ProbeTimeout) is for production, where a KVM
	// that hangs must be told quickly; here a TCG boot on a busy machine
	// may take long, and the verdict must not depend on it.
	const patient = 5 * time.Minute
	if err := probeBoot(ctx, "qemu-system-x86_64", "tcg", k.Vmlinuz, initrd, patient); err != nil {
		t.Fatalf("a TCG probe boot of tiny-vm: %v", err)
	}
	// No initramfs: the kernel panics (panic=-1 and -no-reboot end QEMU).
	if err := probeBoot(ctx, "qemu-system-x86_64", "tcg", k.Vmlinuz, os.DevNull, patient); err == nil {
		t.Fatal("a boot that never reaches the ready line passed the probe")
	}
	accel, reason := ResolveAccel(ctx, "qemu-system-x86_64", "auto")
	t.Logf("auto on this machine: %s (%s)", accel, reason)
	if accel == "kvm" {
		if err := probeBoot(ctx, "qemu-system-x86_64", "kvm", k.Vmlinuz, initrd, patient); err != nil {
			t.Fatalf("auto chose kvm but a KVM boot fails: %v", err)
		}
	} else if reason == "" || !strings.Contains(reason, "kvm") && !strings.Contains(reason, "KVM") {
		t.Fatalf("auto chose %s without saying why KVM was not used: %q", accel, reason)
	}
	if a, _ := ResolveAccel(ctx, "qemu-system-x86_64", "tcg"); a != "tcg" {
		t.Fatalf("an explicit tcg resolved to %s", a)
	}
}

// TestProbeVerdictKept: the verdict of "auto" is kept in the state dir
// and reused while the host has not rebooted and QEMU has not changed.
func TestProbeVerdictKept(t *testing.T) {
	dir := t.TempDir()
	bin, err := exec.LookPath("qemu-system-x86_64")
	if err != nil {
		t.Skip("qemu-system-x86_64 is not installed (make test installs it)")
	}
	st, _ := os.Stat(bin)
	boot, _ := os.ReadFile("/proc/sys/kernel/random/boot_id")
	kept := probeVerdict{BootID: strings.TrimSpace(string(boot)), Binary: bin, BinMTime: st.ModTime().UTC(), Accel: "tcg", Reason: "kept verdict"}
	b, _ := json.Marshal(kept)
	os.WriteFile(filepath.Join(dir, "accel-probe.json"), b, 0o600)
	if a, r := ResolveAccelCached(context.Background(), dir, bin, "auto"); a != "tcg" || !strings.Contains(r, "kept verdict") {
		t.Errorf("the kept verdict was not used: %s (%s)", a, r)
	}
	// Another boot: probed again (and kept anew).
	kept.BootID = "another-boot"
	b, _ = json.Marshal(kept)
	os.WriteFile(filepath.Join(dir, "accel-probe.json"), b, 0o600)
	if _, r := ResolveAccelCached(context.Background(), dir, bin, "auto"); strings.Contains(r, "kept verdict") {
		t.Errorf("a verdict of another boot was used: %s", r)
	}
	var now probeVerdict
	b, _ = os.ReadFile(filepath.Join(dir, "accel-probe.json"))
	if json.Unmarshal(b, &now); now.BootID != strings.TrimSpace(string(boot)) || now.Accel == "" {
		t.Errorf("the new verdict was not kept: %+v", now)
	}
}

// TestProbeStopsWithItsContext: an agent (or server) stopped while its
// qemu driver probes KVM stops the probe: New ends with the context's
// error, the probe's QEMU is gone, and no verdict is kept (the next start
// probes again).
func TestProbeStopsWithItsContext(t *testing.T) {
	tinyVM(t) // skips without qemu
	if _, err := os.Stat("/dev/kvm"); err != nil {
		t.Skip("no /dev/kvm: the qemu driver probes nothing here")
	}
	if _, _, err := vmimage.TinyPartsCached(context.Background(), vmimage.DefaultCache, rootfs.Busybox); err != nil {
		t.Fatal(err)
	}
	// The probe boots from a temp dir: this test's own, so that its QEMU
	// is told from other tests' probes.
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	probing := func() bool {
		procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
		for _, p := range procs {
			if b, _ := os.ReadFile(p); strings.Contains(string(b), tmp) && strings.Contains(string(b), "accel=kvm") {
				return true
			}
		}
		return false
	}
	state := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		_, err := New(ctx, driver.Common{StateDir: state, HostName: "testhost"}, Config{Accel: "auto"})
		done <- err
	}()
	seen := false
	for !seen {
		select {
		case err := <-done:
			t.Skipf("the probe ended before it could be stopped (KVM works here): %v", err)
		case <-time.After(20 * time.Millisecond):
			seen = probing()
		}
	}
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("New stopped during the probe: %v, want the context's error", err)
		}
	case <-time.After(5 * time.Minute): // only so that a hang is told
		t.Fatal("New went on after its context ended")
	}
	if probing() {
		t.Error("the probe's QEMU outlived New")
	}
	if _, err := os.Stat(filepath.Join(state, "accel-probe.json")); err == nil {
		t.Error("a verdict of a probe cut short was kept")
	}
}
