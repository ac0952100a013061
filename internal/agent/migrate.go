package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"

	"github.com/kumocloud/kumo/api"
	"github.com/kumocloud/kumo/internal/driver"
)

// The agent's part in migrations (the server's is in compute's
// migrations.go): an assignment carrying a migration says, by its phase
// and by which of the migration's hosts are this agent's, what to do -
//
//   - transfer, source: send the instance through the migration's tunnel
//     (live: QEMU pre-copy; cold: stop or save it, then its disk's
//     changes and saved state), reporting progress and then "sent";
//   - transfer, target: receive it (its base image fetched by hash as for
//     PROLOG, its ports wired first for a live move) and report
//     "received": the server then commits the move;
//   - cleanup, source: remove what is left of it here;
//   - rollback, target: remove what was received; source: a live move
//     that failed after the guest was paused is resumed.
//
// Any failure is reported "failed" with the reason: the server rolls back
// and the instance stays on its source. The work is repeated whole after
// an agent restart (the assignment says the phase is unchanged).

// migrationSource is what the migration job needs of the server.
type migrationSource interface {
	MigrationReport(ctx context.Context, rep api.MigrationReport) error
	Tunnel(ctx context.Context, migration, channel, host string) (io.ReadWriteCloser, error)
}

// migrations is the instance job's migration part.
type migrations struct {
	src   migrationSource
	d     driver.Driver
	hosts map[string]bool
	ports portWiring
	log   *slog.Logger

	mu     sync.Mutex
	active map[string]context.CancelFunc // migration id -> its transfer's cancel
	// done are the migrations whose transfer this agent has finished its
	// side of (and said so): assignments of the transfer phase that were
	// already queued (progress, the other side's word) are not work.
	done map[string]bool
	// live tunes the live migrations this agent sends.
	live driver.LiveOptions
	// volumeBandwidth caps the volume files its cold migrations send
	// (bytes a second; 0: no cap).
	volumeBandwidth int64
	// vols is the agent's volume job: volumes go with an instance
	// (migrate_volumes.go); nil: none do.
	vols *volumeJob
}

// liveOptions are the live migrations' settings of an agent of cfg: a
// 300 ms downtime limit, auto-converge, the bound and bandwidth it says.
func liveOptions(cfg Config) driver.LiveOptions {
	o := driver.LiveOptions{DowntimeLimitMS: 300, AutoConverge: true, ConvergeWithin: cfg.LiveConvergeWithin, MaxBandwidth: cfg.LiveBandwidth}
	if o.ConvergeWithin <= 0 {
		o.ConvergeWithin = liveConvergeBound
	}
	return o
}

func newMigrations(src migrationSource, d driver.Driver, hosts map[string]bool, ports portWiring, log *slog.Logger) *migrations {
	return &migrations{src: src, d: d, hosts: hosts, ports: ports, log: log, active: map[string]context.CancelFunc{}, done: map[string]bool{}}
}

// mine says whether the instance of an assignment runs on one of this
// agent's hosts (a migration's source in cleanup is told of an instance
// that now runs elsewhere).
func (mg *migrations) mine(as api.Assignment) bool {
	return mg == nil || mg.hosts[as.Host]
}

// note acts on an assignment as it arrives, before its worker gets it: a
// cancel reaches the transfer in progress.
func (mg *migrations) note(as api.Assignment) {
	if mg == nil || as.Migration == nil || !as.Migration.Cancel {
		return
	}
	mg.mu.Lock()
	cancel := mg.active[as.Migration.ID]
	mg.mu.Unlock()
	if cancel != nil {
		cancel()
	}
}

