package qemu

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

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
