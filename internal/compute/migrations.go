package compute

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/kumocloud/kumo/api"
	"github.com/kumocloud/kumo/internal/errs"
	"github.com/kumocloud/kumo/internal/hosts"
	"github.com/kumocloud/kumo/internal/reqctx"
	"github.com/kumocloud/kumo/internal/scheduler"
	"github.com/kumocloud/kumo/internal/secret"
	"github.com/kumocloud/kumo/internal/store"
	"github.com/kumocloud/kumo/internal/validate"
)

// Migration moves an instance between hosts, as OpenNebula's MIGRATE
// state does. Everything about a migration is in the instance's record
// (record.Migration), so the controllers and the agents of its two hosts
// pick it up again after any restart:
//
//   - Migrate chooses the target (every scheduler filter, the source
//     excluded) and, in one transaction conditional on the instance, the
//     target's placement key and host record, moves the instance to
//     MIGRATE with the migration in phase transfer: the target's room is
//     reserved from then on (the cache counts the instance on both hosts).
//   - The source's agent sends, the target's agent receives, through the
//     migration's tunnel (a byte stream the server splices between those
//     two agents only). The target saying "received" commits: the
//     instance is on the target (RUNNING for a live move; for a cold one
//     BOOT, POWEROFF or STOPPED as it was) and the phase is cleanup, in
//     which the source removes what it had.
//   - Any failure, a cancel, a silent agent or the deadline rolls back:
//     the instance stays on its source as it was, and the target removes
//     what it received (phase rollback).
//
// Each step is a history record with its time and figures.

// defaultMigrationTimeout bounds a transfer unless the request says.
const defaultMigrationTimeout = 10 * time.Minute

// migrationGrace is how long past its deadline (and its cancel) a
// migration may go before it is rolled back without its agents' word.
const migrationGrace = time.Minute

// migrationHold is the host whose room a migration reserves (its target)
// while it transfers, or "".
func migrationHold(r *record) string {
	if m := r.Migration; m != nil && m.Phase == api.MigrationTransfer && m.From != api.StateStopped && r.State == api.StateMigrate {
		return m.Target
	}
	return ""
}

// migratable are the states a migration may start from.
var migratable = []api.State{api.StateRunning, api.StatePoweroff, api.StateStopped}

// ValidateInstanceMigrate checks a migrate request.
func ValidateInstanceMigrate(req *api.InstanceMigrate) error {
	if req.Host != "" {
		if err := validate.Name("host", req.Host); err != nil {
			return err
		}
	}
	if req.Mode != "" && req.Mode != api.MigrateLive && req.Mode != api.MigrateCold {
		return errs.Invalid("mode", "mode %q: use live or cold (or leave it out)", req.Mode)
	}
	if req.TimeoutSeconds < 0 || req.TimeoutSeconds > 24*3600 {
		return errs.Invalid("timeout_seconds", "timeout_seconds must be 0 (default: 600) to 86400")
	}
	return nil
}

