package compute

import (
	"context"
	"fmt"
	"time"

	"github.com/kumocloud/kumo/api"
	"github.com/kumocloud/kumo/internal/reqctx"
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

func (svc *Service) checkNodes(ctx context.Context) {
	svc.cache.mu.RLock()
	var down, up []string
	for _, h := range svc.cache.hosts {
		alive, _ := svc.hosts.Alive(h.Name)
		switch {
		case !alive && h.State != api.HostOffline:
			down = append(down, h.Name)
		case alive && h.State == api.HostOffline:
			up = append(up, h.Name)
		}
	}
	// Instances on hosts already offline that are not UNKNOWN yet (a crash
	// between the two writes) are caught here too.
	lost := map[string]bool{}
	for _, h := range svc.cache.hosts {
		if h.State == api.HostOffline {
			lost[h.Name] = true
		}
	}
	for _, n := range down {
		lost[n] = true
	}
	var changes []change
	for _, e := range svc.cache.instances {
		if lost[e.rec.Host] && onHost(e.rec.State) && e.rec.State != api.StateUnknown {
			r := e.rec.clone()
			_, seen := svc.hosts.Alive(r.Host)
			reason := fmt.Sprintf("host %s stopped answering", r.Host)
			if !seen.IsZero() {
				reason += " (last heartbeat " + seen.UTC().Format(time.RFC3339) + ")"
			}
			r.Action = ""
			r.transition(svc.now(), api.StateUnknown, "", "node-controller", reason)
			changes = append(changes, change{rec: r, rev: e.rev, redo: func(f *record) bool {
				if !onHost(f.State) || f.State == api.StateUnknown || f.Host != r.Host {
					return false
				}
				f.Action = ""
				f.transition(svc.now(), api.StateUnknown, "", "node-controller", reason)
				return true
			}})
		}
	}
	svc.cache.mu.RUnlock()
	for _, n := range down {
		if _, err := svc.hosts.SetState(ctx, n, api.HostOffline); err == nil {
			svc.log.Warn("host offline", "host", n)
		}
	}
	if len(changes) > 0 {
		svc.writeBatch(ctx, changes)
	}
	for _, n := range up {
		if _, err := svc.hosts.SetState(ctx, n, api.HostOnline); err == nil {
			svc.log.Info("host back online", "host", n)
		}
		svc.wake()
	}
}