// handle does a migration's work; false: the assignment is the ordinary
// lifecycle's to handle (also after this).
func (mg *migrations) handle(ctx context.Context, as api.Assignment) bool {
	m := as.Migration
	if mg == nil || m == nil {
		return false
	}
	src, dst := mg.hosts[m.Source], mg.hosts[m.Target]
	if m.Phase != api.MigrationTransfer {
		mg.mu.Lock()
		delete(mg.done, m.ID)
		mg.mu.Unlock()
	}
	switch m.Phase {
	case api.MigrationTransfer:
		mg.mu.Lock()
		done := mg.done[m.ID]
		mg.mu.Unlock()
		if done {
			return true
		}
		if as.State != api.StateMigrate || m.Cancel {
			if m.Cancel && src {
				// A transfer this agent ran (note cancelled it) ended
				// what it began in the driver; one begun before this
				// agent restarted may still be running there. The
				// guest is not resumed: the rollback says so.
				mg.liveCancel(ctx, as)
				mg.report(ctx, as, m.Source, api.MigrationFailed, "cancelled", nil)
			}
			return true
		}
		mg.transfer(ctx, as, src, dst)
		return true
	case api.MigrationCleanup:
		switch {
		case src && dst:
			mg.report(ctx, as, m.Source, api.MigrationCleaned, "", nil)
		case src:
			mg.remove(ctx, as, m.Source)
			mg.report(ctx, as, m.Source, api.MigrationCleaned, "", nil)
			return true
		}
	case api.MigrationRollback:
		switch {
		case src && dst:
			mg.report(ctx, as, m.Target, api.MigrationCleaned, "", nil)
		case dst:
			mg.remove(ctx, as, m.Target)
			mg.report(ctx, as, m.Target, api.MigrationCleaned, "", nil)
			return true
		case src:
			mg.liveAbort(ctx, as)
			if as.Migration.Mode == api.MigrateCold && mg.vols != nil {
				mg.vols.stay(as.ID) // its volumes as they were (a container's mounted)
			}
		}
	}
	return false
}

// liveAbort ends, on the source, what a live migration left in the
// driver (QEMU's outgoing migration, its disk mirror) and runs the
// instance again if it was paused for the switch-over.
func (mg *migrations) liveAbort(ctx context.Context, as api.Assignment) {
	if as.Migration.Mode != api.MigrateLive {
		return
	}
	if lm, err := driver.Feature[driver.LiveMigrator](mg.d); err == nil {
		if err := lm.LiveAbort(ctx, as.ID); err != nil {
			mg.log.Warn("ending a live migration that failed or was cancelled", "instance", as.ID, "err", err)
		}
	}
}

// liveCancel ends, on the source, a live migration the driver may still
// be running.
func (mg *migrations) liveCancel(ctx context.Context, as api.Assignment) {
	if as.Migration.Mode != api.MigrateLive {
		return
	}
	if lc, ok := mg.d.(driver.LiveCanceler); ok {
		if err := lc.LiveCancel(ctx, as.ID); err != nil {
			mg.log.Warn("ending a cancelled live migration", "instance", as.ID, "err", err)
		}
	}
}

// remove takes an instance off one of this agent's hosts: its process,
// its files, its ports.
func (mg *migrations) remove(ctx context.Context, as api.Assignment, host string) {
	mg.d.Stop(ctx, as.ID, true)
	if err := mg.d.Cleanup(ctx, as.ID, false); err != nil {
		mg.log.Warn("migration: cleaning up", "instance", as.ID, "host", host, "err", err)
	}
	as.Host = host
	mg.ports.forget(as.ID)
	mg.ports.unwire(ctx, as)
	if mg.vols != nil {
		if host == as.Migration.Source {
			mg.vols.left(as.ID)
		} else {
			mg.vols.dropIncoming(as.ID)
		}
	}
}

// transfer runs this agent's side (or both) of a migration's transfer.
func (mg *migrations) transfer(ctx context.Context, as api.Assignment, src, dst bool) {
	m := as.Migration
	tctx, cancel := context.WithCancel(ctx)
	mg.mu.Lock()
	mg.active[m.ID] = cancel
	mg.mu.Unlock()
	defer func() {
		cancel()
		mg.mu.Lock()
		delete(mg.active, m.ID)
		mg.done[m.ID] = true
		mg.mu.Unlock()
	}()
	tunnel := func(host string) driver.Tunnel {
		return func(ctx context.Context, channel string) (io.ReadWriteCloser, error) {
			rw, err := mg.src.Tunnel(ctx, m.ID, channel, host)
			if err != nil {
				return nil, err
			}
			// Reads and writes of the upgraded stream do not see ctx.
			stop := context.AfterFunc(ctx, func() { rw.Close() })
			return &stopCloser{ReadWriteCloser: rw, stop: stop}, nil
		}
	}
	var wg sync.WaitGroup
	if dst {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := mg.receive(tctx, as, tunnel(m.Target)); err != nil {
				// A source that gave up reports its own reason.
				if !errors.Is(err, driver.ErrSourceGaveUp) {
					mg.report(ctx, as, m.Target, api.MigrationFailed, err.Error(), nil)
				}
				cancel()
				return
			}
			mg.report(ctx, as, m.Target, api.MigrationReceived, "", nil)
		}()
	}
	if src {
		wg.Add(1)
		go func() {
			defer wg.Done()
			st, err := mg.send(tctx, as, tunnel(m.Source))
			if err != nil {
				if tctx.Err() != nil && ctx.Err() == nil {
					err = errors.New("cancelled")
				}
				mg.report(ctx, as, m.Source, api.MigrationFailed, err.Error(), nil)
				cancel()
				return
			}
			mg.report(ctx, as, m.Source, api.MigrationSent, "", &st)
		}()
	}
	wg.Wait()
}