// Migrate starts moving an instance to another host (req.Host, or the
// scheduler's choice), or with req.Cancel aborts the move in progress. It
// returns the instance as committed: MIGRATE, with Migration naming the
// target and the migration's id; WaitMigration follows it to its end.
// Refusals: a 409 naming the state, a target that cannot take it (with
// the scheduler's reason), a live move of a container or a stopped one.
func (svc *Service) Migrate(ctx context.Context, project, name string, req api.InstanceMigrate) (api.Instance, error) {
	if err := ValidateInstanceMigrate(&req); err != nil {
		return api.Instance{}, err
	}
	if req.Cancel {
		return svc.cancelMigration(ctx, project, name)
	}
	for attempt := 0; attempt < 20; attempt++ {
		r, rev, err := svc.get(ctx, project, name)
		if err != nil {
			return api.Instance{}, svc.doneOr(ctx, project, name, "migrate", err)
		}
		if r.Migration != nil {
			return api.Instance{}, errs.Conflict("instance %q: migration %s to %s is in phase %s; wait for it to end (or cancel it)", name, r.Migration.ID, r.Migration.Target, r.Migration.Phase)
		}
		if !slices.Contains(migratable, r.State) {
			return api.Instance{}, errs.Conflict("cannot migrate instance %q: it is %s; migrate needs it RUNNING, POWEROFF or STOPPED", name, r.State)
		}
		source := r.Host
		if source == "" {
			source = r.home()
		}
		if source == "" {
			return api.Instance{}, errs.Conflict("instance %q has never been placed: there is nothing to migrate", name)
		}
		mode, err := svc.migrationMode(&r, source, req.Mode)
		if err != nil {
			return api.Instance{}, err
		}
		vols, mode, err := svc.migrationVolumes(ctx, &r, mode, req.Mode)
		if err != nil {
			return api.Instance{}, err
		}
		res, _, err := svc.migrationVerdicts(ctx, &r, source, mode)
		if err != nil {
			return api.Instance{}, err
		}
		target, err := pickTarget(res, req.Host, name)
		if err != nil {
			return api.Instance{}, err
		}
		timeout := defaultMigrationTimeout
		if req.TimeoutSeconds > 0 {
			timeout = time.Duration(req.TimeoutSeconds) * time.Second
		}
		t := svc.now()
		from := r.State
		r.Migration = &api.Migration{ID: secret.Hex(16), Source: source, Target: target, Mode: mode, Phase: api.MigrationTransfer,
			From: from, StartedAt: t, Deadline: t.Add(timeout)}
		r.Action, r.MigVolumes = api.ActionMigrate, vols
		why := fmt.Sprintf("user: migrate (%s) from %s to %s", mode, source, target)
		if from != api.StateStopped {
			why += fmt.Sprintf(": room reserved on %s (%d vCPU, %d MiB, %d GiB)", target, r.Size.VCPUs, r.Size.MemoryMiB, r.Size.DiskGiB)
		}
		r.transition(t, api.StateMigrate, "", reqctx.Actor(ctx), why)
		if from == api.StateStopped {
			r.Host = ""
		}
		key := instanceKey(project, name)
		conds := []store.Cond{store.At(key, rev)}
		ops := []store.Op{store.PutJSON(key, r), r.event(ctx)}
		if from != api.StateStopped {
			// The target's room, re-checked at commit as a placement is.
			fits, cond, hostCond, ok := svc.recheck(ctx, target, []change{{rec: r}})
			if !ok {
				svc.cache.waitRev(ctx, cond.Revision)
				continue
			}
			if len(fits) == 0 {
				return api.Instance{}, errs.Conflict("cannot migrate instance %q to %s: it no longer has room", name, target)
			}
			conds = append(conds, cond)
			if hostCond.Key != "" {
				conds = append(conds, hostCond)
			}
			ops = append(ops, store.PutJSON(placementKey(target), placementMark{Last: r.ID}))
		}
		nrev, err := svc.s.Txn(ctx, conds, ops)
		if errors.Is(err, store.ErrConflict) {
			continue
		}
		if err != nil {
			return api.Instance{}, err
		}
		svc.log.Info("migration started", "instance", project+"/"+name, "from", source, "to", target, "mode", mode, "migration", r.Migration.ID)
		return r.api(nrev), nil
	}
	return api.Instance{}, errs.Unavailable("instance %q or its target kept changing; try again", name)
}

// pickTarget is the named host if it is feasible, else the best one.
func pickTarget(res []scheduler.HostResult, want, name string) (string, error) {
	for _, h := range res {
		if want != "" && h.Host != want {
			continue
		}
		if !h.Feasible {
			return "", errs.Conflict("cannot migrate instance %q to %s: %s", name, h.Host, h.Reason)
		}
		return h.Host, nil
	}
	if want != "" {
		return "", errs.NotFound("host %q not found", want)
	}
	return "", errs.Conflict("cannot migrate instance %q: no host can take it (%s); see kumo instance explain %s --migrate", name, summarizeVerdicts(res), name)
}

func summarizeVerdicts(res []scheduler.HostResult) string {
	if len(res) == 0 {
		return "no hosts"
	}
	counts := map[string]int{}
	var order []string
	for _, h := range res {
		if _, ok := counts[h.Reason]; !ok {
			order = append(order, h.Reason)
		}
		counts[h.Reason]++
	}
	out := ""
	for i, why := range order {
		if i > 0 {
			out += "; "
		}
		out += fmt.Sprintf("%d %s", counts[why], why)
	}
	return out
}

