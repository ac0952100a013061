package agent

import (
	"context"
	"time"

	"github.com/kumocloud/kumo/api"
	"github.com/kumocloud/kumo/internal/driver"
)

// heartbeats tell the server, every HeartbeatEvery (and at once after a
// reconcile), which of the agent's hosts are alive and when it last
// reconciled. Their size does not grow
// with the instances it runs: liveness costs the same at 10 or 20,000
// instances (their usage travels apart, below).
func (a *Agent) heartbeats(ctx context.Context) {
	t := time.NewTicker(a.cfg.HeartbeatEvery)
	defer t.Stop()
	for {
		hb := api.Heartbeat{ReconciledAt: a.inst.reconciledAt(), NetworkSyncedAt: a.net.syncedAt()}
		if hh, err := driver.Feature[driver.HostHealth](a.cfg.Driver); err == nil {
			for h := range a.hostSet {
				if !hh.HostUp(h) {
					hb.Down = append(hb.Down, h)
				}
			}
		}
		if err := a.srv.c.AgentHeartbeat(ctx, a.srv.id, hb); err != nil && ctx.Err() == nil {
			a.log.Warn("heartbeat", "err", err)
		} else if err == nil {
			a.fence.contact()
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-a.kickBeat:
		}
	}
}

// usageBatch is how many instances' usage one request carries (the
// server takes at most api.MaxUsageBatch).
const usageBatch = 500

// usage sends what the running instances use - CPU time, memory,
// readiness - every UsageEvery in batches: a complete round. Soon after a
// guest's readiness changed (at most once a second) it sends a partial
// round: only the instances whose readiness differs from what this agent
// last sent of them, new ones included. A boot storm on an agent of
// 10,000 instances would otherwise send all of them every second.
//
// A partial round is safe because the server keeps the latest usage of
// each instance until a newer report (forgetting only those unreported
// for ten minutes: compute.SetAgentUsage), so what a partial round leaves
// out is still there. A report the server ignored (of an instance it
// did not place on this agent's hosts yet) is put right by the next
// complete round; a batch that failed is sent again by the next round.
func (a *Agent) usage(ctx context.Context) {
	t := time.NewTicker(a.cfg.UsageEvery)
	defer t.Stop()
	// sent is the readiness last sent of each instance, as of the last
	// complete round and the partial ones since.
	sent := map[string]readiness{}
	for {
		complete := false
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			complete = true
		case <-a.kickUsage:
		}
		sts, err := a.inst.statuses(ctx, time.Second)
		if err != nil {
			continue
		}
		now := time.Now().UTC()
		var us []api.InstanceUsage
		for _, st := range sts {
			if st.State != driver.Running && st.State != driver.Suspended {
				continue
			}
			if was, ok := sent[st.ID]; complete || !ok || was != (readiness{st.Ready, st.ReadyReason}) {
				us = append(us, api.InstanceUsage{ID: st.ID, CPUSeconds: st.CPUSeconds, MemoryMiB: st.MemoryMiB, Ready: st.Ready, ReadyReason: st.ReadyReason, At: now})
			}
		}
		if complete {
			// Instances gone since are forgotten, and so are those
			// whose batch fails below: sent again as new.
			sent = make(map[string]readiness, len(us))
		}
		for len(us) > 0 && ctx.Err() == nil {
			n := min(len(us), usageBatch)
			if err := a.srv.Usage(ctx, us[:n]); err != nil {
				if ctx.Err() == nil {
					a.log.Warn("usage", "err", err)
				}
				break
			}
			for _, u := range us[:n] {
				sent[u.ID] = readiness{u.Ready, u.ReadyReason}
			}
			us = us[n:]
		}
		sleep(ctx, time.Second)
	}
}

// readiness is what a usage report says of a guest being up.
type readiness struct {
	ready  bool
	reason string
}
