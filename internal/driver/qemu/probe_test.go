package qemu

import (
	"context"
	"os"
	"strings"
	"testing"

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
	if err := probeBoot(ctx, "qemu-system-x86_64", "tcg", k.Vmlinuz, initrd); err != nil {
		t.Fatalf("a TCG probe boot of tiny-vm: %v", err)
	}
	// No initramfs: the kernel panics (panic=-1 and -no-reboot end QEMU).
	if err := probeBoot(ctx, "qemu-system-x86_64", "tcg", k.Vmlinuz, os.DevNull); err == nil {
		t.Fatal("a boot that never reaches the ready line passed the probe")
	}
	accel, reason := ResolveAccel(ctx, "qemu-system-x86_64", "auto")
	t.Logf("auto on this machine: %s (%s)", accel, reason)
	if accel == "kvm" {
		if err := probeBoot(ctx, "qemu-system-x86_64", "kvm", k.Vmlinuz, initrd); err != nil {
			t.Fatalf("auto chose kvm but a KVM boot fails: %v", err)
		}
	} else if reason == "" || !strings.Contains(reason, "kvm") && !strings.Contains(reason, "KVM") {
		t.Fatalf("auto chose %s without saying why KVM was not used: %q", accel, reason)
	}
	if a, _ := ResolveAccel(ctx, "qemu-system-x86_64", "tcg"); a != "tcg" {
		t.Fatalf("an explicit tcg resolved to %s", a)
	}
}
