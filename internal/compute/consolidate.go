package compute

import (
	"context"
	"sort"
	"strings"

	"github.com/kumocloud/kumo/api"
	"github.com/kumocloud/kumo/internal/scheduler"
)

// Mover moves a live instance to another host and returns once it is
// there (or why it is not). Consolidation applies its plan through it.
type Mover interface {
	Migrate(ctx context.Context, project, name, targetHost string) error
}

// migrator is the service's own migration as a Mover: live where the
// instance can go live, cold otherwise, waited for to its end.
type migrator struct{ svc *Service }

func (m migrator) Migrate(ctx context.Context, project, name, target string) error {
	in, err := m.svc.Migrate(ctx, project, name, api.InstanceMigrate{Host: target})
	if err != nil {
		return err
	}
	if in.Migration == nil {
		return nil
	}
	_, err = m.svc.WaitMigration(ctx, project, name, in.Migration.ID, nil)
	return err
}

// movable says whether an instance in this state can be migrated.
func movable(s api.State) bool { return s == api.StateRunning || s == api.StatePoweroff }

// Consolidation plans the moves that empty the least-used hosts onto the
// others (scheduler.Consolidate) against the cache.
func (svc *Service) Consolidation(ctx context.Context) (api.Consolidation, error) {
	if err := svc.Ready(ctx); err != nil {
		return api.Consolidation{}, err
	}
	groups, err := svc.allGroups(ctx)
	if err != nil {
		return api.Consolidation{}, err
	}
	svc.cache.mu.RLock()
	snap := svc.snapshot()
	var placed []scheduler.Placed
	sizes := map[string]api.Size{}
	for _, e := range svc.cache.instances {
		r := &e.rec
		if !onHost(r.State) || r.Host == "" {
			continue
		}
		req := svc.request(r, groups)
		// Its local volumes move with it (live or cold), as in an
		// evacuation: they do not hold it on its host.
		req.ID, req.Home, req.Volumes = r.Project+"/"+r.Name, "", nil
		sizes[req.ID] = r.Size
		placed = append(placed, scheduler.Placed{Request: req, Host: r.Host, Movable: movable(r.State), Why: "it is " + string(r.State)})
	}
	svc.cache.mu.RUnlock()
	sort.Slice(placed, func(i, j int) bool { return placed[i].ID < placed[j].ID })
	plan := scheduler.Consolidate(snap, placed)
	out := api.Consolidation{HostsInUse: plan.InUse, HostsAfter: plan.After, Emptied: append([]string{}, plan.Emptied...),
		Moves: []api.ConsolidationMove{}, Kept: []api.ConsolidationKept{}}
	for _, m := range plan.Moves {
		project, name, _ := strings.Cut(m.RequestID, "/")
		out.Moves = append(out.Moves, api.ConsolidationMove{Project: project, Instance: name, From: m.From, To: m.To, Size: sizes[m.RequestID]})
	}
	for _, k := range plan.Kept {
		out.Kept = append(out.Kept, api.ConsolidationKept{Host: k.Host, Reason: k.Reason})
	}
	return out, nil
}

// Consolidate plans and applies: each move through the Mover, one at a
// time (a failed move is reported and the rest go on: the target may be
// full by now, the instance gone).
func (svc *Service) Consolidate(ctx context.Context) (api.Consolidation, error) {
	plan, err := svc.Consolidation(ctx)
	if err != nil {
		return plan, err
	}
	for i, m := range plan.Moves {
		if err := svc.mover.Migrate(ctx, m.Project, m.Instance, m.To); err != nil {
			plan.Moves[i].Error = err.Error()
		}
	}
	plan.Applied = true
	return plan, nil
}
