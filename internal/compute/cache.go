package compute

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/kumocloud/kumo/api"
	"github.com/kumocloud/kumo/internal/hosts"
	"github.com/kumocloud/kumo/internal/store"
)

// cache is an in-memory copy of every live instance and host, kept by
// store watches (an informer). Controllers plan from it; every write they
// make is still a compare-and-swap on the store, so a stale cache can cost
// a retry but never a wrong write.
type cache struct {
	mu        sync.RWMutex
	instances map[string]*entry // store key -> entry
	byID      map[string]string // instance id -> store key
	hosts     map[string]api.Host
	instRev   int64         // newest instance change applied
	changed   chan struct{} // closed and replaced on every change
	ready     chan struct{}
}

type entry struct {
	rec record
	rev int64
}

func newCache() *cache {
	return &cache{instances: map[string]*entry{}, byID: map[string]string{}, hosts: map[string]api.Host{}, changed: make(chan struct{}), ready: make(chan struct{})}
}

// run fills the cache and follows the store until ctx ends, starting over
// (list, then watch) whenever a watch breaks.
func (c *cache) run(ctx context.Context, s store.Store, log *slog.Logger) {
	first := true
	for ctx.Err() == nil {
		err := c.sync(ctx, s, first)
		first = false
		if ctx.Err() != nil {
			return
		}
		log.Warn("instance cache resyncing", "err", err)
		time.Sleep(200 * time.Millisecond)
	}
}

func (c *cache) sync(ctx context.Context, s store.Store, first bool) error {
	ikvs, err := store.ListAll(ctx, s, instancesPrefix)
	if err != nil {
		return err
	}
	hkvs, err := store.ListAll(ctx, s, hosts.Prefix)
	if err != nil {
		return err
	}
	rev, err := s.Revision(ctx)
	if err != nil {
		return err
	}
	c.mu.Lock()
	c.instances, c.byID, c.hosts = map[string]*entry{}, map[string]string{}, map[string]api.Host{}
	for _, kv := range ikvs {
		c.putInstance(kv)
	}
	for _, kv := range hkvs {
		c.putHost(kv)
	}
	c.instRev = rev
	c.notify()
	c.mu.Unlock()
	if first {
		close(c.ready)
	}
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errc := make(chan error, 2)
	follow := func(prefix string, apply func(store.WatchEvent)) {
		for ev := range s.Watch(wctx, prefix, rev+1) {
			if ev.Err != nil {
				errc <- ev.Err
				return
			}
			c.mu.Lock()
			apply(ev)
			c.notify()
			c.mu.Unlock()
		}
		errc <- ctx.Err()
	}
	go follow(instancesPrefix, func(ev store.WatchEvent) {
		if ev.Type == store.EventPut {
			c.putInstance(ev.KV)
		} else if e, ok := c.instances[ev.KV.Key]; ok {
			delete(c.byID, e.rec.ID)
			delete(c.instances, ev.KV.Key)
		}
		// Publish a revision only once all its changes are in, or a
		// long poll could hand out half a transaction.
		if ev.RevisionEnd {
			c.instRev = max(c.instRev, ev.KV.Revision)
		}
	})
	go follow(hosts.Prefix, func(ev store.WatchEvent) {
		if ev.Type == store.EventPut {
			c.putHost(ev.KV)
		} else {
			delete(c.hosts, ev.KV.Key[len(hosts.Prefix):])
		}
	})
	return <-errc
}

func (c *cache) putInstance(kv store.KV) {
	var r record
	if store.Decode(kv, &r) != nil {
		return
	}
	c.instances[kv.Key] = &entry{rec: r, rev: kv.Revision}
	c.byID[r.ID] = kv.Key
}

func (c *cache) putHost(kv store.KV) {
	var h api.Host
	if store.Decode(kv, &h) != nil {
		return
	}
	h.Revision = kv.Revision
	c.hosts[h.Name] = h
}

// notify wakes waiters; called with mu held.
func (c *cache) notify() {
	close(c.changed)
	c.changed = make(chan struct{})
}

// waitRev waits until the cache has applied instance revision rev.
func (c *cache) waitRev(ctx context.Context, rev int64) {
	for {
		c.mu.RLock()
		done, ch := c.instRev >= rev, c.changed
		c.mu.RUnlock()
		if done {
			return
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return
		case <-time.After(5 * time.Second):
			return
		}
	}
}

// allocations sums, per host, what its instances take.
func (c *cache) allocations() map[string]api.Size {
	out := map[string]api.Size{}
	for _, e := range c.instances {
		if e.rec.Host != "" && onHost(e.rec.State) {
			a := out[e.rec.Host]
			a.VCPUs += e.rec.Size.VCPUs
			a.MemoryMiB += e.rec.Size.MemoryMiB
			a.DiskGiB += e.rec.Size.DiskGiB
			out[e.rec.Host] = a
		}
	}
	return out
}

func (c *cache) counts() map[string]int {
	out := map[string]int{}
	for _, e := range c.instances {
		if e.rec.Host != "" && onHost(e.rec.State) {
			out[e.rec.Host]++
		}
	}
	return out
}