// reasonSource and reasonDriver are the verdicts migration adds to the
// scheduler's filters.
const (
	reasonSource = "the instance is there now (the source)"
	reasonDriver = "its driver is %s, the source's is %s: instances move only between hosts of one driver"
)

// migrationVerdicts runs the scheduler's filters and ranking for r as if
// it were not on source, without its home filter (migration is how it
// leaves home), with the source and hosts of another driver refused.
func (svc *Service) migrationVerdicts(ctx context.Context, r *record, source, mode string) ([]scheduler.HostResult, scheduler.Snapshot, error) {
	groups, err := svc.allGroups(ctx)
	if err != nil {
		return nil, scheduler.Snapshot{}, err
	}
	snap, req := svc.unplacedView(r, groups)
	req.Home = ""
	req.Volumes = nil // its volumes of a local pool move with it (migrate_volumes.go)
	svc.cache.mu.RLock()
	drivers := map[string]string{}
	cannot := map[string]string{}
	for n, h := range svc.cache.hosts {
		drivers[n] = h.Driver
		cannot[n] = cannotReceive(h, r.Type, mode)
	}
	svc.cache.mu.RUnlock()
	res := scheduler.Explain(snap, req, svc.policy)
	for i := range res {
		h := &res[i]
		switch {
		case h.Host == source:
			h.Feasible, h.Reason, h.Score = false, reasonSource, 0
		case h.Feasible && drivers[h.Host] != drivers[source]:
			h.Feasible, h.Reason, h.Score = false, fmt.Sprintf(reasonDriver, drivers[h.Host], drivers[source]), 0
		case h.Feasible && cannot[h.Host] != "":
			h.Feasible, h.Reason, h.Score = false, cannot[h.Host], 0
		}
	}
	slices.SortStableFunc(res, func(a, b scheduler.HostResult) int {
		switch {
		case a.Feasible == b.Feasible:
			return 0
		case a.Feasible:
			return -1
		}
		return 1
	})
	return res, snap, nil
}

// unplacedView is the scheduler's snapshot and request for r as if it
// were not placed: what it takes on its host (and a migration's target)
// given back.
func (svc *Service) unplacedView(r *record, groups map[string]groupRecord) (scheduler.Snapshot, scheduler.Request) {
	svc.cache.mu.RLock()
	snap := svc.snapshot()
	svc.cache.mu.RUnlock()
	req := svc.request(r, groups)
	for _, host := range []string{r.Host, migrationHold(r)} {
		if !onHost(r.State) || host == "" {
			continue
		}
		for i := range snap.Hosts {
			if snap.Hosts[i].Name == host {
				snap.Hosts[i].Used.VCPUs -= r.Size.VCPUs
				snap.Hosts[i].Used.MemoryMiB -= r.Size.MemoryMiB
				snap.Hosts[i].Used.DiskGiB -= r.Size.DiskGiB
				snap.Hosts[i].Instances--
			}
		}
		if m := snap.GroupHosts[req.Group]; m != nil {
			m[host]--
		}
	}
	return snap, req
}

// ExplainMigrate says, for every host, whether the instance can migrate
// there and why not (kumo instance explain NAME --migrate).
func (svc *Service) ExplainMigrate(ctx context.Context, project, name string) (api.Explain, error) {
	r, _, err := svc.get(ctx, project, name)
	if err != nil {
		return api.Explain{}, svc.doneOr(ctx, project, name, "explain", err)
	}
	source := r.Host
	if source == "" {
		source = r.home()
	}
	mode, modeErr := svc.migrationMode(&r, source, "")
	res, snap, err := svc.migrationVerdicts(ctx, &r, source, mode)
	if err != nil {
		return api.Explain{}, err
	}
	out := api.Explain{Instance: name, Policy: svc.policy, Hosts: make([]api.ExplainHost, len(res))}
	feasible := 0
	for i, h := range res {
		out.Hosts[i] = api.ExplainHost{Host: h.Host, Feasible: h.Feasible, Reason: h.Reason, Score: h.Score}
		if h.Feasible {
			feasible++
		}
	}
	switch {
	case len(snap.Hosts) == 0:
		out.Summary = "no hosts have joined"
	case !slices.Contains(migratable, r.State):
		out.Summary = fmt.Sprintf("it is %s: migrate needs it RUNNING, POWEROFF or STOPPED", r.State)
	case modeErr != nil:
		out.Summary = modeErr.Error()
	case feasible == 0:
		out.Summary = fmt.Sprintf("no host can take it (%s): %s", mode, summarizeVerdicts(res))
	default:
		out.Summary = fmt.Sprintf("%d host(s) can take it (%s); the scheduler would choose %s", feasible, mode, res[0].Host)
	}
	return out, nil
}

