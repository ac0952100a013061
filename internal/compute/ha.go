package compute

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/kumocloud/kumo/api"
	"github.com/kumocloud/kumo/internal/hosts"
	"github.com/kumocloud/kumo/internal/reqctx"
	"github.com/kumocloud/kumo/internal/store"
	"github.com/kumocloud/kumo/internal/volumes"
)

// High availability (docs/ha.md). An HA instance whose host is lost - the
// node controller took the host OFFLINE and the instance UNKNOWN - is
// recreated on another host from its image once the host has stayed lost
// past the fence timeout. The timeout is what makes this safe: the host's
// agent stops its HA instances itself (self-fencing, internal/agent/fence.go)
// when it has not reached the server for its fence grace, which it
// registers with its hosts; the server recreates only when that grace, plus
// a margin, is shorter than the fence timeout, so by then the old copy is
// stopped. The decision is one compare-and-swap on the instance (UNKNOWN ->
// PENDING, its placement on the lost host closed) conditional on the host
// record being the OFFLINE one the decision saw: a host that came back
// meanwhile cancels it, and an instance already PENDING is never decided
// again. The scheduler then places it like any PENDING instance (its lost
// home forgotten), with its ports and their addresses. When the old host
// returns, its agent's complete assignment list no longer names the
// instance, and its housekeeping sweep removes the fenced copy.
//
// Volumes (internal/volumes/ha.go): an instance whose volumes are all in
// a shared pool is recreated with them - it boots from its shared boot
// volume, its data volumes are attached again at the same devices or
// paths - and their attachments change hands in the decision's own
// transaction. One with a volume of a local pool is not recreated: its
// bytes are on the lost host. The decision says so, once, in its history,
// and the instance stays UNKNOWN until the host returns.
//
// A host that returns before the timeout finds its fenced HA instances
// stopped; its agent reports them POWEROFF with a reason that starts with
// api.SelfFenced, and this controller starts them again there.

// DefaultFenceTimeout is how long an HA instance's host stays lost before
// the instance is recreated elsewhere.
const DefaultFenceTimeout = 60 * time.Second

// fenceMargin is what the fence timeout must exceed an agent's fence grace
// by: time for the agent's stop to finish, and clock slack.
const fenceMargin = 5 * time.Second

type haConfig struct {
	timeout time.Duration
	// started is when this server's HA controller started: an agent may
	// have reached the previous server process until its last moment, so
	// nothing is recreated before a full timeout after a restart.
	started time.Time
}

func newHAConfig(timeout time.Duration) haConfig {
	if timeout <= 0 {
		timeout = DefaultFenceTimeout
	}
	return haConfig{timeout: timeout}
}

// FenceTimeout is the fence timeout in force.
func (svc *Service) FenceTimeout() time.Duration { return svc.ha.timeout }

// haVerdict is the HA decision for one instance.
type haVerdict int

const (
	haWait     haVerdict = iota // not yet (or nothing to do)
	haRecreate                  // recreate it elsewhere now
	haRefuse                    // never, while things stay so: Reason says why
)

