package store

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"strings"
	"sync"
)

// Cached is a Store that answers Get and List under some prefixes from
// memory: per-create reads of rarely written records (tokens, users,
// projects, flavors, images, quota) would otherwise each be a round trip
// through the store's consensus. Each cached prefix is kept by Reflect
// (list at one revision, then watch), and every write made through
// Cached is also applied to its copy as soon as the store has taken it
// (write-through), so this process reads its own writes at once: a token
// revoked here is refused on the very next request. Writes by other
// processes sharing the store arrive with the watch, a few milliseconds
// later.
//
// Reads stay reads: every decision is still a conditional write on the
// store, so a copy behind the store costs a conflict, never a wrong
// write; and when a write fails on a condition, the keys it named are
// read again from the store into the copy (repair), so the caller's retry
// reads what the store holds. Everything outside the prefixes goes
// straight to the store.
type Cached struct {
	Store
	caches []*prefixCache
}

// NewCached serves the prefixes from memory until ctx ends. Reads under a
// prefix wait for its first listing.
func NewCached(ctx context.Context, s Store, log *slog.Logger, prefixes ...string) *Cached {
	c := &Cached{Store: s}
	for _, p := range prefixes {
		pc := &prefixCache{prefix: p, kvs: map[string]KV{}, tombs: map[string]int64{}, ready: make(chan struct{})}
		c.caches = append(c.caches, pc)
		go Reflect(ctx, s, p, pc, log)
	}
	return c
}

type prefixCache struct {
	prefix  string
	mu      sync.RWMutex
	kvs     map[string]KV
	applied int64 // the watch has brought every change up to this revision
	// ahead is the newest revision written into the copy by this process
	// (or a repair) rather than by the watch: until the watch passes it,
	// the copy is no picture of one revision, and listings go to the
	// store.
	ahead int64
	// tombs: keys this process deleted, with the revision they were
	// known at; an older change the watch brings late must not bring
	// them back.
	tombs   map[string]int64
	pending []WatchEvent // changes of a revision not yet complete
	ready   chan struct{}
	once    sync.Once
}

func (c *Cached) cacheFor(key string) *prefixCache {
	for _, pc := range c.caches {
		if strings.HasPrefix(key, pc.prefix) {
			return pc
		}
	}
	return nil
}

