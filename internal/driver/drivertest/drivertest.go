// Package drivertest is the conformance suite every driver passes: the
// lifecycle, idempotent stop and cleanup, errors for wrong states,
// recovery after an agent restart, and capabilities that match what the
// driver does (one that declares exec runs commands; one that does not
// says so in the words users see).
package drivertest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/kumocloud/kumo/api"
	"github.com/kumocloud/kumo/internal/driver"
)

// Factory makes a driver keeping its state in dir; called again with the
// same dir it must find what the first one left (an agent restart).
type Factory func(t *testing.T, dir string) driver.Driver

// Image is the image instances of the suite use (drivers that need real
// bytes get them by SHA256 through driver.Common.Images).
type Image struct{ Name, SHA256 string }

// Run runs the suite. Every test ends with nothing left: what Recover
// lists then is an error (and is stopped and cleaned up, so that the
// driver's own leftover checks, registered by its factory, see the rest).
func Run(t *testing.T, img Image, factory Factory) {
	newDriver := func(t *testing.T, dir string) driver.Driver {
		d := factory(t, dir)
		t.Cleanup(func() {
			c := context.Background()
			sts, err := d.Recover(c)
			if err != nil {
				t.Errorf("Recover after the test: %v", err)
			}
			for _, st := range sts {
				t.Errorf("instance %s (%s) left after the test", st.ID, st.State)
				d.Stop(c, st.ID, true)
				d.Cleanup(c, st.ID, false)
			}
		})
		return d
	}
	t.Run("Hosts", func(t *testing.T) { testHosts(t, newDriver(t, t.TempDir())) })
	t.Run("Lifecycle", func(t *testing.T) { testLifecycle(t, newDriver(t, t.TempDir()), img) })
	t.Run("Idempotent", func(t *testing.T) { testIdempotent(t, newDriver(t, t.TempDir()), img) })
	t.Run("WrongState", func(t *testing.T) { testWrongState(t, newDriver(t, t.TempDir()), img) })
	t.Run("Capabilities", func(t *testing.T) { testCapabilities(t, newDriver(t, t.TempDir()), img) })
	// The first driver of Recover is the agent that went away: only the one
	// after the restart must end with nothing.
	t.Run("Recover", func(t *testing.T) { testRecover(t, img, factory, newDriver) })
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return c
}

func spec(t *testing.T, d driver.Driver, img Image, id string) driver.Spec {
	hs, err := d.Hosts(ctx(t))
	if err != nil || len(hs) == 0 {
		t.Fatalf("Hosts: %v %v", hs, err)
	}
	return driver.Spec{ID: id, Project: "p", Name: id, Type: hs[0].Kinds[0], Host: hs[0].Name, Image: img.Name, ImageSHA256: img.SHA256, Size: api.Size{VCPUs: 1, MemoryMiB: 128, DiskGiB: 1}}
}

func want(t *testing.T, d driver.Driver, id string, st driver.State) {
	t.Helper()
	s, err := d.Status(ctx(t), id)
	if err != nil || s.State != st {
		t.Fatalf("Status(%s) = %+v, %v; want %s", id, s, err, st)
	}
}

