package compute

import (
	"context"
	"errors"
	"slices"
	"time"

	"github.com/kumocloud/kumo/api"
	"github.com/kumocloud/kumo/internal/errs"
	"github.com/kumocloud/kumo/internal/hosts"
	"github.com/kumocloud/kumo/internal/reqctx"
)

func assignment(e *entry) api.Assignment {
	r := &e.rec
	host := r.Host
	if host == "" {
		host = r.home()
	}
	return api.Assignment{ID: r.ID, Project: r.Project, Name: r.Name, Type: r.Type, Host: host, Size: r.Size,
		Image: r.Image, ImageSHA256: r.ImageSHA256, UserData: r.UserData, State: r.State, Action: r.Action, Revision: e.rev, NICs: r.NICs, Nesting: r.Nesting, HA: r.HA,
		Migration: assignmentMigration(r), BootVolume: r.bootID(), NewVolumes: r.NewVolumes, RootBackup: r.RootBackup}
}

// assignedHosts are the hosts whose agents have the instance: where it
// runs, or where a STOPPED one keeps its saved state; both ends of a
// migration under way.
func assignedHosts(r *record) []string {
	if m := r.Migration; m != nil {
		return []string{m.Source, m.Target}
	}
	switch {
	case onHost(r.State) && r.Host != "":
		return []string{r.Host}
	case r.State == api.StateStopped && r.home() != "":
		return []string{r.home()}
	}
	return nil
}

// Assignments returns the instances on an agent's hosts that changed after
// revision since (all of them when since is 0: a complete list), waiting
// up to wait for a change when there is none yet: the agent's long poll.
func (svc *Service) Assignments(ctx context.Context, agent *hosts.AgentPrincipal, since int64, wait time.Duration) (api.Assignments, error) {
	if err := svc.Ready(ctx); err != nil {
		return api.Assignments{}, err
	}
	deadline := time.NewTimer(wait)
	defer deadline.Stop()
	seen := since // the hostLog up to here holds none of the agent's hosts
	for {
		out, ch := svc.cache.assignmentsAfter(agent.Hosts, since, &seen)
		if len(out.Items) > 0 || since == 0 {
			return out, nil
		}
		select {
		case <-ch:
		case <-deadline.C:
			return out, nil
		case <-ctx.Done():
			return out, nil
		}
	}
}

// assignmentsAfter is one look of a long poll: the instances on hosts
// that changed after revision since (all when since is 0), and the channel
// closed by the cache's next change. seen is how far the hostLog is known
// to hold none of hosts' changes; it moves on here.
func (c *cache) assignmentsAfter(hosts map[string]bool, since int64, seen *int64) (api.Assignments, <-chan struct{}) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	out := api.Assignments{Items: []api.Assignment{}, Revision: c.instRev, Complete: since == 0}
	if since == 0 {
		// A complete list (an agent's resync, every 30 s): one
		// allocation of its size, not a slice grown 14 times for
		// 10,000 instances.
		n := 0
		for h := range hosts {
			n += len(c.assigned[h])
		}
		out.Items = make([]api.Assignment, 0, n)
	}
	if since == 0 || *seen < c.logFloor || c.changedFor(hosts, seen) {
		for h := range hosts {
			if c.assignedRev[h] <= since {
				continue
			}
			for _, e := range c.assigned[h] {
				if e.rev > since {
					out.Items = append(out.Items, assignment(e))
				}
			}
		}
	}
	return out, c.changed
}