func (pc *prefixCache) wait(ctx context.Context) error {
	select {
	case <-pc.ready:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Get implements Store.
func (c *Cached) Get(ctx context.Context, key string) (KV, error) {
	pc := c.cacheFor(key)
	if pc == nil {
		return c.Store.Get(ctx, key)
	}
	if err := pc.wait(ctx); err != nil {
		return KV{}, err
	}
	pc.mu.RLock()
	kv, ok := pc.kvs[key]
	pc.mu.RUnlock()
	if !ok {
		return KV{}, ErrNotFound
	}
	return kv, nil
}

// List implements Store. A listing within a cached prefix is answered
// from the copy, at the revision the copy has reached; a later page that
// asks for that revision once the copy has moved on goes to the store.
func (c *Cached) List(ctx context.Context, prefix string, page Page) (ListResult, error) {
	pc := c.cacheFor(prefix)
	if pc == nil {
		return c.Store.List(ctx, prefix, page)
	}
	if err := pc.wait(ctx); err != nil {
		return ListResult{}, err
	}
	pc.mu.RLock()
	defer pc.mu.RUnlock()
	if (page.Revision != 0 && page.Revision != pc.applied) || pc.ahead > pc.applied {
		return c.Store.List(ctx, prefix, page)
	}
	var keys []string
	for k := range pc.kvs {
		if strings.HasPrefix(k, prefix) && k > page.After {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	res := ListResult{Revision: pc.applied}
	if page.Limit > 0 && len(keys) > page.Limit {
		keys, res.More = keys[:page.Limit], true
	}
	res.KVs = make([]KV, len(keys))
	for i, k := range keys {
		res.KVs[i] = pc.kvs[k]
	}
	return res, nil
}

// Create implements Store.
func (c *Cached) Create(ctx context.Context, key string, value []byte) (int64, error) {
	rev, err := c.Store.Create(ctx, key, value)
	c.wrote(ctx, nil, []Op{Put(key, value)}, rev, err)
	return rev, err
}

// Update implements Store.
func (c *Cached) Update(ctx context.Context, key string, value []byte, rev int64) (int64, error) {
	wrev, err := c.Store.Update(ctx, key, value, rev)
	c.wrote(ctx, []Cond{At(key, rev)}, []Op{Put(key, value)}, wrev, err)
	return wrev, err
}

// Txn implements Store.
func (c *Cached) Txn(ctx context.Context, conds []Cond, ops []Op) (int64, error) {
	rev, err := c.Store.Txn(ctx, conds, ops)
	c.wrote(ctx, conds, ops, rev, err)
	return rev, err
}

// Delete implements Store. Under a cached prefix a conditional delete is
// made as a transaction, whose revision the copy then records exactly; an
// unconditional one records the store's revision after it, so listings go
// to the store until the watch has passed the deletion.
func (c *Cached) Delete(ctx context.Context, key string, rev int64) error {
	pc := c.cacheFor(key)
	if pc == nil {
		return c.Store.Delete(ctx, key, rev)
	}
	if rev > 0 {
		wrev, err := c.Store.Txn(ctx, []Cond{At(key, rev)}, []Op{Del(key)})
		if errors.Is(err, ErrConflict) {
			c.repair(ctx, key)
			if _, gerr := c.Store.Get(ctx, key); errors.Is(gerr, ErrNotFound) {
				return ErrNotFound
			}
			return ErrConflict
		}
		c.wrote(ctx, nil, []Op{Del(key)}, wrev, err)
		return err
	}
	pc.mu.RLock()
	known := pc.kvs[key].Revision
	pc.mu.RUnlock()
	err := c.Store.Delete(ctx, key, 0)
	if err != nil {
		if errors.Is(err, ErrNotFound) {
			c.repair(ctx, key)
		}
		return err
	}
	after, rerr := c.Store.Revision(ctx)
	pc.mu.Lock()
	defer pc.mu.Unlock()
	// The deletion's own revision is not known here; what the key was at
	// is, and nothing at or before it may bring it back.
	if kv, ok := pc.kvs[key]; ok && kv.Revision <= known {
		delete(pc.kvs, key)
	}
	pc.tombs[key] = max(pc.tombs[key], known)
	if rerr != nil {
		after = pc.applied + 1
	}
	pc.ahead = max(pc.ahead, after)
	return nil
}

// wrote applies a write the store took (err nil, at rev) to the copies,
// or repairs the keys of a write that failed on a condition.
func (c *Cached) wrote(ctx context.Context, conds []Cond, ops []Op, rev int64, err error) {
	if err != nil {
		if errors.Is(err, ErrConflict) || errors.Is(err, ErrExists) || errors.Is(err, ErrNotFound) {
			for _, cd := range conds {
				c.repair(ctx, cd.Key)
			}
			for _, op := range ops {
				c.repair(ctx, op.Key)
			}
		}
		return
	}
	for _, op := range ops {
		pc := c.cacheFor(op.Key)
		if pc == nil {
			continue
		}
		pc.mu.Lock()
		if op.Kind == OpDelete {
			if kv, ok := pc.kvs[op.Key]; !ok || kv.Revision < rev {
				delete(pc.kvs, op.Key)
			}
			pc.tombs[op.Key] = max(pc.tombs[op.Key], rev)
		} else if kv, ok := pc.kvs[op.Key]; !ok || kv.Revision < rev {
			created := rev
			if ok {
				created = kv.CreateRevision
			}
			pc.kvs[op.Key] = KV{Key: op.Key, Value: op.Value, Revision: rev, CreateRevision: created}
		}
		pc.ahead = max(pc.ahead, rev)
		pc.mu.Unlock()
	}
}

// repair reads a cached key from the store into the copy when the copy
// is behind: a write conditional on it failed, and the caller's retry
// must read what the store holds, not the copy's older version.
func (c *Cached) repair(ctx context.Context, key string) {
	pc := c.cacheFor(key)
	if pc == nil {
		return
	}
	kv, err := c.Store.Get(ctx, key)
	if err != nil && !errors.Is(err, ErrNotFound) {
		return
	}
	pc.mu.Lock()
	defer pc.mu.Unlock()
	cur, ok := pc.kvs[key]
	switch {
	case err == nil && (!ok || cur.Revision < kv.Revision):
		if t, dead := pc.tombs[key]; dead && kv.Revision <= t {
			return
		}
		pc.kvs[key] = kv
		pc.ahead = max(pc.ahead, kv.Revision)
	case err != nil && ok:
		// Gone from the store: deleted after the version held.
		delete(pc.kvs, key)
		pc.tombs[key] = max(pc.tombs[key], cur.Revision)
	}
}

// Replace implements View.
func (pc *prefixCache) Replace(kvs []KV, rev int64) {
	pc.mu.Lock()
	defer pc.mu.Unlock()
	fresh := make(map[string]KV, len(kvs))
	for _, kv := range kvs {
		if t, ok := pc.tombs[kv.Key]; !ok || kv.Revision > t {
			fresh[kv.Key] = kv
		}
	}
	// Writes of this process newer than the listing stay.
	for k, kv := range pc.kvs {
		if kv.Revision > rev {
			fresh[k] = kv
		}
	}
	pc.kvs, pc.applied, pc.pending = fresh, rev, nil
	pc.pruneTombs()
	pc.once.Do(func() { close(pc.ready) })
}

// Apply implements View: a revision's changes are applied together, when
// its last one arrives, so no read sees half a transaction.
func (pc *prefixCache) Apply(ev WatchEvent) {
	pc.mu.Lock()
	defer pc.mu.Unlock()
	pc.pending = append(pc.pending, ev)
	if !ev.RevisionEnd {
		return
	}
	for _, e := range pc.pending {
		k := e.KV.Key
		cur, ok := pc.kvs[k]
		if ok && cur.Revision >= e.KV.Revision {
			continue // this process has written it since
		}
		if e.Type == EventDelete {
			delete(pc.kvs, k)
			continue
		}
		if t, dead := pc.tombs[k]; dead && e.KV.Revision <= t {
			continue
		}
		pc.kvs[k] = e.KV
	}
	pc.pending = pc.pending[:0]
	pc.applied = ev.KV.Revision
	pc.pruneTombs()
}

// pruneTombs forgets deletions the watch has passed: nothing older can
// arrive any more.
func (pc *prefixCache) pruneTombs() {
	for k, t := range pc.tombs {
		if t <= pc.applied {
			delete(pc.tombs, k)
		}
	}
}