// cancelMigration asks the agents to abandon a migration in transfer.
func (svc *Service) cancelMigration(ctx context.Context, project, name string) (api.Instance, error) {
	for attempt := 0; attempt < 20; attempt++ {
		r, rev, err := svc.get(ctx, project, name)
		if err != nil {
			return api.Instance{}, svc.doneOr(ctx, project, name, "cancel the migration of", err)
		}
		m := r.Migration
		if m == nil || m.Phase != api.MigrationTransfer {
			return api.Instance{}, errs.Conflict("instance %q has no migration under way to cancel", name)
		}
		if m.Cancel {
			return r.api(rev), nil
		}
		m.Cancel = true
		r.note(svc.now(), reqctx.Actor(ctx), fmt.Sprintf("user: cancel the migration to %s", m.Target))
		nrev, err := svc.write(ctx, &r, rev)
		if errors.Is(err, store.ErrConflict) {
			continue
		}
		if err != nil {
			return api.Instance{}, err
		}
		return r.api(nrev), nil
	}
	return api.Instance{}, errs.Unavailable("instance %q is changing too fast; try again", name)
}

// note records a step that changes no state (a migration's stage) in the
// history, with its time.
func (r *record) note(t time.Time, actor, reason string) {
	seq := 1
	if n := len(r.History); n > 0 {
		seq = r.History[n-1].Seq + 1
	}
	r.History = append(r.History, api.HistoryRecord{Seq: seq, Time: t, From: r.State, To: r.State, Host: r.Host, Actor: actor, Reason: reason})
	if len(r.History) > maxHistory {
		r.History = r.History[len(r.History)-maxHistory:]
	}
	r.UpdatedAt = t
}

// WaitMigration waits until migration id of an instance has ended and
// returns the instance then (its Migration may still be cleaning up);
// an error says the migration was rolled back, and why. progress, if not
// nil, is called with the migration's progress as it changes.
func (svc *Service) WaitMigration(ctx context.Context, project, name, id string, progress func(int)) (api.Instance, error) {
	if err := svc.Ready(ctx); err != nil {
		return api.Instance{}, err
	}
	last := -1
	for {
		svc.cache.mu.RLock()
		e := svc.cache.instances[instanceKey(project, name)]
		ch := svc.cache.changed
		var rec record
		var rev int64
		if e != nil {
			rec, rev = e.rec.clone(), e.rev
		}
		svc.cache.mu.RUnlock()
		if e == nil {
			return api.Instance{}, errs.NotFound("instance %q is gone", name)
		}
		m := rec.Migration
		switch {
		case m == nil || m.ID != id:
			// Ended, and its cleanup too - or not in the cache yet.
			if l := rec.LastMigration; l != nil && l.ID == id {
				if l.Outcome != "completed" {
					return rec.api(rev), errs.Conflict("migration of %q to %s %s", name, l.Target, l.Outcome)
				}
				return rec.api(rev), nil
			}
		case m.Phase == api.MigrationCleanup:
			return rec.api(rev), nil
		case m.Phase == api.MigrationRollback:
			return rec.api(rev), errs.Conflict("migration of %q to %s %s", name, m.Target, m.Outcome)
		}
		if progress != nil && m != nil && m.ID == id && m.Progress != last {
			last = m.Progress
			progress(m.Progress)
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return rec.api(rev), ctx.Err()
		}
	}
}

// migrationActor is the actor of the steps the server decides.
const migrationActor = "migration"

