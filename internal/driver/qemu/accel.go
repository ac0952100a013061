package qemu

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/kumocloud/kumo/internal/atomicfile"
	"github.com/kumocloud/kumo/internal/driver/local"
	"github.com/kumocloud/kumo/internal/rootfs"
	"github.com/kumocloud/kumo/internal/vmimage"
)

// ProbeTimeout bounds the KVM probe boot (tiny-vm boots in well under a
// second under a working KVM).
var ProbeTimeout = 15 * time.Second

// ResolveAccel turns "auto" into kvm or tcg by really booting tiny-vm
// under KVM: some hosts expose a /dev/kvm that cannot boot a stock
// kernel (a nested, paravirtual KVM hangs after the BIOS), so the device
// node proves nothing. It returns the accel and why it was chosen.
func ResolveAccel(ctx context.Context, bin, want string) (string, string) {
	switch want {
	case "kvm", "tcg":
		return want, "asked for " + want
	case "", "auto":
	default:
		return want, ""
	}
	if _, err := os.Stat("/dev/kvm"); err != nil {
		return "tcg", "no /dev/kvm"
	}
	k, initrd, err := vmimage.TinyPartsCached(ctx, vmimage.DefaultCache, rootfs.Busybox)
	if err != nil {
		return "tcg", "KVM not probed (no probe kernel: " + err.Error() + ")"
	}
	if err := probeBoot(ctx, bin, "kvm", k.Vmlinuz, initrd, ProbeTimeout); err != nil {
		return "tcg", "KVM probe boot failed: " + err.Error()
	}
	return "kvm", "KVM probe boot reached the guest's ready line"
}

// probeVerdict is a probe's result as kept in the driver's state dir.
type probeVerdict struct {
	BootID   string    `json:"boot_id"`
	Binary   string    `json:"binary"`
	BinMTime time.Time `json:"binary_mtime"`
	Accel    string    `json:"accel"`
	Reason   string    `json:"reason"`
}

// ResolveAccelCached is ResolveAccel for "auto", its verdict kept in dir
// until the host reboots or QEMU changes: an agent restart must not wait
// for another probe boot (up to ProbeTimeout, long enough for its hosts
// to be seen offline).
func ResolveAccelCached(ctx context.Context, dir, bin, want string) (string, string) {
	if want != "" && want != "auto" {
		return ResolveAccel(ctx, bin, want)
	}
	bootID, _ := os.ReadFile("/proc/sys/kernel/random/boot_id")
	st, err := os.Stat(bin)
	if err != nil || len(bootID) == 0 {
		return ResolveAccel(ctx, bin, want)
	}
	now := probeVerdict{BootID: strings.TrimSpace(string(bootID)), Binary: bin, BinMTime: st.ModTime().UTC()}
	path := filepath.Join(dir, "accel-probe.json")
	var kept probeVerdict
	if b, err := os.ReadFile(path); err == nil && json.Unmarshal(b, &kept) == nil &&
		kept.BootID == now.BootID && kept.Binary == now.Binary && kept.BinMTime.Equal(now.BinMTime) && kept.Accel != "" {
		return kept.Accel, kept.Reason + " (probed at this boot)"
	}
	now.Accel, now.Reason = ResolveAccel(ctx, bin, want)
	if ctx.Err() == nil {
		if b, err := json.Marshal(now); err == nil {
			if os.MkdirAll(dir, 0o700) == nil {
				atomicfile.Write(path, b, 0o600)
			}
		}
	}
	return now.Accel, now.Reason
}

// probeBoot boots the kernel and initramfs under accel and waits for the
// ready line on the serial console.
func probeBoot(ctx context.Context, bin, accel, kernel, initrd string, timeout time.Duration) error {
	dir, err := os.MkdirTemp("", "kumo-kvm-probe-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	console := filepath.Join(dir, "console.log")
	pc, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(pc, bin, "-machine", "pc,accel="+accel, "-m", "128", "-nodefaults", "-no-user-config", "-display", "none",
		"-kernel", kernel, "-initrd", initrd, "-append", vmimage.TinyCmdline, "-serial", "file:"+console, "-no-reboot")
	out := &strings.Builder{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		return err
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer func() { cmd.Process.Kill(); <-exited }()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case err := <-exited:
			exited <- err
			return fmt.Errorf("qemu exited (%v): %s", err, oneLine([]byte(out.String())))
		case <-pc.Done():
			b, _ := os.ReadFile(console)
			return fmt.Errorf("no ready line within %s (console: %s)", timeout, oneLine(b))
		case <-tick.C:
			if b, _ := os.ReadFile(console); local.ReadyMarker.Match(b) {
				return nil
			}
		}
	}
}