// stopCloser closes a tunnel channel and stops its ctx watch.
type stopCloser struct {
	io.ReadWriteCloser
	stop func() bool
}

func (s *stopCloser) Close() error {
	s.stop()
	return s.ReadWriteCloser.Close()
}

// targetSpec is the driver spec of an instance on the migration's target.
func (mg *migrations) targetSpec(as api.Assignment) (api.Assignment, driver.Spec) {
	as.Host = as.Migration.Target
	s := driver.Spec{ID: as.ID, Project: as.Project, Name: as.Name, Type: as.Type, Host: as.Host, Image: as.Image,
		ImageSHA256: as.ImageSHA256, UserData: as.UserData, Size: as.Size, Nesting: as.Nesting}
	return as, mg.ports.spec(s, as)
}

// receive is the target's side.
func (mg *migrations) receive(ctx context.Context, as api.Assignment, t driver.Tunnel) error {
	m := as.Migration
	as, spec := mg.targetSpec(as)
	if m.Mode == api.MigrateLive {
		lm, err := driver.Feature[driver.LiveMigrator](mg.d)
		if err != nil {
			return err
		}
		// Already here and running: an earlier try completed and its
		// word was lost (this agent restarted).
		if st, err := mg.d.Status(ctx, as.ID); err == nil && st.Host == m.Target && st.State == driver.Running {
			return nil
		}
		spec, err = mg.migrationVolumes(as, spec, func(j *volumeJob) ([]driver.Volume, error) { return j.receiveVolumes(ctx, as.ID, m.Volumes) })
		if err != nil {
			return fmt.Errorf("volumes: %w", err)
		}
		if err := mg.ports.wire(ctx, as); err != nil {
			mg.dropIncoming(as)
			return fmt.Errorf("network: %w", err)
		}
		if err := lm.LiveReceive(ctx, spec, t); err != nil {
			mg.ports.forget(as.ID)
			mg.ports.unwire(context.WithoutCancel(ctx), as)
			mg.dropIncoming(as)
			return err
		}
		return nil
	}
	cm, err := driver.Feature[driver.Migrator](mg.d)
	if err != nil {
		return err
	}
	rw, err := t(ctx, driver.ChannelCold)
	if err != nil {
		return fmt.Errorf("tunnel: %w", err)
	}
	defer rw.Close()
	// Its volumes first: the driver prepares it with them.
	spec, err = mg.migrationVolumes(as, spec, func(j *volumeJob) ([]driver.Volume, error) {
		return j.receiveCold(ctx, as.ID, as.Type, m.Volumes, mg.coldVolumes(m), rw)
	})
	if err != nil {
		return fmt.Errorf("volumes: %w", err)
	}
	if err := cm.ReceiveCold(ctx, spec, rw); err != nil {
		mg.dropIncoming(as)
		return err
	}
	// Tell the sender all arrived (it waits for this before it reports).
	_, err = rw.Write([]byte("ok\n"))
	return err
}

// liveConvergeBound is how long, by default, a live migration's memory phase may go
// on without converging (auto-converge throttling the guest) before the
// source abandons it, its figures the reason in the instance's history,
// and the VM runs on there. It is under the default migration timeout,
// so the reason is the driver's, not the deadline's.
const liveConvergeBound = 5 * time.Minute