// MigrationReport applies an agent's word on a migration: progress
// figures, the target having received the instance (the commit), a
// failure (the rollback) or a side cleaned up. A report that does not fit
// the migration as it is now (an old one, another agent's host) is a
// conflict and changes nothing.
func (svc *Service) MigrationReport(ctx context.Context, agent *hosts.AgentPrincipal, rep api.MigrationReport) (api.Instance, error) {
	if !agent.Hosts[rep.Host] {
		return api.Instance{}, errs.NotFound("host %q is not one of this agent's", rep.Host)
	}
	if err := svc.Ready(ctx); err != nil {
		return api.Instance{}, err
	}
	svc.cache.mu.RLock()
	key, ok := svc.cache.byID[rep.Instance]
	svc.cache.mu.RUnlock()
	if !ok {
		return api.Instance{}, errs.NotFound("instance %q not found", rep.Instance)
	}
	actor := "agent:" + agent.Name
	for attempt := 0; attempt < 20; attempt++ {
		var r record
		rev, err := store.GetJSON(ctx, svc.s, key, &r)
		if errors.Is(err, store.ErrNotFound) {
			return api.Instance{}, errs.NotFound("instance %q not found", rep.Instance)
		}
		if err != nil {
			return api.Instance{}, err
		}
		m := r.Migration
		// Only the agents of its two hosts hear of a migration, the one
		// under way or the last (a late repeat): any other is told
		// nothing of the instance (not its name, not its record).
		involved := func(x *api.Migration) bool {
			return x != nil && x.ID == rep.Migration && (rep.Host == x.Source || rep.Host == x.Target)
		}
		if !involved(m) && !involved(r.LastMigration) {
			return api.Instance{}, errs.NotFound("no migration %q of host %q", rep.Migration, rep.Host)
		}
		if m == nil || m.ID != rep.Migration {
			return api.Instance{}, errs.Conflict("migration %s of instance %s is over", rep.Migration, r.Name)
		}
		var vconds []store.Cond
		var vops []store.Op
		source, target := rep.Host == m.Source, rep.Host == m.Target
		t := svc.now()
		switch {
		case rep.Event == api.MigrationProgress && source && m.Phase == api.MigrationTransfer:
			if rep.Progress == m.Progress && rep.Stats == nil {
				return r.api(rev), nil
			}
			if s := rep.Stats; s != nil && (m.Stats == nil || s.Rounds > m.Stats.Rounds) && s.Rounds > 0 {
				r.note(t, actor, fmt.Sprintf("pre-copy round %d: %s sent, %s remaining, dirty rate %d pages/s%s", s.Rounds,
					mib(s.Transferred), mib(s.Remaining), s.DirtyRate, throttle(s)))
			}
			m.Progress, m.Stats = min(max(rep.Progress, m.Progress), 99), rep.Stats
		case rep.Event == api.MigrationSent && source && (m.Phase == api.MigrationTransfer || m.Phase == api.MigrationCleanup):
			// (The target may have said it runs there first.)
			if m.Stats != nil && m.Stats.Status == "completed" {
				return r.api(rev), nil
			}
			st := api.MigrationStats{}
			if rep.Stats != nil {
				st = *rep.Stats
			}
			st.Status = "completed"
			m.Stats, m.Progress = &st, max(m.Progress, 95)
			if m.Mode == api.MigrateLive {
				r.note(t, actor, fmt.Sprintf("stop-and-copy done: downtime %d ms, total %d ms, %s sent in %d round(s)", st.DowntimeMS, st.TotalMS, mib(st.Transferred), st.Rounds))
			} else {
				r.note(t, actor, fmt.Sprintf("sent to %s: %s in %d ms", m.Target, mib(st.Transferred), st.TotalMS))
			}
		case rep.Event == api.MigrationReceived && target && m.Phase == api.MigrationTransfer:
			var verr error
			if vconds, vops, verr = svc.commitVolumes(ctx, &r); verr != nil && errs.KindOf(verr) != errs.KindConflict {
				return api.Instance{}, verr
			}
			if verr != nil {
				svc.rollbackMigration(&r, t, actor, verr.Error())
				break
			}
			svc.commitMigration(&r, t, actor)
		case rep.Event == api.MigrationFailed && source && m.Phase == api.MigrationTransfer && m.Mode == api.MigrateLive && m.Stats != nil && m.Stats.Status == "completed":
			// The source sent everything: the VM may run on the target
			// now; only the target's word settles it.
			return api.Instance{}, errs.Conflict("migration %s of %s: the source already sent everything; waiting for the target's word", m.ID, r.Name)
		case rep.Event == api.MigrationFailed && (source || target) && m.Phase == api.MigrationTransfer:
			why := fmt.Sprintf("%s says: %s", rep.Host, rep.Reason)
			if m.Cancel {
				why = "cancelled (" + why + ")"
			}
			svc.rollbackMigration(&r, t, actor, why)
		case rep.Event == api.MigrationCleaned && source && m.Phase == api.MigrationCleanup,
			rep.Event == api.MigrationCleaned && target && m.Phase == api.MigrationRollback:
			r.note(t, actor, fmt.Sprintf("migration %s: %s cleaned up", m.ID, rep.Host))
			r.LastMigration, r.Migration, r.MigVolumes = m, nil, nil
		case rep.Event == api.MigrationCleaned || rep.Event == api.MigrationReceived || rep.Event == api.MigrationSent:
			// A repeat of what was applied (its answer was lost).
			return r.api(rev), nil
		default:
			return api.Instance{}, errs.Conflict("migration %s of %s is in phase %s: %s cannot report %q", m.ID, r.Name, m.Phase, rep.Host, rep.Event)
		}
		var nrev int64
		if len(vops) > 0 {
			// The volumes' new home, in the commit's transaction.
			key := instanceKey(r.Project, r.Name)
			nrev, err = svc.s.Txn(ctx, append([]store.Cond{store.At(key, rev)}, vconds...), append([]store.Op{store.PutJSON(key, r), r.event(ctx)}, vops...))
		} else {
			nrev, err = svc.write(ctx, &r, rev)
		}
		if errors.Is(err, store.ErrConflict) {
			continue
		}
		if err != nil {
			return api.Instance{}, err
		}
		return r.api(nrev), nil
	}
	return api.Instance{}, errs.Unavailable("instance %q is changing too fast; report again", rep.Instance)
}

