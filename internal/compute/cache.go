package compute

import (
	"context"
	"log/slog"
	"reflect"
	"slices"
	"sort"
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
	// attrs is, per host, its attributes with its labels over them, as
	// the scheduler matches them: made when a host changes, not in every
	// round for every host (shared, never changed in place).
	attrs map[string]map[string]string
	// use sums, per host, what the instances on it take, kept as
	// instances come and go (a scheduler round reads it for every host;
	// summing 100,000 instances each round was most of a round's work);
	// groups counts the members of each server group on each host.
	use    map[string]hostUse
	groups map[string]map[string]int // "project/group" -> host -> members
	// assigned indexes instances by the host whose agent has them
	// (assignedHosts), and assignedRev is the newest revision of any of
	// them: an agent's long poll looks at its own hosts only, and skips
	// those with nothing newer than it has (scanning every instance for
	// each of ten agents' polls was most of the server's work at 100,000
	// instances).
	assigned    map[string]map[string]*entry // host -> store key -> entry
	assignedRev map[string]int64
	// hostLog lists, in revision order, each raise of an assignedRev
	// since logFloor (older ones may be gone): a long poll woken by a
	// change reads what changed since it last looked instead of all its
	// agent's hosts (every change woke ten agents' polls, each looking at
	// its 1,000 hosts: a quarter of the server's CPU at 100,000 instances
	// on 10,000 hosts).
	hostLog  []hostChange
	logFloor int64
	// pending indexes the PENDING instances: a scheduler round plans
	// them only (scanning 100,000 instances for a few new ones was most
	// of a round at scale).
	pending map[string]*entry // store key -> entry
	// ha and migrating index the HA instances and those with a migration
	// under way: the HA and migration controllers look at them every
	// second (scanning 100,000 instances twice a second for the few that
	// matter held the cache's lock, and the scheduler and agents' polls
	// queued behind a waiting writer, at scale).
	ha, migrating map[string]*entry // store key -> entry
	instRev       int64             // newest instance change applied
	changed       chan struct{}     // closed and replaced on every change
	// netChanged is closed and replaced on a change that can change
	// agents' network views (placedNICs): an instance's ports coming,
	// going or moving, a host's address. Agents' long polls of their
	// views wait on it, not on every instance write (progress reports,
	// state changes of instances without ports).
	netChanged chan struct{}
	ready      chan struct{}
	// followers are fed every live instance and each change as the
	// cache applies it (follow): metering's running totals share the
	// cache's one decode of each change instead of watching and decoding
	// every instance again (at 100,000 instances a second decoded copy
	// of every record and its history, and 6% of the create path).
	followers  map[int]MeteredSink
	nextFollow int
}

// hostUse is what a host's instances take, and how many there are.
type hostUse struct {
	size api.Size
	n    int
}

type entry struct {
	rec record
	rev int64
}

func newCache() *cache {
	c := &cache{hosts: map[string]api.Host{}, attrs: map[string]map[string]string{}, changed: make(chan struct{}), netChanged: make(chan struct{}), ready: make(chan struct{}),
		followers: map[int]MeteredSink{}}
	c.clearInstances()
	return c
}

func (c *cache) clearInstances() {
	c.instances, c.byID = map[string]*entry{}, map[string]string{}
	c.use, c.groups = map[string]hostUse{}, map[string]map[string]int{}
	c.assigned, c.assignedRev = map[string]map[string]*entry{}, map[string]int64{}
	c.pending = map[string]*entry{}
	c.ha, c.migrating = map[string]*entry{}, map[string]*entry{}
}