// Report applies an agent's state reports. Each must name an instance on
// one of the agent's hosts, start from the state the instance is in, and
// be a move the agent table allows; others are rejected (and listed).
// Several reports for one instance are applied in order in one write.
//
// A report is never dropped because the store failed: then Report returns
// an error (the agent is answered 503) and the agent sends the batch
// again - harmless for the reports that were written, which no longer
// start from the instance's state and are skipped. A report lost that way
// left an instance PROLOG for ever on a host that ran it.
func (svc *Service) Report(ctx context.Context, agent *hosts.AgentPrincipal, reports []api.InstanceReport) (api.AgentReportResult, error) {
	ctx = reqctx.WithActor(ctx, "agent:"+agent.Name)
	res := api.AgentReportResult{Revisions: map[string]int64{}}
	byID := map[string][]api.InstanceReport{}
	var order []string
	for _, r := range reports {
		if _, ok := byID[r.ID]; !ok {
			order = append(order, r.ID)
		}
		byID[r.ID] = append(byID[r.ID], r)
	}
	// apply applies, in order, the reports that fit; reports that do not
	// (duplicates, or overtaken by a user action) are skipped.
	apply := func(rec *record, rs []api.InstanceReport) bool {
		applied := false
		for _, r := range rs {
			if !agent.Hosts[r.Host] || rec.Host != r.Host || rec.State != r.From || !agentMayReportFor(rec, r.To) {
				continue
			}
			applied = true
			rec.transition(svc.now(), r.To, "", "agent:"+agent.Name, r.Reason)
			if r.To == api.StateBoot {
				// Prepared: a restored root filesystem was taken, the
				// backup is no longer the instance's (rootbackup.go).
				rec.RootBackup = ""
			}
			if r.To == api.StateRunning || r.To == api.StateSuspended || r.To == api.StatePoweroff || r.To == api.StateStopped || r.To == api.StateDone || r.To == api.StateFailed {
				rec.Action = ""
			}
		}
		return applied
	}
	// An agent reporting on an instance of an OFFLINE host is alive: the
	// host goes ONLINE first, so that no instance is ever shown back to
	// RUNNING on a host still OFFLINE.
	svc.cache.mu.RLock()
	var back []string
	for _, id := range order {
		if e := svc.cache.instances[svc.cache.byID[id]]; e != nil && e.rec.State == api.StateUnknown && agent.Hosts[e.rec.Host] &&
			svc.cache.hosts[e.rec.Host].State == api.HostOffline && !slices.Contains(back, e.rec.Host) {
			back = append(back, e.rec.Host)
		}
	}
	svc.cache.mu.RUnlock()
	if len(back) > 0 {
		svc.hosts.Heartbeat(back, api.Heartbeat{})
		for _, h := range back {
			if _, err := svc.hosts.SetState(ctx, h, api.HostOnline); err != nil {
				svc.log.Warn("host back online", "host", h, "err", err)
			}
		}
	}
	var changes []change
	svc.cache.mu.RLock()
	for _, id := range order {
		key, ok := svc.cache.byID[id]
		e := svc.cache.instances[key]
		if !ok || e == nil {
			res.Rejected = append(res.Rejected, id)
			continue
		}
		rec, rev := e.rec.clone(), e.rev
		rs := byID[id]
		if !apply(&rec, rs) {
			// The cache may be behind the agent's previous report.
			svc.cache.mu.RUnlock()
			fresh, frev, err := svc.get(ctx, e.rec.Project, e.rec.Name)
			if err != nil && !errors.Is(err, errs.ErrNotFound) {
				return res, err
			}
			ok := err == nil && apply(&fresh, rs)
			svc.cache.mu.RLock()
			if !ok {
				res.Rejected = append(res.Rejected, id)
				continue
			}
			rec, rev = fresh, frev
		}
		changes = append(changes, change{rec: rec, rev: rev, redo: func(f *record) bool { return apply(f, rs) }})
	}
	svc.cache.mu.RUnlock()
	revs, _, werr := svc.writeBatch(ctx, changes)
	res.Applied, res.Revisions = len(revs), revs
	for _, c := range changes {
		if _, ok := revs[c.rec.ID]; !ok {
			res.Rejected = append(res.Rejected, c.rec.ID)
		}
	}
	if werr != nil {
		return res, errs.Unavailable("writing the reports: %v; send them again", werr)
	}
	return res, nil
}

// agentMayReportFor checks a move against the agent table, given the
// action in progress. An UNKNOWN instance whose host is back may return to
// what its driver says it is.
func agentMayReportFor(rec *record, to api.State) bool {
	if rec.State == api.StateUnknown {
		return to == api.StateRunning || to == api.StateSuspended || to == api.StatePoweroff || to == api.StateFailed
	}
	return agentMayReport(rec.State, rec.Action, to)
}