func mib(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }

func throttle(s *api.MigrationStats) string {
	if s.CPUThrottlePct > 0 {
		return fmt.Sprintf(", CPU throttled %d%%", s.CPUThrottlePct)
	}
	return ""
}

// commitMigration puts the instance on its target: the stay on the source
// ends, one on the target begins, and the source is asked to clean up.
func (svc *Service) commitMigration(r *record, t time.Time, actor string) {
	m := r.Migration
	to := m.From
	if m.Mode == api.MigrateCold && m.From == api.StateRunning {
		to = api.StateBoot // the target's agent starts it, as after start
	}
	why := fmt.Sprintf("migrated (%s) from %s to %s: activated on %s", m.Mode, m.Source, m.Target, m.Target)
	if m.Stats != nil && m.Stats.Status == "completed" && m.Mode == api.MigrateLive {
		why += fmt.Sprintf(", downtime %d ms", m.Stats.DowntimeMS)
	}
	if n := len(r.Placements); n > 0 && r.Placements[n-1].End.IsZero() && r.Host != "" {
		r.Placements[n-1].End = t
	}
	host := m.Target
	if to == api.StateStopped {
		host = ""
		r.Home = m.Target
	}
	r.Action = ""
	if to == api.StateBoot {
		r.Action = api.ActionStart
	}
	why += volumesNote(r.MigVolumes, m.Target)
	if b := r.Boot; b != nil && b.Local && b.Host != "" && len(localVolumes(r.MigVolumes)) > 0 {
		nb := *b
		nb.Host = m.Target // its volume moved with it (migrate_volumes.go)
		r.Boot = &nb
	}
	r.transition(t, to, host, actor, why)
	m.Phase, m.Progress, m.Outcome = api.MigrationCleanup, 100, "completed"
}