// index adds an instance's entry to (sign 1) or takes it from (sign -1)
// the assignments of its hosts, and the pending, HA and migrating
// instances.
func (c *cache) index(key string, e *entry, sign int) {
	for _, set := range []struct {
		in bool
		m  map[string]*entry
	}{{e.rec.State == api.StatePending, c.pending}, {e.rec.HA, c.ha}, {e.rec.Migration != nil, c.migrating}} {
		switch {
		case !set.in:
		case sign < 0:
			delete(set.m, key)
		default:
			set.m[key] = e
		}
	}
	for _, h := range assignedHosts(&e.rec) {
		if sign < 0 {
			if delete(c.assigned[h], key); len(c.assigned[h]) == 0 {
				delete(c.assigned, h)
			}
			continue
		}
		if c.assigned[h] == nil {
			c.assigned[h] = map[string]*entry{}
		}
		c.assigned[h][key] = e
		c.assignedRev[h] = max(c.assignedRev[h], e.rev)
		c.logChange(e.rev, h)
	}
}

// hostChange is an entry of the cache's hostLog.
type hostChange struct {
	rev  int64
	host string
}

// maxHostLog bounds the hostLog; past it the older half is dropped (a
// poll from before the floor looks at all its hosts).
var maxHostLog = 100_000

func (c *cache) logChange(rev int64, host string) {
	c.hostLog = append(c.hostLog, hostChange{rev, host})
	if len(c.hostLog) > maxHostLog {
		half := len(c.hostLog) / 2
		c.logFloor = c.hostLog[half-1].rev
		c.hostLog = append([]hostChange(nil), c.hostLog[half:]...)
	}
}

// changedFor says whether any of hosts had an assignment change after
// *seen, as far as the hostLog tells (callers check *seen >= logFloor),
// and moves *seen past what it read when none had - but never past
// instRev: the log's newest revision may be a transaction only partly
// applied, and its other changes, logged later at the same revision,
// would be behind *seen and never looked at.
func (c *cache) changedFor(hosts map[string]bool, seen *int64) bool {
	i := sort.Search(len(c.hostLog), func(i int) bool { return c.hostLog[i].rev > *seen })
	for _, ch := range c.hostLog[i:] {
		if hosts[ch.host] {
			return true
		}
	}
	if n := len(c.hostLog); n > 0 {
		*seen = max(*seen, min(c.hostLog[n-1].rev, c.instRev))
	}
	return false
}

// count adds (sign 1) or takes away (sign -1) what an instance takes from
// its host's use and its group's members there.
func (c *cache) count(r *record, sign int) {
	if r.Host != "" && onHost(r.State) {
		c.countOn(r, r.Host, sign)
	}
	// A migration holds its target's room too (migrations.go).
	if t := migrationHold(r); t != "" && t != r.Host {
		c.countOn(r, t, sign)
	}
}

func (c *cache) countOn(r *record, host string, sign int) {
	u := c.use[host]
	u.size.VCPUs += int64(sign) * r.Size.VCPUs
	u.size.MemoryMiB += int64(sign) * r.Size.MemoryMiB
	u.size.DiskGiB += int64(sign) * r.Size.DiskGiB
	u.n += sign
	if u.n == 0 {
		delete(c.use, host)
	} else {
		c.use[host] = u
	}
	if r.ServerGroup != "" {
		g := r.Project + "/" + r.ServerGroup
		if c.groups[g] == nil {
			c.groups[g] = map[string]int{}
		}
		if c.groups[g][host] += sign; c.groups[g][host] == 0 {
			delete(c.groups[g], host)
		}
		if len(c.groups[g]) == 0 {
			delete(c.groups, g)
		}
	}
}

// run fills the cache and follows the store until ctx ends. Each prefix
// is kept by a store.Reflect (list at one revision, then watch from the
// next), so no write is ever missed; the cache is ready once both have
// been listed.
func (c *cache) run(ctx context.Context, s store.Store, log *slog.Logger) {
	var listed sync.WaitGroup
	listed.Add(2)
	go store.Reflect(ctx, s, instancesPrefix, &instanceView{cacheView{c: c, listed: &listed}}, log)
	go store.Reflect(ctx, s, hosts.Prefix, &hostView{cacheView{c: c, listed: &listed}}, log)
	go func() {
		listed.Wait()
		close(c.ready)
	}()
	<-ctx.Done()
}

