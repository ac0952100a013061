package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/kumocloud/kumo/api"
	"github.com/kumocloud/kumo/internal/atomicfile"
	"github.com/kumocloud/kumo/internal/driver"
)

// Self-fencing (docs/ha.md). The server recreates an HA instance on
// another host when its host has been lost longer than the fence timeout;
// before that, the host's agent must have stopped its copy, or it would
// run twice. So an agent that has not reached its server for longer than
// its fence grace stops (force) every HA instance it holds and keeps
// stopping any that runs again while the outage lasts - Proxmox's
// watchdog, without the reboot. What it holds, when it last reached the
// server and what it fenced are kept in fence.json in its state dir, so a
// restarted agent that cannot reach the server fences before anything
// else (it starts counting from the last contact it recorded, not from
// its start).
//
// When the server is back, one of two things happens. The server has
// recreated the instance elsewhere: the agent's complete assignment list
// no longer names it, and the housekeeping sweep cleans up the fenced
// copy (the old host never wins). Or it has not: the agent reports the
// instance POWEROFF with a reason starting with api.SelfFenced, and the
// server's HA controller starts it again - the server decides, always.
//
// A killed agent fences nothing itself: its watchdog (watchdog.go), a
// process of its own that outlives it, does.

// fenceFile is fence.json.
type fenceFile struct {
	// LastContact is the agent's last heartbeat the server answered.
	LastContact time.Time `json:"last_contact"`
	// HA are the HA instances on the agent's hosts (id -> host).
	HA map[string]string `json:"ha"`
	// Fenced are those it stopped, with the reason it reports.
	Fenced map[string]string `json:"fenced,omitempty"`
	// GraceMillis is the agent's fence grace (the watchdog reads it).
	GraceMillis int64 `json:"grace_ms"`
}

// fencer keeps an agent's HA instances from outliving its contact with
// the server.
type fencer struct {
	grace time.Duration
	d     driver.Driver
	path  string
	log   *slog.Logger

	mu    sync.Mutex
	state fenceFile
	// release lets go of what a fenced, stopped instance holds on the
	// host beyond its process (the volume job's host mounts of its
	// volumes: releaseFenced); called at every check while it is fenced.
	release func(ctx context.Context, id string)
	// saved is when fence.json was last written.
	saved time.Time
}

// newFencer loads fence.json (grace 0: no self-fencing, and nothing kept).
func newFencer(d driver.Driver, stateDir string, grace time.Duration, log *slog.Logger) (*fencer, error) {
	f := &fencer{grace: grace, d: d, path: fencePath(stateDir), log: log,
		state: fenceFile{HA: map[string]string{}, Fenced: map[string]string{}, GraceMillis: grace.Milliseconds()}}
	if grace <= 0 {
		return f, nil
	}
	st, err := readFenceFile(f.path)
	if err != nil {
		return nil, err
	}
	// Without a file (first start) the agent never reached its server and
	// holds nothing.
	f.state.HA, f.state.Fenced, f.state.LastContact = st.HA, st.Fenced, st.LastContact
	return f, nil
}

func fencePath(stateDir string) string { return filepath.Join(stateDir, "fence.json") }

// readFenceFile reads fence.json (empty maps when there is none).
func readFenceFile(path string) (fenceFile, error) {
	st := fenceFile{}
	b, err := os.ReadFile(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return st, err
	default:
		if err := json.Unmarshal(b, &st); err != nil {
			return st, fmt.Errorf("%s: %w", path, err)
		}
	}
	if st.HA == nil {
		st.HA = map[string]string{}
	}
	if st.Fenced == nil {
		st.Fenced = map[string]string{}
	}
	return st, nil
}

func (f *fencer) enabled() bool { return f != nil && f.grace > 0 }

// saveLocked writes fence.json; called with mu held.
func (f *fencer) saveLocked() {
	b, _ := json.Marshal(f.state)
	if err := atomicfile.Write(f.path, b, 0o600); err != nil {
		f.log.Error("fencing: keeping what the agent holds", "err", err)
		return
	}
	f.saved = time.Now()
}