func ok(t *testing.T, what string, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

func testHosts(t *testing.T, d driver.Driver) {
	hs, err := d.Hosts(ctx(t))
	ok(t, "Hosts", err)
	for _, h := range hs {
		if h.Name == "" || len(h.Kinds) == 0 || h.Capacity.VCPUs < 1 || h.Capacity.MemoryMiB < 1 || h.Attributes["ARCH"] == "" {
			t.Fatalf("host %+v lacks name, kinds, capacity or ARCH", h)
		}
	}
}

func testLifecycle(t *testing.T, d driver.Driver, img Image) {
	c := ctx(t)
	s := spec(t, d, img, "i-1")
	ok(t, "Prepare", d.Prepare(c, s))
	ok(t, "Start", d.Start(c, s))
	want(t, d, s.ID, driver.Running)
	ok(t, "Suspend", d.Suspend(c, s.ID))
	want(t, d, s.ID, driver.Suspended)
	ok(t, "Resume", d.Resume(c, s.ID))
	want(t, d, s.ID, driver.Running)
	ok(t, "Reboot", d.Reboot(c, s.ID))
	want(t, d, s.ID, driver.Running)
	ok(t, "Stop", d.Stop(c, s.ID, false))
	want(t, d, s.ID, driver.Stopped)
	ok(t, "Start after Stop", d.Start(c, s))
	want(t, d, s.ID, driver.Running)
	ok(t, "Save", d.Save(c, s.ID))
	want(t, d, s.ID, driver.Saved)
	ok(t, "Cleanup keeping the saved state", d.Cleanup(c, s.ID, true))
	ok(t, "Start from saved", d.Start(c, s))
	want(t, d, s.ID, driver.Running)
	ok(t, "Stop (force)", d.Stop(c, s.ID, true))
	ok(t, "Cleanup", d.Cleanup(c, s.ID, false))
	if _, err := d.Status(c, s.ID); !errors.Is(err, driver.ErrNotFound) {
		t.Fatalf("Status after Cleanup: %v, want ErrNotFound", err)
	}
}

func testIdempotent(t *testing.T, d driver.Driver, img Image) {
	c := ctx(t)
	s := spec(t, d, img, "i-2")
	ok(t, "Prepare", d.Prepare(c, s))
	ok(t, "Prepare again", d.Prepare(c, s))
	ok(t, "Start", d.Start(c, s))
	ok(t, "Start again", d.Start(c, s))
	ok(t, "Stop", d.Stop(c, s.ID, false))
	ok(t, "Stop again", d.Stop(c, s.ID, false))
	ok(t, "Cleanup", d.Cleanup(c, s.ID, false))
	ok(t, "Cleanup again", d.Cleanup(c, s.ID, false))
	ok(t, "Cleanup of an unknown instance", d.Cleanup(c, "never-was", false))
}

func testWrongState(t *testing.T, d driver.Driver, img Image) {
	c := ctx(t)
	s := spec(t, d, img, "i-3")
	if err := d.Start(c, s); err == nil {
		t.Fatal("Start before Prepare succeeded")
	}
	if err := d.Suspend(c, "never-was"); !errors.Is(err, driver.ErrNotFound) {
		t.Fatalf("Suspend of unknown: %v", err)
	}
	ok(t, "Prepare", d.Prepare(c, s))
	ok(t, "Start", d.Start(c, s))
	ok(t, "Stop", d.Stop(c, s.ID, true))
	if err := d.Resume(c, s.ID); !errors.Is(err, driver.ErrState) {
		t.Fatalf("Resume of a stopped instance: %v, want ErrState", err)
	}
	if err := d.Reboot(c, s.ID); !errors.Is(err, driver.ErrState) {
		t.Fatalf("Reboot of a stopped instance: %v, want ErrState", err)
	}
	ok(t, "Cleanup", d.Cleanup(c, s.ID, false))
}

func testRecover(t *testing.T, img Image, before, after Factory) {
	dir := t.TempDir()
	c := ctx(t)
	d := before(t, dir)
	a, b := spec(t, d, img, "i-a"), spec(t, d, img, "i-b")
	for _, s := range []driver.Spec{a, b} {
		ok(t, "Prepare", d.Prepare(c, s))
		ok(t, "Start", d.Start(c, s))
	}
	ok(t, "Suspend", d.Suspend(c, b.ID))
	ok(t, "Sync", d.Sync())
	// The agent restarts: a new driver on the same state.
	d2 := after(t, dir)
	sts, err := d2.Recover(c)
	ok(t, "Recover", err)
	got := map[string]driver.State{}
	for _, s := range sts {
		got[s.ID] = s.State
	}
	if got[a.ID] != driver.Running || got[b.ID] != driver.Suspended {
		t.Fatalf("Recover = %v; want i-a running, i-b suspended", got)
	}
	ok(t, "Resume after recover", d2.Resume(c, b.ID))
	for _, s := range []driver.Spec{a, b} {
		ok(t, "Stop", d2.Stop(c, s.ID, true))
		ok(t, "Cleanup", d2.Cleanup(c, s.ID, false))
	}
}

// capCheck is how the suite tries a capability: use is run when the
// driver declares it (on a running instance), and lack must fail when it
// does not, with the words users see.
type capCheck struct {
	c    driver.Capability
	use  func(c context.Context, d driver.Driver, id string) error
	lack func(d driver.Driver) error
	says string
}

var capChecks = []capCheck{
	{driver.CapExec, func(c context.Context, d driver.Driver, id string) error {
		ex, err := driver.Feature[driver.Execer](d)
		if err != nil {
			return err
		}
		var out strings.Builder
		code, err := ex.Exec(c, id, []string{"/bin/sh", "-c", "echo kumo-exec; exit 3"}, &out)
		if err == nil && (code != 3 || !strings.Contains(out.String(), "kumo-exec")) {
			err = fmt.Errorf("exit code %d, output %q; want 3 and kumo-exec", code, out.String())
		}
		return err
	}, lacks[driver.Execer], "cannot run commands inside an instance"},
	{driver.CapLogs, func(c context.Context, d driver.Driver, id string) error {
		lg, err := driver.Feature[driver.Logger](d)
		if err != nil {
			return err
		}
		if _, err := lg.Logs(c, id, 10); err != nil {
			return err
		}
		_, err = lg.Logs(c, "never-was", 10)
		if !errors.Is(err, driver.ErrNotFound) {
			return fmt.Errorf("logs of an unknown instance: %v, want ErrNotFound", err)
		}
		return nil
	}, lacks[driver.Logger], "keeps no console log"},
	{driver.CapConsole, func(c context.Context, d driver.Driver, id string) error {
		cs, err := driver.Feature[driver.Consoler](d)
		if err != nil {
			return err
		}
		// The user hangs up at once: the console (the type's default)
		// ends, without an error.
		_, err = cs.Console(c, id, "", hangUp{})
		return err
	}, lacks[driver.Consoler], "has no console"},
	{driver.CapSnapshot, func(c context.Context, d driver.Driver, id string) error {
		sn, err := driver.Feature[driver.Snapshotter](d)
		if err != nil {
			return err
		}
		var n counter
		if err := sn.Snapshot(c, id, &n); err != nil {
			return err
		}
		if n == 0 {
			return errors.New("an empty snapshot")
		}
		return nil
	}, lacks[driver.Snapshotter], "cannot snapshot disks"},
	{driver.CapHostHealth, func(c context.Context, d driver.Driver, id string) error {
		hh, err := driver.Feature[driver.HostHealth](d)
		if err != nil {
			return err
		}
		hs, err := d.Hosts(c)
		for _, h := range hs {
			if !hh.HostUp(h.Name) {
				return fmt.Errorf("host %s is down from the start", h.Name)
			}
		}
		return err
	}, lacks[driver.HostHealth], "cannot lose hosts"},
	// CapNetworks has no feature of its own: the agent's datapath wires
	// the ports (the agent's and e2e tests cover it).
}

// lacks is the error of a driver asked for feature F.
func lacks[F any](d driver.Driver) error {
	_, err := driver.Feature[F](d)
	return err
}

type counter int64

func (n *counter) Write(p []byte) (int, error) { *n += counter(len(p)); return len(p), nil }

func testCapabilities(t *testing.T, d driver.Driver, img Image) {
	c := ctx(t)
	caps := d.Capabilities()
	hs, err := d.Hosts(c)
	ok(t, "Hosts", err)
	kinds := map[string]bool{}
	for _, h := range hs {
		for _, k := range h.Kinds {
			kinds[k] = true
			if _, declared := caps[k]; !declared {
				t.Errorf("host %s runs %s instances, and Capabilities declares nothing for them", h.Name, k)
			}
		}
	}
	for k := range caps {
		if !kinds[k] {
			t.Errorf("Capabilities declares %s instances, which no host runs", k)
		}
	}
	s := spec(t, d, img, "i-caps-"+d.Name()) // drivers run side by side: cgroups are per id
	ok(t, "Prepare", d.Prepare(c, s))
	ok(t, "Start", d.Start(c, s))
	have := caps[s.Type]
	for _, cc := range capChecks {
		if have.Has(cc.c) {
			if err := cc.use(c, d, s.ID); err != nil {
				t.Errorf("the driver declares %s for %s instances, and: %v", cc.c, s.Type, err)
			}
			continue
		}
		err := cc.lack(d)
		if want := "the " + d.Name() + " driver " + cc.says; err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("the driver does not declare %s: %v, want an error saying %q", cc.c, err, want)
		}
	}
	ok(t, "Stop", d.Stop(c, s.ID, true))
	ok(t, "Cleanup", d.Cleanup(c, s.ID, false))
}

// hangUp is a user who leaves a console at once.
type hangUp struct{}

func (hangUp) Read([]byte) (int, error)       { return 0, io.EOF }
func (hangUp) Write(p []byte) (int, error)    { return len(p), nil }
func (hangUp) Resizes() <-chan driver.WinSize { return nil }