// haDecide decides for an HA instance that is UNKNOWN on an OFFLINE host:
// alive and lastSeen are the host's liveness as this server knows it,
// now the clock, vols the volumes attached to it (nil: not looked at yet;
// a recreate is decided only once they have been). It returns the verdict
// and its reason.
func haDecide(r *record, h api.Host, alive bool, lastSeen, started, now time.Time, timeout time.Duration, vols []volumes.HAVolume) (haVerdict, string) {
	lostAt, from := r.UpdatedAt, api.State("")
	for i := len(r.History) - 1; i >= 0; i-- {
		// (A note - an earlier refusal - changes no state.)
		if r.History[i].To == api.StateUnknown && r.History[i].From != api.StateUnknown {
			lostAt, from = r.History[i].Time, r.History[i].From
			break
		}
	}
	switch {
	case from != api.StateRunning && from != api.StateBoot && from != api.StateProlog:
		return haRefuse, fmt.Sprintf("HA: not recreated: it was %s when host %s was lost (only running instances are)", from, h.Name)
	case h.FenceGraceSeconds <= 0:
		return haRefuse, fmt.Sprintf("HA: not recreated: the agent of host %s does not self-fence, so the instance may still run there", h.Name)
	case time.Duration(h.FenceGraceSeconds)*time.Second+fenceMargin > timeout:
		return haRefuse, fmt.Sprintf("HA: not recreated: host %s's agent self-fences after %ds, too close to the server's fence timeout %s", h.Name, h.FenceGraceSeconds, timeout)
	case alive:
		return haWait, ""
	}
	since := lostAt
	if lastSeen.After(since) {
		since = lastSeen
	}
	if started.After(since) {
		since = started
	}
	if now.Sub(since) < timeout {
		return haWait, ""
	}
	var local, shared []string
	for _, v := range vols {
		at := v.Device + v.Path
		if !v.Local {
			shared = append(shared, v.Name+" ("+at+")")
			continue
		}
		where := "lost host " + h.Name
		if v.Host != "" && v.Host != h.Name {
			where = "host " + v.Host
		}
		local = append(local, fmt.Sprintf("volume %s (%s) lives on %s (local pool)", v.Name, at, where))
	}
	if len(local) > 0 {
		return haRefuse, fmt.Sprintf("HA: not recreated: %s: its data cannot follow the instance to another host, so it stays UNKNOWN until host %s returns",
			strings.Join(local, "; "), h.Name)
	}
	what := "from image " + r.Image
	switch {
	case r.Boot != nil && len(shared) > 1:
		what = fmt.Sprintf("booting from its boot volume %s, with its shared volumes %s", r.BootVolume, strings.Join(shared, ", "))
	case r.Boot != nil:
		what = "booting from its boot volume " + r.BootVolume + " (shared pool)"
	case len(shared) > 0:
		what += ", with its shared volumes " + strings.Join(shared, ", ")
	}
	return haRecreate, fmt.Sprintf("HA: host %s lost since %s, past the fence timeout %s (its agent self-fences after %ds); recreating on another host %s",
		h.Name, lostAt.UTC().Format(time.RFC3339), timeout, h.FenceGraceSeconds, what)
}

// haController decides for HA instances every second (level-triggered:
// everything it needs is in the store and the cache).
func (svc *Service) haController(ctx context.Context) {
	ctx = reqctx.WithActor(ctx, "ha")
	svc.ha.started = svc.now()
	t := time.NewTicker(min(time.Second, svc.ha.timeout/4))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		svc.checkHA(ctx)
	}
}

// haCandidate is an instance the HA controller looks at, with the host
// record it was seen with.
type haCandidate struct {
	e    entry
	host api.Host
}

