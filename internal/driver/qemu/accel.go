package qemu

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

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
	if err := probeBoot(ctx, bin, "kvm", k.Vmlinuz, initrd); err != nil {
		return "tcg", "KVM probe boot failed: " + err.Error()
	}
	return "kvm", "KVM probe boot reached the guest's ready line"
}

// probeBoot boots the kernel and initramfs under accel and waits for the
// ready line on the serial console.
func probeBoot(ctx context.Context, bin, accel, kernel, initrd string) error {
	dir, err := os.MkdirTemp("", "kumo-kvm-probe-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	console := filepath.Join(dir, "console.log")
	pc, cancel := context.WithTimeout(ctx, ProbeTimeout)
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
			return fmt.Errorf("no ready line within %s (console: %s)", ProbeTimeout, oneLine(b))
		case <-tick.C:
			if b, _ := os.ReadFile(console); local.ReadyMarker.Match(b) {
				return nil
			}
		}
	}
}