// cacheView is what the cache's views of its two prefixes share: the
// cache, and saying once that their first listing is in.
type cacheView struct {
	c      *cache
	listed *sync.WaitGroup
	once   sync.Once
}

// replace runs fill under the cache's lock, wakes waiters, and counts the
// first listing.
func (v *cacheView) replace(fill func(c *cache)) {
	v.c.mu.Lock()
	fill(v.c)
	v.c.notify()
	v.c.notifyNet()
	v.c.mu.Unlock()
	v.once.Do(v.listed.Done)
}

// instanceView is the cache's instances as a store.View.
type instanceView struct{ cacheView }

func (v *instanceView) Replace(kvs []store.KV, rev int64) {
	v.replace(func(c *cache) {
		c.clearInstances()
		for _, kv := range kvs {
			c.putInstance(kv)
		}
		// A listing indexes in key order, not revision order: the log
		// starts afresh after it.
		c.hostLog, c.logFloor = nil, rev
		c.instRev = max(c.instRev, rev)
		if len(c.followers) > 0 {
			all := c.metered()
			for _, f := range c.followers {
				f.Replace(SourceLive, all)
			}
		}
	})
}

func (v *instanceView) Apply(ev store.WatchEvent) {
	c := v.c
	c.mu.Lock()
	defer c.mu.Unlock()
	old, had := c.instances[ev.KV.Key]
	switch {
	case had && old.rev >= ev.KV.Revision:
		// A replay of what the cache holds (a resumed watch).
	case ev.Type == store.EventPut:
		if had {
			delete(c.byID, old.rec.ID)
			c.count(&old.rec, -1)
			c.index(ev.KV.Key, old, -1)
		}
		e := c.putInstance(ev.KV)
		if e == nil || !had || !samePlacedNICs(&old.rec, &e.rec) {
			c.notifyNet()
		}
		if e != nil {
			for _, f := range c.followers {
				f.Put(SourceLive, ev.KV.Key, e.metered())
			}
		}
	case had:
		delete(c.byID, old.rec.ID)
		delete(c.instances, ev.KV.Key)
		c.count(&old.rec, -1)
		c.index(ev.KV.Key, old, -1)
		if !samePlacedNICs(&old.rec, &record{}) {
			c.notifyNet()
		}
		for _, f := range c.followers {
			f.Delete(SourceLive, ev.KV.Key)
		}
	}
	// Publish a revision only once all its changes are in, or a long
	// poll could hand out half a transaction.
	if ev.RevisionEnd {
		c.instRev = max(c.instRev, ev.KV.Revision)
	}
	c.notify()
}

// hostView is the cache's hosts as a store.View.
type hostView struct{ cacheView }

func (v *hostView) Replace(kvs []store.KV, _ int64) {
	v.replace(func(c *cache) {
		c.hosts, c.attrs = map[string]api.Host{}, map[string]map[string]string{}
		for _, kv := range kvs {
			c.putHost(kv)
		}
	})
}

func (v *hostView) Apply(ev store.WatchEvent) {
	c := v.c
	c.mu.Lock()
	defer c.mu.Unlock()
	name := ev.KV.Key[len(hosts.Prefix):]
	old, had := c.hosts[name]
	if had && old.Revision >= ev.KV.Revision {
		return // a replay
	}
	if ev.Type == store.EventPut {
		c.putHost(ev.KV)
	} else {
		delete(c.hosts, name)
		delete(c.attrs, name)
	}
	if now, ok := c.hosts[name]; ok != had || now.Address != old.Address {
		c.notifyNet() // a VXLAN endpoint came, went or moved
	}
	c.notify()
}

// putInstance decodes and indexes one instance; nil if it does not
// decode.
func (c *cache) putInstance(kv store.KV) *entry {
	var r record
	if store.Decode(kv, &r) != nil {
		return nil
	}
	e := &entry{rec: r, rev: kv.Revision}
	c.instances[kv.Key] = e
	c.byID[r.ID] = kv.Key
	c.count(&r, 1)
	c.index(kv.Key, e, 1)
	return e
}