// checkHA makes one round of HA decisions and returns how many instances
// it recreated or restarted.
func (svc *Service) checkHA(ctx context.Context) int {
	svc.cache.mu.RLock()
	var lost, fenced []haCandidate
	for _, e := range svc.cache.ha {
		h, ok := svc.cache.hosts[e.rec.Host]
		switch {
		case !ok:
		case e.rec.State == api.StateUnknown && h.State == api.HostOffline:
			lost = append(lost, haCandidate{e: entry{rec: e.rec.clone(), rev: e.rev}, host: h})
		case e.rec.State == api.StatePoweroff && e.rec.Action == "" && h.State != api.HostOffline && selfFenced(&e.rec):
			fenced = append(fenced, haCandidate{e: entry{rec: e.rec.clone(), rev: e.rev}, host: h})
		}
	}
	svc.cache.mu.RUnlock()
	sort.Slice(lost, func(i, j int) bool { return lost[i].e.rec.ID < lost[j].e.rec.ID })
	n := 0
	for _, c := range lost {
		alive, seen := svc.hosts.Alive(c.host.Name)
		now := svc.now()
		v, why := haDecide(&c.e.rec, c.host, alive, seen, svc.ha.started, now, svc.ha.timeout, nil)
		var plan volumes.HAPlan
		if v == haRecreate {
			var err error
			if plan, err = svc.volumes.PlanHA(ctx, c.e.rec.Project, c.e.rec.ID); err != nil {
				svc.log.Warn("ha: reading an instance's volumes", "instance", c.e.rec.Project+"/"+c.e.rec.Name, "err", err)
				continue
			}
			v, why = haDecide(&c.e.rec, c.host, alive, seen, svc.ha.started, now, svc.ha.timeout, plan.Volumes)
		}
		r := c.e.rec
		switch v {
		case haWait:
			continue
		case haRefuse:
			if r.Reason == why {
				continue
			}
			// Said once: in the history as a note (no state changes),
			// and as the instance's reason.
			r.note(now, "ha", why)
			r.Reason = why
			plan = volumes.HAPlan{}
		case haRecreate:
			r.Action, r.Rehome = "", r.Host
			// Its new host's PROLOG waits until its data volumes are
			// attached there (as for its boot volume), so it starts with
			// them; cleared once it runs.
			r.NewVolumes = nil
			for _, v := range plan.Volumes {
				if v.ID != r.bootID() {
					r.NewVolumes = append(r.NewVolumes, v.ID)
				}
			}
			r.transition(now, api.StatePending, "", "ha", why)
		}
		err := svc.haWrite(ctx, r, c, plan)
		switch {
		case err != nil && !errors.Is(err, store.ErrConflict):
			svc.log.Warn("ha: writing a decision", "instance", r.Project+"/"+r.Name, "err", err)
		case err != nil:
			svc.log.Debug("ha: the instance or its host changed; deciding again", "instance", r.Project+"/"+r.Name)
		case v == haRecreate:
			svc.log.Warn("ha: recreating an instance of a lost host", "instance", r.Project+"/"+r.Name, "host", c.host.Name)
			n++
		}
	}
	for _, c := range fenced {
		if alive, _ := svc.hosts.Alive(c.host.Name); !alive {
			continue
		}
		r := c.e.rec
		r.Action = api.ActionStart
		r.transition(svc.now(), api.StateBoot, "", "ha", "HA: started again: its host's agent had stopped it (self-fencing) and the host is back")
		if err := svc.haWrite(ctx, r, c, volumes.HAPlan{}); err != nil {
			svc.log.Debug("ha: restarting a fenced instance", "instance", r.Project+"/"+r.Name, "err", err)
			continue
		}
		n++
	}
	if n > 0 {
		svc.wake()
	}
	return n
}

// haWrite writes a decision: CAS on the instance, on the host record the
// decision saw and on the volumes it read; with the volumes' changes.
func (svc *Service) haWrite(ctx context.Context, r record, c haCandidate, plan volumes.HAPlan) error {
	key := instanceKey(r.Project, r.Name)
	_, err := svc.s.Txn(ctx,
		append([]store.Cond{store.At(key, c.e.rev), store.At(hosts.Prefix+c.host.Name, c.host.Revision)}, plan.Conds...),
		append([]store.Op{store.PutJSON(key, r), r.event(ctx)}, plan.Ops...))
	return err
}

// Rehoming says whether an HA decision is recreating the instance on
// another host and it is not placed there yet (volumes.Rehoming).
func (svc *Service) Rehoming(project, name string) bool {
	svc.cache.mu.RLock()
	defer svc.cache.mu.RUnlock()
	e := svc.cache.instances[instanceKey(project, name)]
	return e != nil && e.rec.Rehome != ""
}

// selfFenced says whether the instance's last move was its agent stopping
// it by self-fencing.
func selfFenced(r *record) bool {
	n := len(r.History)
	return n > 0 && r.History[n-1].To == api.StatePoweroff && strings.HasPrefix(r.History[n-1].Actor, "agent:") &&
		strings.HasPrefix(r.History[n-1].Reason, api.SelfFenced)
}
