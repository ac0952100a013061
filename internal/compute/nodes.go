package compute

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/kumocloud/kumo/api"
	"github.com/kumocloud/kumo/internal/hosts"
	"github.com/kumocloud/kumo/internal/reqctx"
	"github.com/kumocloud/kumo/internal/store"
)

// nodeController turns silent hosts OFFLINE and their instances UNKNOWN
// (never DONE, and nothing is rescheduled: the host may still run them),
// and hosts that beat again ONLINE; their agents then report the
// instances, which return to RUNNING.
func (svc *Service) nodeController(ctx context.Context) {
	ctx = reqctx.WithActor(ctx, "node-controller")
	period := min(time.Second, svc.hosts.Grace()/3)
	t := time.NewTicker(period)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		svc.checkNodes(ctx)
	}
}

// lostHost is a host the controller found silent, with its instances.
type lostHost struct {
	host      api.Host
	instances []change
}

// checkNodes makes one decision per host: a host silent past the grace
// goes OFFLINE in the same transaction as its instances go UNKNOWN -
// conditional on the host, its placements and each instance being as the
// decision saw them, and taken only if the host is still silent at that
// moment (a heartbeat that came meanwhile cancels it). A host that beats
// again goes ONLINE; its agent's reports bring its instances back.
func (svc *Service) checkNodes(ctx context.Context) {
	svc.cache.mu.RLock()
	var up []string
	var down []*lostHost
	byHost := map[string]*lostHost{}
	for _, h := range svc.cache.hosts {
		alive, _ := svc.hosts.Alive(h.Name)
		switch {
		case !alive && h.State != api.HostOffline:
			lh := &lostHost{host: h}
			down = append(down, lh)
			byHost[h.Name] = lh
		case alive && h.State == api.HostOffline:
			up = append(up, h.Name)
		case h.State == api.HostOffline:
			// Already OFFLINE, but an instance is not UNKNOWN yet (the
			// rest of a host with more instances than one transaction
			// takes, or a crash between writes): caught here.
			byHost[h.Name] = &lostHost{host: h}
		}
	}
	// Only the silent hosts' instances, from the cache's index (a loop
	// over every instance each second was a sixth of the server's work
	// at 100,000).
	for name, lh := range byHost {
		for _, e := range svc.cache.assigned[name] {
			if onHost(e.rec.State) && e.rec.State != api.StateUnknown {
				lh.instances = append(lh.instances, svc.unknownChange(e))
			}
		}
	}
	instRev := svc.cache.instRev
	svc.cache.mu.RUnlock()

	isDown := map[string]bool{}
	for _, lh := range down {
		isDown[lh.host.Name] = true
		if alive, _ := svc.hosts.Alive(lh.host.Name); alive {
			continue // it beat since: no decision
		}
		if err := svc.declareLost(ctx, lh, instRev); err != nil {
			svc.log.Debug("host offline: decision taken again next round", "host", lh.host.Name, "err", err)
			continue
		}
		svc.log.Warn("host offline", "host", lh.host.Name, "instances", len(lh.instances))
	}
	var rest []change
	for name, lh := range byHost {
		if !isDown[name] {
			rest = append(rest, lh.instances...)
		}
	}
	if len(rest) > 0 {
		svc.writeBatch(ctx, rest)
	}
	for _, n := range up {
		if _, err := svc.hosts.SetState(ctx, n, api.HostOnline); err == nil {
			svc.log.Info("host back online", "host", n)
		}
		svc.wake()
	}
}

// unknownChange moves an instance to UNKNOWN because its host is silent.
func (svc *Service) unknownChange(e *entry) change {
	r := e.rec.clone()
	host := r.Host
	reason := func() string {
		_, seen := svc.hosts.Alive(host)
		why := fmt.Sprintf("host %s stopped answering", host)
		if !seen.IsZero() {
			why += " (last heartbeat " + seen.UTC().Format(time.RFC3339Nano) + ")"
		}
		return why
	}
	lose := func(f *record) bool {
		if !onHost(f.State) || f.State == api.StateUnknown || f.Host != host {
			return false
		}
		f.Action = ""
		f.transition(svc.now(), api.StateUnknown, "", "node-controller", reason())
		return true
	}
	lose(&r)
	return change{rec: r, rev: e.rev, redo: lose}
}

// lostChunk is how many instances go UNKNOWN in the transaction that
// takes their host OFFLINE (etcd allows 128 operations: two an instance);
// the rest follow at once, the host being OFFLINE already.
const lostChunk = 60

// declareLost writes a silent host OFFLINE together with its instances
// going UNKNOWN (the first lostChunk of them; the rest right after),
// conditional on the host record, its placement key and every instance
// being as the decision saw them: a placement or a report that came in
// between makes the decision be taken again.
func (svc *Service) declareLost(ctx context.Context, lh *lostHost, instRev int64) error {
	pk, err := svc.s.Get(ctx, placementKey(lh.host.Name))
	placed := store.Absent(placementKey(lh.host.Name))
	switch {
	case err == nil:
		if pk.Revision > instRev {
			return errors.New("the cache has not seen the host's last placement")
		}
		placed = store.At(placementKey(lh.host.Name), pk.Revision)
	case !errors.Is(err, store.ErrNotFound):
		return err
	}
	sort.Slice(lh.instances, func(i, j int) bool { return lh.instances[i].rec.ID < lh.instances[j].rec.ID })
	first := lh.instances[:min(len(lh.instances), lostChunk)]
	hostCond, ops := hosts.StateChange(ctx, lh.host, api.HostOffline)
	conds := []store.Cond{hostCond, placed}
	for _, c := range first {
		key := instanceKey(c.rec.Project, c.rec.Name)
		conds = append(conds, store.At(key, c.rev))
		ops = append(ops, store.PutJSON(key, c.rec), c.rec.event(ctx))
	}
	if _, err := svc.s.Txn(ctx, conds, ops); err != nil {
		return err
	}
	if rest := lh.instances[len(first):]; len(rest) > 0 {
		svc.writeBatch(ctx, rest)
	}
	return nil
}