// send is the source's side.
func (mg *migrations) send(ctx context.Context, as api.Assignment, t driver.Tunnel) (_ api.MigrationStats, err error) {
	m := as.Migration
	start := time.Now()
	if m.Mode == api.MigrateLive {
		lm, err := driver.Feature[driver.LiveMigrator](mg.d)
		if err != nil {
			return api.MigrationStats{}, err
		}
		var last time.Time
		lastRounds := int64(-1)
		progress := func(st api.MigrationStats) {
			if time.Since(last) < time.Second && st.Rounds == lastRounds {
				return
			}
			last, lastRounds = time.Now(), st.Rounds
			pct := 5
			if st.TotalBytes > 0 {
				pct = 5 + int(90*min(st.Transferred, st.TotalBytes)/st.TotalBytes)
			}
			mg.reportProgress(ctx, as, pct, &st)
		}
		opt := mg.live
		opt.CopyVolumes = mg.copyVolumes(m)
		if mg.vols != nil {
			mg.vols.leave(as.ID, true)
		}
		st, err := lm.LiveSend(ctx, as.ID, t, opt, progress)
		if err != nil && mg.vols != nil {
			mg.vols.leave(as.ID, false)
		}
		return st, err
	}
	cm, err := driver.Feature[driver.Migrator](mg.d)
	if err != nil {
		return api.MigrationStats{}, err
	}
	vols := mg.coldVolumes(m)
	if mg.vols != nil && !mg.hosts[m.Target] {
		defer func() {
			if err != nil {
				mg.vols.stay(as.ID)
			}
		}()
		mg.vols.leave(as.ID, true)
	}
	if m.From == api.StateRunning {
		// A VM keeps its memory (saved, restored on the target); a
		// container stops (no checkpoint/restore here).
		if as.Type == api.TypeVM {
			err = mg.d.Save(ctx, as.ID)
		} else {
			err = mg.d.Stop(ctx, as.ID, false)
		}
		if err != nil && !errors.Is(err, driver.ErrState) {
			return api.MigrationStats{}, fmt.Errorf("stopping it on %s: %w", m.Source, err)
		}
	}
	mg.reportProgress(ctx, as, 10, nil)
	rw, err := t(ctx, driver.ChannelCold)
	if err != nil {
		return api.MigrationStats{}, fmt.Errorf("tunnel: %w", err)
	}
	defer rw.Close()
	var vn int64
	if mg.vols != nil && !mg.hosts[m.Target] {
		if err := mg.vols.releaseCold(as.ID); err != nil {
			return api.MigrationStats{}, err
		}
		if len(vols) > 0 {
			if vn, err = mg.vols.sendCold(ctx, vols, rw, mg.volumeBandwidth); err != nil {
				return api.MigrationStats{}, err
			}
		}
	}
	n, err := cm.SendCold(ctx, as.ID, rw)
	if err != nil {
		return api.MigrationStats{}, err
	}
	n += vn
	if cw, ok := rw.(interface{ CloseWrite() error }); ok {
		cw.CloseWrite()
	}
	// The target's word that all arrived and was taken.
	ack := make([]byte, 3)
	if _, err := io.ReadFull(rw, ack); err != nil || string(ack) != "ok\n" {
		return api.MigrationStats{}, fmt.Errorf("the target did not confirm what it received (%v)", err)
	}
	return api.MigrationStats{Transferred: n, DiskBytes: n, TotalMS: time.Since(start).Milliseconds()}, nil
}

func (mg *migrations) reportProgress(ctx context.Context, as api.Assignment, pct int, st *api.MigrationStats) {
	rep := api.MigrationReport{Instance: as.ID, Migration: as.Migration.ID, Host: as.Migration.Source, Event: api.MigrationProgress, Progress: pct, Stats: st}
	if err := mg.src.MigrationReport(ctx, rep); err != nil {
		mg.log.Debug("migration progress", "instance", as.ID, "err", err)
	}
}

// report tells the server, trying again while it cannot be reached; an
// answer that the report does not fit (the migration moved on) ends it.
func (mg *migrations) report(ctx context.Context, as api.Assignment, host, event, reason string, st *api.MigrationStats) {
	rep := api.MigrationReport{Instance: as.ID, Migration: as.Migration.ID, Host: host, Event: event, Reason: driver.Attribute(reason), Stats: st}
	for attempt := 0; ctx.Err() == nil; attempt++ {
		err := mg.src.MigrationReport(ctx, rep)
		var ae *api.ErrorBody
		if err == nil || errors.As(err, &ae) && ae.Status >= 400 && ae.Status < 500 {
			if err != nil {
				mg.log.Info("migration report not taken", "instance", as.ID, "event", event, "err", err)
			}
			return
		}
		mg.log.Warn("migration report", "instance", as.ID, "event", event, "err", err, "attempt", attempt)
		sleep(ctx, time.Duration(min(attempt+1, 10))*200*time.Millisecond)
	}
}
