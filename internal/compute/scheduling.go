package compute

import (
	"context"
	"sort"
	"time"

	"github.com/kumocloud/kumo/api"
	"github.com/kumocloud/kumo/internal/reqctx"
	"github.com/kumocloud/kumo/internal/scheduler"
)

// snapshot builds the scheduler's view from the cache: hosts with their
// liveness and allocations, and where each server group's members are.
// Allocations are the cache's sums of the instances themselves (kept as
// instances change, never stored as counters), so they always equal the
// sum of the instances' flavors. Called with the cache read-locked.
func (svc *Service) snapshot() scheduler.Snapshot {
	use := svc.cache.use
	snap := scheduler.Snapshot{GroupHosts: svc.cache.groupHosts(), Hosts: make([]scheduler.Host, 0, len(svc.cache.hosts))}
	names := make([]string, 0, len(svc.cache.hosts))
	for name := range svc.cache.hosts {
		names = append(names, name)
	}
	alive := svc.hosts.AliveEach(names)
	for i, name := range names {
		h := svc.cache.hosts[name]
		attrs := svc.cache.attrs[h.Name]
		u := use[h.Name]
		a := u.size
		snap.Hosts = append(snap.Hosts, scheduler.Host{
			Name: h.Name, Enabled: h.Enabled, Online: alive[i], Draining: h.Draining,
			Kinds: h.Kinds, CPUs: h.Capacity.VCPUs, MemoryMiB: h.Capacity.MemoryMiB, DiskGiB: h.Capacity.DiskGiB,
			CPURatio: h.Ratios.CPU, MemRatio: h.Ratios.Memory, DiskRatio: h.Ratios.Disk, Attrs: attrs,
			Used: scheduler.Resources{VCPUs: a.VCPUs, MemoryMiB: a.MemoryMiB, DiskGiB: a.DiskGiB}, Instances: u.n,
		})
	}
	return snap
}

// request turns an instance into a scheduler request.
func (svc *Service) request(r *record, groups map[string]groupRecord) scheduler.Request {
	req := scheduler.Request{ID: r.ID, Kind: r.Type, Home: r.home(), Volumes: r.volumeNeeds(),
		Size: scheduler.Resources{VCPUs: r.Size.VCPUs, MemoryMiB: r.Size.MemoryMiB, DiskGiB: r.Size.DiskGiB}}
	if r.Requirements != "" {
		req.Requirements, _ = scheduler.Parse(r.Requirements)
	}
	if r.Rank != "" {
		req.Rank, _ = scheduler.Parse(r.Rank)
	}
	if r.ServerGroup != "" {
		if g, ok := groups[r.Project+"/"+r.ServerGroup]; ok {
			req.Group, req.GroupPolicy, req.GroupHard = r.Project+"/"+r.ServerGroup, g.Policy, g.Hard
		}
	}
	return req
}

// schedulerLoop plans every PENDING instance against one snapshot, commits
// the placements with compare-and-swap, and records why the rest fit
// nowhere. It runs when woken (a create, a release, a start) and every
// second, so instances are placed as soon as capacity appears.
func (svc *Service) schedulerLoop(ctx context.Context) {
	ctx = reqctx.WithActor(ctx, "scheduler")
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-svc.kick:
		case <-tick.C:
		}
		for ctx.Err() == nil {
			placed, rev, behind := svc.scheduleOnce(ctx)
			if placed == 0 && behind == 0 {
				break
			}
			// Let the cache see our writes (or what it was behind on)
			// before planning again. If it does not catch up, the next
			// tick tries: a commit never trusts a stale cache anyway.
			if !svc.cache.waitRev(ctx, max(rev, behind)) {
				break
			}
		}
	}
}

// scheduleOnce runs one round and returns how many instances it placed,
// the revision of its last write, and the revision the cache must reach
// to place on a host it was behind on (0: none). A round whose inputs cannot all be read
// is skipped: planning without the server groups would drop hard
// anti-affinity.
func (svc *Service) scheduleOnce(ctx context.Context) (int, int64, int64) {
	groups, err := svc.allGroups(ctx)
	if err != nil {
		svc.log.Warn("scheduler: server groups unreadable; skipping a round", "err", err)
		return 0, 0, 0
	}
	svc.cache.mu.RLock()
	var pending []*entry
	for _, e := range svc.cache.pending {
		pending = append(pending, e)
	}
	if len(pending) == 0 {
		svc.cache.mu.RUnlock()
		return 0, 0, 0
	}
	sort.Slice(pending, func(i, j int) bool {
		if !pending[i].rec.CreatedAt.Equal(pending[j].rec.CreatedAt) {
			return pending[i].rec.CreatedAt.Before(pending[j].rec.CreatedAt)
		}
		return pending[i].rec.ID < pending[j].rec.ID
	})
	snap := svc.snapshot()
	reqs := make([]scheduler.Request, len(pending))
	byID := map[string]*entry{}
	for i, e := range pending {
		reqs[i] = svc.request(&e.rec, groups)
		byID[e.rec.ID] = e
	}
	// Copies: the cache's records must not be changed in place.
	recs := map[string]record{}
	for id, e := range byID {
		recs[id] = e.rec.clone()
	}
	svc.cache.mu.RUnlock()

	plan := scheduler.Schedule(snap, reqs, svc.policy)
	var placed, changes []change
	for _, p := range plan.Placements {
		r := recs[p.RequestID]
		host := p.Host
		r.transition(svc.now(), api.StateProlog, host, "scheduler", "placed on "+host)
		placed = append(placed, change{rec: r, rev: byID[p.RequestID].rev})
	}
	n, rev, behind := svc.commitPlacements(ctx, placed)
	for _, f := range plan.Failures {
		r := recs[f.RequestID]
		if r.Reason == f.Reason && r.Unplaceable {
			continue // nothing new to say: no write
		}
		r.Reason, r.Unplaceable = f.Reason, true
		changes = append(changes, change{rec: r, rev: byID[f.RequestID].rev})
	}
	svc.writeBatch(ctx, changes)
	return n, rev, behind
}

// Explain says, for every host, why an instance can or cannot go there.
func (svc *Service) Explain(ctx context.Context, project, name string) (api.Explain, error) {
	r, _, err := svc.get(ctx, project, name)
	if err != nil {
		return api.Explain{}, svc.doneOr(ctx, project, name, "explain", err)
	}
	groups, err := svc.allGroups(ctx)
	if err != nil {
		return api.Explain{}, err
	}
	// Explain the instance as if it were not placed yet.
	snap, req := svc.unplacedView(&r, groups)
	res := scheduler.Explain(snap, req, svc.policy)
	out := api.Explain{Instance: name, Policy: svc.policy, Hosts: make([]api.ExplainHost, len(res))}
	if r.Rank != "" {
		out.Policy = "rank: " + r.Rank
	}
	for i, h := range res {
		out.Hosts[i] = api.ExplainHost{Host: h.Host, Feasible: h.Feasible, Reason: h.Reason, Score: h.Score}
	}
	out.Summary = scheduler.Summarize(snap.Hosts, &req, snap.GroupHosts)
	if len(snap.Hosts) == 0 {
		out.Summary = "no hosts have joined"
	}
	return out, nil
}

// HostUsage returns, per host, what its instances take and how many.
func (svc *Service) HostUsage() (map[string]api.Size, map[string]int) {
	svc.cache.mu.RLock()
	defer svc.cache.mu.RUnlock()
	return svc.cache.allocations(), svc.cache.counts()
}