// contact says the server answered now.
func (f *fencer) contact() {
	if !f.enabled() {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.state.LastContact = time.Now().UTC()
	// Written only while it matters (track writes it with the first HA
	// instance), at most every grace/4: a few seconds lost only fence
	// sooner.
	if len(f.state.HA) > 0 && time.Since(f.saved) >= f.grace/4 {
		f.saveLocked()
	}
}

// track follows an assignment: an HA instance that holds resources on the
// agent's hosts is fenced in an outage; one the server started again is
// no longer fenced.
func (f *fencer) track(as api.Assignment) {
	if !f.enabled() {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	host, had := f.state.HA[as.ID]
	want := as.HA && as.State.OnHost()
	_, fenced := f.state.Fenced[as.ID]
	restarted := fenced && (as.State == api.StateProlog || as.State == api.StateBoot)
	if want == had && (!want || host == as.Host) && !restarted {
		return
	}
	if want {
		f.state.HA[as.ID] = as.Host
	} else {
		delete(f.state.HA, as.ID)
	}
	if restarted || !want {
		delete(f.state.Fenced, as.ID)
	}
	f.saveLocked()
}

// forget drops an instance that left the host.
func (f *fencer) forget(id string) {
	if !f.enabled() {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	_, a := f.state.HA[id]
	_, b := f.state.Fenced[id]
	if a || b {
		delete(f.state.HA, id)
		delete(f.state.Fenced, id)
		f.saveLocked()
	}
}

// setRelease sets what lets go of a fenced instance's host resources.
func (f *fencer) setRelease(release func(ctx context.Context, id string)) {
	if !f.enabled() {
		return
	}
	f.mu.Lock()
	f.release = release
	f.mu.Unlock()
}

// reason is the fencing reason of an instance this agent fenced ("" if
// it did not).
func (f *fencer) reason(id string) string {
	if !f.enabled() {
		return ""
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.state.Fenced[id]
}

// run fences while the server is out of reach, until ctx ends.
func (f *fencer) run(ctx context.Context) {
	if !f.enabled() {
		return
	}
	t := time.NewTicker(min(time.Second, f.grace/4))
	defer t.Stop()
	for {
		f.check(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// check stops every HA instance still running if the last contact is
// older than the grace: level-triggered, so one a worker started again
// meanwhile is stopped again.
func (f *fencer) check(ctx context.Context) {
	f.mu.Lock()
	last := f.state.LastContact
	silent := time.Since(last)
	if len(f.state.HA) == 0 || silent <= f.grace {
		f.mu.Unlock()
		return
	}
	ids := make([]string, 0, len(f.state.HA))
	for id := range f.state.HA {
		ids = append(ids, id)
	}
	f.mu.Unlock()
	for _, id := range ids {
		st, err := f.d.Status(ctx, id)
		if errors.Is(err, driver.ErrNotFound) || err == nil && st.State != driver.Running && st.State != driver.Suspended {
			continue
		}
		// The reason is kept first: the instance job reports a stopped
		// instance with it, never as one that stopped by itself.
		why := fmt.Sprintf("%s: its agent had not reached the server for %s (last contact %s; fence grace %s), so it stopped the instance",
			api.SelfFenced, silent.Round(time.Second), last.Format(time.RFC3339), f.grace)
		f.mu.Lock()
		if _, done := f.state.Fenced[id]; !done {
			f.state.Fenced[id] = why
			f.saveLocked()
		}
		f.mu.Unlock()
		if err := f.d.Stop(ctx, id, true); err != nil && !errors.Is(err, driver.ErrNotFound) {
			f.log.Error("fencing: stopping an HA instance", "instance", id, "err", err)
			continue
		}
		f.log.Warn("fencing: stopped an HA instance: the server is out of reach", "instance", id, "silent", silent.Round(time.Second))
	}
	f.releaseStopped(ctx)
}

// releaseStopped lets go of what the fenced instances that are stopped
// still hold on the host: the server may recreate them elsewhere, with
// their shared volumes, and a filesystem must not stay mounted by two
// hosts' kernels (the old host's unmount, when it returns, would write to
// it). Level-triggered, as check is: cheap when there is nothing left.
func (f *fencer) releaseStopped(ctx context.Context) {
	f.mu.Lock()
	release := f.release
	ids := make([]string, 0, len(f.state.Fenced))
	for id := range f.state.Fenced {
		ids = append(ids, id)
	}
	f.mu.Unlock()
	if release == nil {
		return
	}
	for _, id := range ids {
		st, err := f.d.Status(ctx, id)
		if err == nil && (st.State == driver.Running || st.State == driver.Suspended) {
			continue // stopped again at the next check first
		}
		release(ctx, id)
	}
}