// metered is what metering reads of an entry: the record's history is
// shared, never changed in place (a change is a new entry).
func (e *entry) metered() Metered {
	return Metered{Instance: e.rec.Instance, History: e.rec.History}
}

// metered is every live instance for metering; under c.mu.
func (c *cache) metered() map[string]Metered {
	out := make(map[string]Metered, len(c.instances))
	for k, e := range c.instances {
		out[k] = e.metered()
	}
	return out
}

// follow feeds sink with every live instance once the cache has them,
// then with each change in the order the cache applies them, until ctx
// ends. The sink is called under the cache's lock: it must be quick and
// must not call back into the cache.
func (c *cache) follow(ctx context.Context, sink MeteredSink) {
	select {
	case <-c.ready:
	case <-ctx.Done():
		return
	}
	c.mu.Lock()
	id := c.nextFollow
	c.nextFollow++
	c.followers[id] = sink
	sink.Replace(SourceLive, c.metered())
	c.mu.Unlock()
	<-ctx.Done()
	c.mu.Lock()
	delete(c.followers, id)
	c.mu.Unlock()
}

func (c *cache) putHost(kv store.KV) {
	var h api.Host
	if store.Decode(kv, &h) != nil {
		return
	}
	h.Revision = kv.Revision
	c.hosts[h.Name] = h
	attrs := make(map[string]string, len(h.Attributes)+len(h.Labels))
	for k, v := range h.Attributes {
		attrs[k] = v
	}
	for k, v := range h.Labels {
		attrs[k] = v
	}
	c.attrs[h.Name] = attrs
}

// notify wakes waiters; called with mu held.
func (c *cache) notify() {
	close(c.changed)
	c.changed = make(chan struct{})
}

// notifyNet wakes the waiters for network changes; called with mu held.
func (c *cache) notifyNet() {
	close(c.netChanged)
	c.netChanged = make(chan struct{})
}

// samePlacedNICs says whether two versions of an instance place the same
// ports on the same hosts (placedNICs would list the same for both).
func samePlacedNICs(a, b *record) bool {
	ha, hb := placedHost(a), placedHost(b)
	if (ha == "" || len(a.NICs) == 0) && (hb == "" || len(b.NICs) == 0) {
		return true // neither places a port (a PENDING one getting its ports)
	}
	return ha == hb && liveTarget(a) == liveTarget(b) && a.Name == b.Name &&
		slices.EqualFunc(a.NICs, b.NICs, func(x, y api.InstanceNIC) bool { return reflect.DeepEqual(x, y) })
}

// waitRev waits (up to 5 s) until the cache has applied instance
// revision rev, and says whether it has.
func (c *cache) waitRev(ctx context.Context, rev int64) bool {
	timeout := time.NewTimer(5 * time.Second)
	defer timeout.Stop()
	for {
		c.mu.RLock()
		done, ch := c.instRev >= rev, c.changed
		c.mu.RUnlock()
		if done {
			return true
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return false
		case <-timeout.C:
			return false
		}
	}
}

// allocations is, per host, what its instances take.
func (c *cache) allocations() map[string]api.Size {
	out := make(map[string]api.Size, len(c.use))
	for h, u := range c.use {
		out[h] = u.size
	}
	return out
}

// counts is, per host, how many instances it holds.
func (c *cache) counts() map[string]int {
	out := make(map[string]int, len(c.use))
	for h, u := range c.use {
		out[h] = u.n
	}
	return out
}

// groupHosts is, per server group, how many members each host holds (a
// copy: the scheduler's plan adds its own placements to it).
func (c *cache) groupHosts() map[string]map[string]int {
	out := make(map[string]map[string]int, len(c.groups))
	for g, hs := range c.groups {
		out[g] = make(map[string]int, len(hs))
		for h, n := range hs {
			out[g][h] = n
		}
	}
	return out
}
