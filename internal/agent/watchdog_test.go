package agent

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kumocloud/kumo/api"
	"github.com/kumocloud/kumo/internal/atomicfile"
	"github.com/kumocloud/kumo/internal/driver"
	"github.com/kumocloud/kumo/internal/driver/sim"
	"github.com/kumocloud/kumo/internal/store"
	"github.com/kumocloud/kumo/internal/volumes/pool"
	"golang.org/x/sys/unix"
)

// runningSim is a sim driver running instances ids on its host.
func runningSim(t *testing.T, ids ...string) *sim.Driver {
	t.Helper()
	ctx := context.Background()
	d, err := sim.New(ctx, driver.Common{StateDir: t.TempDir()}, sim.Config{Hosts: 1, Prefix: "w", CPUs: 8, MemoryMiB: 8192, DiskGiB: 100})
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range ids {
		s := driver.Spec{ID: id, Project: "p", Name: id, Type: api.TypeVM, Host: "w-0000", Size: api.Size{VCPUs: 1, MemoryMiB: 64}}
		if err := d.Prepare(ctx, s); err != nil {
			t.Fatal(err)
		}
		if err := d.Start(ctx, s); err != nil {
			t.Fatal(err)
		}
	}
	return d
}

func state(d driver.Driver, id string) driver.State {
	st, _ := d.Status(context.Background(), id)
	return st.State
}

// The watchdog waits for the agent to die, then for its grace to pass
// since its last recorded contact, and stops the HA instances it lists
// (only those), recording why; a newer contact makes it step aside.
func TestWatchdogFencesOnlyAfterTheAgentIsGone(t *testing.T) {
	dir := t.TempDir()
	d := runningSim(t, "ha1", "plain")
	write := func(st fenceFile) {
		if err := atomicfile.Write(fencePath(dir), store.MustJSON(st), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	// Contact long ago: only the agent's being alive holds the watchdog.
	write(fenceFile{LastContact: time.Now().Add(-time.Hour), HA: map[string]string{"ha1": "w-0000"}, GraceMillis: 1000})
	gone := make(chan struct{})
	done := make(chan error, 1)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	go func() {
		done <- Watchdog(ctx, func(context.Context) (driver.Driver, error) { return d, nil }, dir, gone, slog.New(slog.DiscardHandler))
	}()
	// While the agent lives, nothing happens, however old the contact.
	for i := 0; i < 20; i++ {
		if state(d, "ha1") != driver.Running {
			t.Fatal("the watchdog fenced while the agent lived")
		}
		time.Sleep(10 * time.Millisecond)
	}
	close(gone)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if state(d, "ha1") == driver.Running || state(d, "plain") != driver.Running {
		t.Fatalf("after the watchdog: ha1 %v, plain %v", state(d, "ha1"), state(d, "plain"))
	}
	st, err := readFenceFile(fencePath(dir))
	if err != nil || !strings.HasPrefix(st.Fenced["ha1"], api.SelfFenced) {
		t.Fatalf("fence.json after: %+v %v", st, err)
	}

	// A restarted agent reaches the server meanwhile: the watchdog leaves.
	dir2 := t.TempDir()
	dir = dir2 // write writes there now
	d2 := runningSim(t, "ha2")
	last := time.Now()
	write(fenceFile{LastContact: last, HA: map[string]string{"ha2": "w-0000"}, GraceMillis: 60000})
	gone2 := make(chan struct{})
	close(gone2)
	go func() {
		done <- Watchdog(ctx, func(context.Context) (driver.Driver, error) { return d2, nil }, dir2, gone2, slog.New(slog.DiscardHandler))
	}()
	// The restarted agent's contacts keep coming (each newer than any
	// the watchdog may have taken as the dead agent's last).
	for i := 1; ; i++ {
		select {
		case err := <-done:
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(10 * time.Millisecond):
			write(fenceFile{LastContact: last.Add(time.Duration(i) * time.Second), HA: map[string]string{"ha2": "w-0000"}, GraceMillis: 60000})
			continue
		}
		break
	}
	if state(d2, "ha2") != driver.Running {
		t.Fatal("the watchdog fenced although a restarted agent was in contact")
	}
	if _, err := os.Stat(fencePath(dir2)); err != nil {
		t.Fatal(err)
	}
}

// The watchdog also unmounts from the host the filesystem volumes of the
// HA instances it stopped (the server recreates them elsewhere, where
// their shared volumes are mounted), and drops those attachment records;
// the volumes of other instances stay mounted.
func TestWatchdogUnmountsFencedVolumes(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mounting needs root")
	}
	dir := t.TempDir()
	d := runningSim(t, "ha1", "plain")
	vols := filepath.Join(dir, "volumes")
	mounts := map[string]string{}
	att := map[string]attachment{}
	for _, id := range []string{"ha1", "plain"} {
		m := filepath.Join(vols, "mounts", "vol-"+id)
		if err := os.MkdirAll(m, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := unix.Mount("tmpfs", m, "tmpfs", 0, "size=1m"); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { pool.UnmountFS(m) })
		mounts[id] = m
		att["vol-"+id] = attachment{InstanceID: id, Type: api.TypeContainer, Mount: m}
	}
	if err := atomicfile.Write(filepath.Join(vols, "attachments.json"), store.MustJSON(att), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := atomicfile.Write(fencePath(dir), store.MustJSON(fenceFile{LastContact: time.Now().Add(-time.Hour), HA: map[string]string{"ha1": "w-0000"}, GraceMillis: 1000}), 0o600); err != nil {
		t.Fatal(err)
	}
	gone := make(chan struct{})
	close(gone)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := Watchdog(ctx, func(context.Context) (driver.Driver, error) { return d, nil }, dir, gone, slog.New(slog.DiscardHandler)); err != nil {
		t.Fatal(err)
	}
	if pool.IsMount(mounts["ha1"]) || !pool.IsMount(mounts["plain"]) {
		t.Fatalf("after the watchdog: ha1's volume mounted %v, plain's %v", pool.IsMount(mounts["ha1"]), pool.IsMount(mounts["plain"]))
	}
	b, err := os.ReadFile(filepath.Join(vols, "attachments.json"))
	if err != nil || strings.Contains(string(b), "vol-ha1") || !strings.Contains(string(b), "vol-plain") {
		t.Fatalf("the attachment records after: %s %v", b, err)
	}
}
