package compute

import (
	"context"
	"errors"
	"sort"
	"sync"

	"github.com/kumocloud/kumo/internal/hosts"
	"github.com/kumocloud/kumo/internal/scheduler"
	"github.com/kumocloud/kumo/internal/store"
)

// A plan is made against the cache; its commit re-checks what it consumes
// against the store, as Nomad re-validates a node's plan at commit. Every
// placement onto a host writes the host's placement key in its own
// transaction, so the key's revision says when the host last gained an
// instance. A commit reads it, and places on the host only if the cache
// has seen every instance change up to that revision (so the host's
// allocation summed from the cache is exact: what it may lack since are
// departures, which only free room), checks the host's room again with
// that sum, and makes its transaction conditional on the key being
// unchanged. A stale cache or a placement by anyone else in between costs
// a round, never an overcommitted host. Keys: /placements/{host}.
const placementsPrefix = "/placements/"

func placementKey(host string) string { return placementsPrefix + host }

// placementMark is the value of a placement key.
type placementMark struct {
	// Last is the instance placed last.
	Last string `json:"last"`
}

// txnLimit bounds the operations (and the conditions) of one transaction:
// etcd takes at most 128 of each. A placement is two operations (its
// record, its event) and one condition; a host, one operation (its
// placement key) and two conditions (that key, its record).
const txnLimit = 120

// commitPlacements writes the plan's placements, each re-checked against
// its host as said above. It returns how many were written, the revision
// of the last write, and, when some host was skipped because the cache is
// behind it, the revision the cache must reach (else 0).
func (svc *Service) commitPlacements(ctx context.Context, placed []change) (int, int64, int64) {
	byHost := map[string][]change{}
	for _, c := range placed {
		byHost[c.rec.Host] = append(byHost[c.rec.Host], c)
	}
	hosts := make([]string, 0, len(byHost))
	for h := range byHost {
		hosts = append(hosts, h)
	}
	sort.Strings(hosts)
	n, last, behind := 0, int64(0), int64(0)
	var conds []store.Cond
	var ops []store.Op
	var batch []change
	flush := func() {
		if len(batch) == 0 {
			return
		}
		rev, err := svc.s.Txn(ctx, conds, ops)
		switch {
		case err == nil:
			n, last = n+len(batch), max(last, rev)
		case errors.Is(err, store.ErrConflict):
			svc.log.Debug("scheduler: a placement was stale; planning again", "placements", len(batch))
		default:
			svc.log.Warn("scheduler: writing placements", "err", err)
		}
		conds, ops, batch = nil, nil, nil
	}
	// The hosts' rechecks each read the store (a linearizable read: a
	// turn of the store's raft loop); made one after another they were
	// most of a round at 10,000 hosts, so they are made side by side (the
	// store answers concurrent reads together) and the commits follow in
	// host order.
	checks := make([]recheckResult, len(hosts))
	sem := make(chan struct{}, recheckParallel)
	var wg sync.WaitGroup
	for i, h := range hosts {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			c := &checks[i]
			c.fits, c.cond, c.hostCond, c.ok = svc.recheck(ctx, h, byHost[h])
		}()
	}
	wg.Wait()
	for i, h := range hosts {
		fits, cond, hostCond, ok := checks[i].fits, checks[i].cond, checks[i].hostCond, checks[i].ok
		if !ok {
			behind = max(behind, cond.Revision, 1)
			continue
		}
		// A host's placements share its key, so they go in one
		// transaction: more than one can take wait for the next round.
		fits = fits[:min(len(fits), (txnLimit-2)/2)]
		if len(ops)+2*len(fits)+1 > txnLimit || len(conds)+len(fits)+2 > txnLimit {
			flush()
		}
		for _, c := range fits {
			key := instanceKey(c.rec.Project, c.rec.Name)
			conds = append(conds, store.At(key, c.rev))
			ops = append(ops, store.PutJSON(key, c.rec), c.rec.event(ctx))
			batch = append(batch, c)
		}
		if len(fits) > 0 {
			conds = append(conds, cond, hostCond)
			ops = append(ops, store.PutJSON(placementKey(h), placementMark{Last: fits[len(fits)-1].rec.ID}))
		}
	}
	flush()
	return n, last, behind
}

// recheckParallel bounds the hosts rechecked at once in a commit.
const recheckParallel = 16

// recheckResult is what recheck returns for one host.
type recheckResult struct {
	fits           []change
	cond, hostCond store.Cond
	ok             bool
}

// recheck returns the placements on host that still fit it, by the
// store's word on when it last gained an instance, and the conditions
// that keep that word true until the commit: the placement key, and the
// host record as the plan saw it (a host deleted, disabled or gone
// OFFLINE meanwhile takes no placement). ok is false when the cache has
// not caught up with the host (the condition's revision is where it must
// reach), or the key cannot be read.
func (svc *Service) recheck(ctx context.Context, host string, placed []change) (fits []change, cond, hostCond store.Cond, ok bool) {
	kv, err := svc.s.Get(ctx, placementKey(host))
	switch {
	case errors.Is(err, store.ErrNotFound):
		cond = store.Absent(placementKey(host))
	case err != nil:
		svc.log.Warn("scheduler: reading a host's placements", "host", host, "err", err)
		return nil, cond, hostCond, false
	default:
		cond = store.At(placementKey(host), kv.Revision)
	}
	svc.cache.mu.RLock()
	defer svc.cache.mu.RUnlock()
	if svc.cache.instRev < kv.Revision {
		return nil, cond, hostCond, false
	}
	h, known := svc.cache.hosts[host]
	if !known {
		return nil, cond, hostCond, true
	}
	hostCond = store.At(hosts.Prefix+host, h.Revision)
	used := svc.cache.use[host].size
	sh := scheduler.Host{CPUs: h.Capacity.VCPUs, MemoryMiB: h.Capacity.MemoryMiB, DiskGiB: h.Capacity.DiskGiB,
		CPURatio: h.Ratios.CPU, MemRatio: h.Ratios.Memory, DiskRatio: h.Ratios.Disk}
	for _, c := range placed {
		used.VCPUs += c.rec.Size.VCPUs
		used.MemoryMiB += c.rec.Size.MemoryMiB
		used.DiskGiB += c.rec.Size.DiskGiB
		sh.Used = scheduler.Resources{VCPUs: used.VCPUs, MemoryMiB: used.MemoryMiB, DiskGiB: used.DiskGiB}
		if sh.FreeVCPUs() < 0 || sh.FreeMemory() < 0 || sh.FreeDisk() < 0 {
			svc.log.Debug("scheduler: a placement no longer fits at commit", "host", host, "instance", c.rec.Name)
			break
		}
		fits = append(fits, c)
	}
	return fits, cond, hostCond, true
}
