package sim

import (
	"context"
	"strings"
	"testing"

	"github.com/kumocloud/kumo/internal/driver"
	"github.com/kumocloud/kumo/internal/driver/drivertest"
)

func TestConformance(t *testing.T) {
	drivertest.Run(t, drivertest.Image{Name: "any"}, func(t *testing.T, dir string) driver.Driver {
		d, err := New(driver.Options{StateDir: dir, SimHosts: 3})
		if err != nil {
			t.Fatal(err)
		}
		return d
	})
}

func TestFailureInjection(t *testing.T) {
	d, _ := New(driver.Options{SimHosts: 1, SimFailRate: 1})
	ctx := context.Background()
	s := driver.Spec{ID: "x", Host: d.HostName(0)}
	d.Prepare(ctx, s)
	if err := d.Start(ctx, s); err == nil || !strings.Contains(err.Error(), "simulated boot failure") {
		t.Fatalf("Start with fail rate 1: %v", err)
	}
	d.Crash(d.HostName(0), true)
	if d.HostUp(d.HostName(0)) {
		t.Fatal("crashed host is up")
	}
	if sts, _ := d.Recover(ctx); len(sts) != 0 {
		t.Fatalf("a crashed host's instances are reported: %v", sts)
	}
}
