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
// readiness - every UsageEvery in batches, and soon after a guest's
// readiness changed (at most once a second: a boot storm sends a round a
// second, not one per guest).
func (a *Agent) usage(ctx context.Context) {
	t := time.NewTicker(a.cfg.UsageEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-a.kickUsage:
		}
		sts, err := a.inst.statuses(ctx, time.Second)
		if err != nil {
			continue
		}
		now := time.Now().UTC()
		var us []api.InstanceUsage
		for _, st := range sts {
			if st.State == driver.Running || st.State == driver.Suspended {
				us = append(us, api.InstanceUsage{ID: st.ID, CPUSeconds: st.CPUSeconds, MemoryMiB: st.MemoryMiB, Ready: st.Ready, ReadyReason: st.ReadyReason, At: now})
			}
		}
		for len(us) > 0 && ctx.Err() == nil {
			n := min(len(us), usageBatch)
			if err := a.srv.Usage(ctx, us[:n]); err != nil && ctx.Err() == nil {
				a.log.Warn("usage", "err", err)
				break
			}
			us = us[n:]
		}
		sleep(ctx, time.Second)
	}
}
