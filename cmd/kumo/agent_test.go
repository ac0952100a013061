package main

import (
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"

	"github.com/kumocloud/kumo/internal/driver/container"
	"github.com/kumocloud/kumo/internal/driver/qemu"
	"github.com/kumocloud/kumo/internal/driver/sim"
)

// TestDriverFlags: the driver flags fill each listed driver's own
// configuration, and a bad list or setting is refused naming the flag.
func TestDriverFlags(t *testing.T) {
	parse := func(args ...string) *driverFlags {
		var d driverFlags
		f := pflag.NewFlagSet("t", pflag.ContinueOnError)
		d.register(f)
		if err := f.Parse(args); err != nil {
			t.Fatal(err)
		}
		return &d
	}
	cfgs, err := parse("--qemu-accel", "tcg", "--image-max-unpacked", "2", "--qemu-migrate-bandwidth", "3", "--sim-hosts", "9").configs("driver", "container,qemu")
	if err != nil {
		t.Fatal(err)
	}
	if q, ok := cfgs["qemu"].(qemu.Config); !ok || q.Accel != "tcg" || q.MaxUnpacked != 2<<30 || q.MigrateBandwidthMiB != 3 {
		t.Errorf("qemu's config: %#v", cfgs["qemu"])
	}
	if c, ok := cfgs["container"].(container.Config); !ok || c.MaxUnpacked != 2<<30 {
		t.Errorf("container's config: %#v", cfgs["container"])
	}
	if _, ok := cfgs["sim"]; ok || len(cfgs) != 2 {
		t.Errorf("configs of drivers not listed: %v", cfgs)
	}
	cfgs, err = parse("--sim-hosts", "9", "--sim-boot-delay", "2s", "--sim-prefix", "rack").configs("drivers", "sim")
	if s, ok := cfgs["sim"].(sim.Config); err != nil || !ok || s.Hosts != 9 || s.BootDelay != 2*time.Second || s.Prefix != "rack" || s.CPUs != sim.DefaultConfig().CPUs {
		t.Errorf("sim's config: %#v %v", cfgs["sim"], err)
	}
	for _, tc := range []struct {
		list string
		args []string
		says string
	}{
		{"sim,container", nil, `--driver "sim,container": sim runs alone`},
		{"lxc", nil, `--driver "lxc": use container (runc), qemu`},
		{"qemu", []string{"--qemu-accel", "hvf"}, `--qemu-accel "hvf"`},
		{"container", []string{"--image-max-unpacked", "-1"}, "--image-max-unpacked"},
		{"qemu", []string{"--qemu-migrate-bandwidth", "-1"}, "--qemu-migrate-bandwidth -1"},
		{"sim", []string{"--sim-fail-rate", "2"}, "--sim-fail-rate 2"},
	} {
		if _, err := parse(tc.args...).configs("driver", tc.list); err == nil || !strings.Contains(err.Error(), tc.says) {
			t.Errorf("--driver %s %v: %v, want %q", tc.list, tc.args, err, tc.says)
		}
	}
}
