package compute

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"

	"github.com/kumocloud/kumo/api"
	"github.com/kumocloud/kumo/internal/errs"
	"github.com/kumocloud/kumo/internal/scheduler"
)

// Evacuation empties a host: it is disabled (no new placements) and every
// instance on it, or STOPPED with its home there, migrates elsewhere -
// live where it can, cold otherwise - a few at a time. It is
// level-triggered: run again (after a restart) it carries on with what is
// still there.

// leaving lists the instances an evacuation of host has to move (sorted
// by project and name).
func (svc *Service) leaving(host string) []record {
	svc.cache.mu.RLock()
	defer svc.cache.mu.RUnlock()
	var out []record
	for _, e := range svc.cache.instances {
		r := &e.rec
		on := onHost(r.State) && r.Host == host || r.State == api.StateStopped && r.home() == host ||
			r.Migration != nil && r.Migration.Source == host && r.Migration.Phase == api.MigrationTransfer
		if on {
			out = append(out, r.clone())
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Project != out[j].Project {
			return out[i].Project < out[j].Project
		}
		return out[i].Name < out[j].Name
	})
	return out
}

// EvacuationPlan says where each instance of host would go now: one
// scheduler plan for all of them together (so they do not all count on
// the same free room), the host itself and hosts of another driver left
// out.
func (svc *Service) EvacuationPlan(ctx context.Context, host string) (api.EvacuationPlan, error) {
	if err := svc.Ready(ctx); err != nil {
		return api.EvacuationPlan{}, err
	}
	if _, err := svc.hosts.Get(ctx, host); err != nil {
		return api.EvacuationPlan{}, err
	}
	groups, err := svc.allGroups(ctx)
	if err != nil {
		return api.EvacuationPlan{}, err
	}
	recs := svc.leaving(host)
	plan := api.EvacuationPlan{Host: host, Moves: []api.EvacuationMove{}}
	svc.cache.mu.RLock()
	snap := svc.snapshot()
	drv := svc.cache.hosts[host].Driver
	others := map[string]bool{}
	for n, h := range svc.cache.hosts {
		others[n] = h.Driver != drv
	}
	svc.cache.mu.RUnlock()
	for i := range snap.Hosts {
		if h := &snap.Hosts[i]; h.Name == host || others[h.Name] {
			h.Enabled = false
		}
	}
	var reqs []scheduler.Request
	byID := map[string]*api.EvacuationMove{}
	plan.Moves = make([]api.EvacuationMove, len(recs))
	for i := range recs {
		r := &recs[i]
		plan.Moves[i] = api.EvacuationMove{Project: r.Project, Instance: r.Name}
		mv := &plan.Moves[i]
		if r.State == api.StateMigrate {
			mv.Target, mv.Mode, mv.Reason = r.Migration.Target, r.Migration.Mode, "migrating already"
			continue
		}
		if !slices.Contains(migratable, r.State) {
			mv.Reason = fmt.Sprintf("it is %s: only RUNNING, POWEROFF and STOPPED instances migrate", r.State)
			continue
		}
		mv.Mode, _ = svc.migrationMode(r, host, "")
		// A volume with snapshots makes a RUNNING VM move cold (what the
		// migration itself will decide).
		if _, mode, err := svc.migrationVolumes(ctx, r, mv.Mode, ""); err == nil {
			mv.Mode = mode
		}
		req := svc.request(r, groups)
		req.Home, req.Volumes = "", nil // its local volumes move with it, live or cold
		reqs = append(reqs, req)
		byID[r.ID] = mv
	}
	res := scheduler.Schedule(snap, reqs, svc.policy)
	for _, p := range res.Placements {
		byID[p.RequestID].Target = p.Host
	}
	for _, f := range res.Failures {
		byID[f.RequestID].Reason = f.Reason
	}
	return plan, nil
}

// Evacuate disables host and migrates everything off it, at most
// concurrency (default 2) at a time; progress, if not nil, is told how
// many of how many have left. It ends when nothing that can move is left;
// an error lists what stays and why.
func (svc *Service) Evacuate(ctx context.Context, host string, concurrency int, progress func(done, total int)) error {
	if concurrency <= 0 {
		concurrency = 2
	}
	off := false
	if _, err := svc.hosts.Patch(ctx, host, api.HostPatch{Enabled: &off}); err != nil {
		return err
	}
	total := len(svc.leaving(host))
	stuck := map[string]string{}
	for ctx.Err() == nil {
		recs := svc.leaving(host)
		if progress != nil {
			progress(max(total-len(recs), 0), max(total, 1))
		}
		var todo []record
		for _, r := range recs {
			if _, bad := stuck[r.Project+"/"+r.Name]; !bad {
				todo = append(todo, r)
			}
		}
		if len(todo) == 0 {
			break
		}
		sem := make(chan struct{}, concurrency)
		var mu sync.Mutex
		var wg sync.WaitGroup
		for _, r := range todo {
			wg.Add(1)
			sem <- struct{}{}
			go func() {
				defer wg.Done()
				defer func() { <-sem }()
				if err := svc.moveOff(ctx, r); err != nil {
					mu.Lock()
					stuck[r.Project+"/"+r.Name] = err.Error()
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if len(stuck) > 0 {
		var why []string
		for k, v := range stuck {
			why = append(why, k+": "+v)
		}
		sort.Strings(why)
		return errs.Conflict("%d instance(s) stay on %s: %s", len(stuck), host, strings.Join(why, "; "))
	}
	return nil
}

// moveOff migrates one instance off its host (or waits for the migration
// it is in) and says why not when it cannot.
func (svc *Service) moveOff(ctx context.Context, r record) error {
	id := ""
	if r.Migration != nil {
		id = r.Migration.ID
	} else {
		in, err := svc.Migrate(ctx, r.Project, r.Name, api.InstanceMigrate{})
		if errors.Is(err, errs.ErrNotFound) {
			return nil // gone meanwhile
		}
		if err != nil {
			// Migrating already (the cache was behind): follow that one.
			fresh, _, gerr := svc.get(ctx, r.Project, r.Name)
			if gerr != nil || fresh.Migration == nil || fresh.Migration.Source != r.Host && fresh.Migration.Source != r.home() {
				return err
			}
			in.Migration = fresh.Migration
		}
		id = in.Migration.ID
	}
	_, err := svc.WaitMigration(ctx, r.Project, r.Name, id, nil)
	return err
}
