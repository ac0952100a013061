package compute

import (
	"time"

	"github.com/kumocloud/kumo/api"
	"github.com/kumocloud/kumo/internal/hosts"
)

// Usage agents report for their instances (CPU time, memory, readiness):
// kept in memory beside the cache, shown with the instances.

// SetAgentUsage keeps the latest usage an agent reported for instances on
// its hosts (others are ignored), in memory like liveness: it changes all
// the time and is worth nothing after a restart. us is filtered in place:
// the caller gives it up.
func (svc *Service) SetAgentUsage(agent *hosts.AgentPrincipal, us []api.InstanceUsage) {
	mine := us[:0]
	svc.cache.mu.RLock()
	for _, u := range us {
		if key, ok := svc.cache.byID[u.ID]; ok {
			if e := svc.cache.instances[key]; e != nil && onHost(e.rec.State) && agent.Hosts[e.rec.Host] {
				mine = append(mine, u)
			}
		}
	}
	svc.cache.mu.RUnlock()
	svc.setUsage(mine)
}

func (svc *Service) setUsage(us []api.InstanceUsage) {
	svc.usageMu.Lock()
	defer svc.usageMu.Unlock()
	for _, u := range us {
		svc.usage[u.ID] = u
	}
	// Forget instances nobody reported for ten minutes (gone, or their
	// host is): the map must not grow with every instance ever run. A
	// sweep reads the whole map, so it runs once a minute, not for every
	// batch (at 100,000 instances, 200 batches of 500 a round each read
	// 100,000 entries: a quarter of the server's CPU).
	if len(us) > 0 && us[0].At.Sub(svc.usageSwept) >= time.Minute {
		svc.usageSwept = us[0].At
		cutoff := us[0].At.Add(-10 * time.Minute)
		for id, u := range svc.usage {
			if u.At.Before(cutoff) {
				delete(svc.usage, id)
			}
		}
	}
}

// withUsage adds the latest reported usage to an instance.
func (svc *Service) withUsage(in api.Instance) api.Instance {
	svc.usageMu.Lock()
	defer svc.usageMu.Unlock()
	if u, ok := svc.usage[in.ID]; ok && onHost(in.State) {
		in.Usage = &u
		in.Ready = u.Ready && in.State == api.StateRunning
		in.ReadyReason = u.ReadyReason
	}
	return in
}