// rollbackMigration leaves the instance on its source as it was before
// the migration (a cold move of a RUNNING one starts it again there) and
// asks the target to remove what it received.
func (svc *Service) rollbackMigration(r *record, t time.Time, actor, why string) {
	m := r.Migration
	to := m.From
	r.Action = ""
	if m.Mode == api.MigrateCold && m.From == api.StateRunning {
		to, r.Action = api.StateBoot, api.ActionStart
	}
	r.transition(t, to, "", actor, fmt.Sprintf("abandoned the migration to %s: %s; the instance stays on %s", m.Target, why, m.Source))
	if to == api.StateStopped {
		r.Host = ""
	}
	m.Phase, m.Outcome = api.MigrationRollback, "abandoned: "+why
}

// migrationController rolls back migrations whose agents went silent or
// whose deadline passed: it asks for a cancel at the deadline, and rolls
// back without the agents' word a grace later, or at once when the host
// that would have to say something stopped answering. Level-triggered
// from the cache: a restarted server carries on.
func (svc *Service) migrationController(ctx context.Context) {
	ctx = reqctx.WithActor(ctx, migrationActor)
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		svc.checkMigrations(ctx)
	}
}

func (svc *Service) checkMigrations(ctx context.Context) {
	svc.cache.mu.RLock()
	var changes []change
	for _, e := range svc.cache.migrating {
		if m := e.rec.Migration; m != nil && m.Phase == api.MigrationTransfer {
			if c, ok := svc.migrationCheck(e); ok {
				changes = append(changes, c)
			}
		}
	}
	svc.cache.mu.RUnlock()
	if len(changes) > 0 {
		svc.writeBatch(ctx, changes)
	}
}

// migrationCheck decides what to do about one migration in transfer.
func (svc *Service) migrationCheck(e *entry) (change, bool) {
	id := e.rec.Migration.ID
	decide := func(r *record) bool {
		m := r.Migration
		if m == nil || m.ID != id || m.Phase != api.MigrationTransfer {
			return false
		}
		t := svc.now()
		sent := m.Stats != nil && m.Stats.Status == "completed"
		srcAlive, _ := svc.hosts.Alive(m.Source)
		dstAlive, _ := svc.hosts.Alive(m.Target)
		switch {
		case !dstAlive && !sent:
			svc.rollbackMigration(r, t, migrationActor, fmt.Sprintf("target host %s stopped answering", m.Target))
		case !srcAlive && !sent && m.From != api.StateStopped && m.Mode == api.MigrateLive:
			// The source's agent carries the live stream: without it
			// nothing arrives; its QEMU (if alive) keeps the VM.
			svc.rollbackMigration(r, t, migrationActor, fmt.Sprintf("source host %s stopped answering", m.Source))
		case t.After(m.Deadline.Add(migrationGrace)) && !sent:
			svc.rollbackMigration(r, t, migrationActor, fmt.Sprintf("not done %s past its deadline", migrationGrace))
		case t.After(m.Deadline) && !m.Cancel && !sent:
			m.Cancel = true
			r.note(t, migrationActor, fmt.Sprintf("deadline %s passed: cancel asked", m.Deadline.Format(time.RFC3339)))
		default:
			return false
		}
		return true
	}
	r := e.rec.clone()
	if !decide(&r) {
		return change{}, false
	}
	return change{rec: r, rev: e.rev, redo: decide}, true
}

// assignmentMigration is what the agents see of r's migration.
func assignmentMigration(r *record) *api.AssignmentMigration {
	m := r.Migration
	if m == nil {
		return nil
	}
	return &api.AssignmentMigration{ID: m.ID, Source: m.Source, Target: m.Target, Mode: m.Mode, Phase: m.Phase, From: m.From, Cancel: m.Cancel, Volumes: r.MigVolumes}
}

// ActiveMigration finds a migration by id among the live instances, with
// the volumes it carries (read only: the record's own slice).
func (svc *Service) ActiveMigration(id string) (api.Migration, []api.MigrationVolume, bool) {
	svc.cache.mu.RLock()
	defer svc.cache.mu.RUnlock()
	for _, e := range svc.cache.migrating {
		if m := e.rec.Migration; m != nil && m.ID == id {
			return *m, e.rec.MigVolumes, true
		}
	}
	return api.Migration{}, nil, false
}
