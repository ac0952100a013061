package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"time"

	"github.com/kumocloud/kumo/api"
	"github.com/kumocloud/kumo/internal/atomicfile"
	"github.com/kumocloud/kumo/internal/driver"
	"github.com/kumocloud/kumo/internal/store"
)

// The fencing watchdog: what Proxmox's watchdog does when its HA manager
// dies. An agent's instances outlive it by design (a restarted agent
// re-attaches to them), so an agent killed while its host runs on cannot
// fence them itself; its watchdog, a process the agent starts beside it
// (kumo agent --fence-watchdog), can. It learns of the agent's death when
// the pipe the agent holds closes; from then on it reads fence.json, and
// when the agent's last recorded contact is older than its grace it stops
// the HA instances it lists and records why, as the agent would have. It
// ends there, or as soon as fence.json shows a newer contact (a restarted
// agent reached the server: that agent, and its own watchdog, take over),
// or when the agent held no HA instance.

// Watchdog runs the fencing watchdog of the agent whose state dir is
// stateDir; open opens the agent's driver (only when there is something to
// stop); agentGone closes when the agent dies. It returns once it has
// fenced, or has nothing to do.
func Watchdog(ctx context.Context, open func(context.Context) (driver.Driver, error), stateDir string, agentGone <-chan struct{}, log *slog.Logger) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-agentGone:
	}
	path := fencePath(stateDir)
	at, err := readFenceFile(path)
	if err != nil {
		return err
	}
	log.Info("fence watchdog: the agent is gone", "ha_instances", len(at.HA), "last_contact", at.LastContact)
	t := time.NewTicker(250 * time.Millisecond)
	defer t.Stop()
	for {
		st, err := readFenceFile(path)
		switch {
		case err != nil:
			log.Warn("fence watchdog: reading fence.json", "err", err)
		case st.LastContact.After(at.LastContact):
			log.Info("fence watchdog: a restarted agent has reached the server; leaving it the fencing")
			return nil
		case len(st.HA) == 0 || st.GraceMillis <= 0:
			return nil
		default:
			grace := time.Duration(st.GraceMillis) * time.Millisecond
			if silent := time.Since(st.LastContact); silent > grace {
				d, err := open(ctx)
				if err != nil {
					return fmt.Errorf("fence watchdog: opening the driver: %w", err)
				}
				return watchdogFence(ctx, d, path, st, silent, grace, log)
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}

// watchdogFence stops every HA instance of st and records why in
// fence.json.
func watchdogFence(ctx context.Context, d driver.Driver, path string, st fenceFile, silent, grace time.Duration, log *slog.Logger) error {
	var failed error
	for id := range st.HA {
		if _, done := st.Fenced[id]; !done {
			st.Fenced[id] = fmt.Sprintf("%s: its agent was gone and had not reached the server for %s (last contact %s; fence grace %s), so its watchdog stopped the instance",
				api.SelfFenced, silent.Round(time.Second), st.LastContact.Format(time.RFC3339), grace)
		}
	}
	// The reasons first: an agent started meanwhile reports the stop
	// with them.
	if err := atomicfile.Write(path, store.MustJSON(st), 0o600); err != nil {
		log.Error("fence watchdog: recording the fencing", "err", err)
	}
	for id := range st.HA {
		if err := d.Stop(ctx, id, true); err != nil && !errors.Is(err, driver.ErrNotFound) {
			log.Error("fence watchdog: stopping an HA instance", "instance", id, "err", err)
			failed = err
			continue
		}
		log.Warn("fence watchdog: stopped an HA instance: its agent is gone", "instance", id)
	}
	// Then their volumes' host mounts, as the agent's fencer would have
	// (releaseFenced): the server recreates them elsewhere with their
	// shared volumes.
	stopped := map[string]bool{}
	for id := range st.HA {
		if s, err := d.Status(ctx, id); errors.Is(err, driver.ErrNotFound) || err == nil && s.State != driver.Running && s.State != driver.Suspended {
			stopped[id] = true
		}
	}
	if err := releaseRecorded(filepath.Join(filepath.Dir(path), "volumes"), stopped, log); err != nil {
		log.Error("fence watchdog: unmounting the stopped instances' volumes", "err", err)
		failed = err
	}
	return failed
}
