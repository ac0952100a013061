package sim

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kumocloud/kumo/internal/driver"
	"github.com/kumocloud/kumo/internal/driver/drivertest"
)

func TestConformance(t *testing.T) {
	drivertest.Run(t, drivertest.Image{Name: "any"}, func(t *testing.T, dir string) driver.Driver {
		d, err := New(context.Background(), driver.Common{StateDir: dir}, Config{Hosts: 3})
		if err != nil {
			t.Fatal(err)
		}
		return d
	})
}

func TestFailureInjection(t *testing.T) {
	ctx := context.Background()
	d, _ := New(ctx, driver.Common{}, Config{Hosts: 1, FailRate: 1})
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

// TestConfig: bad settings are refused naming the flag; zero ones take
// the defaults.
func TestConfig(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		cfg  Config
		says string
	}{
		{Config{Hosts: -1}, "--sim-hosts -1"},
		{Config{FailRate: 1.5}, "--sim-fail-rate 1.5"},
		{Config{CPUs: -2}, "--sim-cpus -2"},
		{Config{BootDelay: -time.Second}, "--sim-boot-delay -1s"},
		{Config{Prefix: "Rack_1"}, `--sim-prefix "Rack_1"`},
	} {
		if _, err := New(ctx, driver.Common{}, tc.cfg); err == nil || !strings.Contains(err.Error(), tc.says) {
			t.Errorf("New(%+v) = %v, want an error naming %s", tc.cfg, err, tc.says)
		}
	}
	d, err := New(ctx, driver.Common{}, Config{Prefix: "rack"})
	if err != nil {
		t.Fatal(err)
	}
	hs, _ := d.Hosts(ctx)
	if def := DefaultConfig(); len(hs) != def.Hosts || hs[0].Name != "rack-0000" || hs[0].Capacity.VCPUs != def.CPUs || hs[0].Capacity.MemoryMiB != def.MemoryMiB || hs[0].Capacity.DiskGiB != def.DiskGiB {
		t.Errorf("hosts with the defaults: %+v", hs)
	}
	// The registry hands the driver its own config, and refuses another's.
	if d, err := driver.New(ctx, "sim", driver.Common{}, Config{Hosts: 2}); err != nil || len(must(d.Hosts(ctx))) != 2 {
		t.Errorf("driver.New(sim, 2 hosts): %v", err)
	}
	if _, err := driver.New(ctx, "sim", driver.Common{}, other{}); err == nil || !strings.Contains(err.Error(), "sim.Config") {
		t.Errorf("driver.New(sim) with another driver's config: %v", err)
	}
}

type other struct{}

func (other) Validate() error { return nil }

func must[T any](v T, _ error) T { return v }

// TestJournalKeepsEveryChange: what a Sync wrote is what a restart finds,
// whether it went to the journal or into a new snapshot, and a journal
// line cut short by a crash (never synced) is not applied.
func TestJournalKeepsEveryChange(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	d, err := New(ctx, driver.Common{StateDir: dir}, Config{Hosts: 1})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]driver.State{}
	for i := 0; i < 2500; i++ {
		id := fmt.Sprintf("i%04d", i%1700)
		switch {
		case i%7 == 3:
			d.Cleanup(ctx, id, false)
			delete(want, id)
		default:
			s := driver.Spec{ID: id, Type: "vm", Host: d.HostName(0)}
			if err := d.Prepare(ctx, s); err != nil {
				t.Fatal(err)
			}
			want[id] = driver.Prepared
			if i%2 == 0 {
				if err := d.Start(ctx, s); err != nil {
					t.Fatal(err)
				}
				want[id] = driver.Running
			}
		}
		if i%10 == 0 {
			if err := d.Sync(); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := d.Sync(); err != nil {
		t.Fatal(err)
	}
	// A crash mid-append leaves half a line.
	f, _ := os.OpenFile(filepath.Join(dir, journalFile), os.O_APPEND|os.O_WRONLY, 0)
	f.Write([]byte(`{"id":"torn","instance":{"spec":`))
	f.Close()
	got, err := Instances(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Fatalf("a restart finds %d instances, want %d", len(got), len(want))
	}
	for id, st := range want {
		if got[id].State != st {
			t.Fatalf("%s is %s after a restart, want %s", id, got[id].State, st)
		}
	}
	if fi, err := os.Stat(filepath.Join(dir, journalFile)); err != nil || fi.Size() > 1<<20 {
		t.Fatalf("the journal is never compacted: %v %v", fi, err)
	}
}

// TestRunningGuestIsReady: a simulated guest says it is ready once it
// runs - after its boot delay - and only while it runs, in Status and in
// Recover alike (the agent reads both).
func TestRunningGuestIsReady(t *testing.T) {
	ctx := context.Background()
	d, err := New(ctx, driver.Common{}, Config{Hosts: 1, BootDelay: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	s := driver.Spec{ID: "g", Host: d.HostName(0)}
	ready := func(when string, want bool) {
		t.Helper()
		st, err := d.Status(ctx, s.ID)
		if err != nil || st.Ready != want {
			t.Fatalf("%s: Status says %+v, %v; want ready %v", when, st, err, want)
		}
		sts, _ := d.Recover(ctx)
		if len(sts) != 1 || sts[0].Ready != want {
			t.Fatalf("%s: Recover says %+v; want ready %v", when, sts, want)
		}
	}
	d.Prepare(ctx, s)
	ready("prepared", false)
	if err := d.Start(ctx, s); err != nil {
		t.Fatal(err)
	}
	ready("running", true)
	d.Suspend(ctx, s.ID)
	ready("suspended", false)
	d.Resume(ctx, s.ID)
	ready("resumed", true)
	d.Stop(ctx, s.ID, true)
	ready("stopped", false)
}
