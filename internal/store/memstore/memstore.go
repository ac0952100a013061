// Package memstore is an in-memory store.Store for unit tests. It keeps the
// same semantics as etcd (global revisions, CAS, atomic transactions, watch
// from a revision) and passes the same conformance suite.
package memstore

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"

	"github.com/kumocloud/kumo/internal/store"
)

// historyLimit bounds the watch history kept; older revisions are compacted.
const historyLimit = 100000

// Store is an in-memory store.Store.
type Store struct {
	mu  sync.Mutex
	rev int64
	kvs map[string]store.KV
	// versions keeps each key's writes (and deletions) since the
	// compacted revision, plus the last one before it, so a listing can be
	// read as of any revision the store still keeps, as etcd's MVCC does.
	versions map[string][]version
	history  []store.WatchEvent
	// compacted is the newest revision no longer in history.
	compacted int64
	changed   chan struct{} // closed and replaced on every write
}

var _ store.Store = (*Store)(nil)

// version is one write of a key: its value then, or its deletion.
type version struct {
	kv      store.KV
	deleted bool
}

// New returns an empty store.
func New() *Store {
	return &Store{kvs: map[string]store.KV{}, versions: map[string][]version{}, changed: make(chan struct{})}
}

func copyKV(kv store.KV) store.KV {
	kv.Value = append([]byte(nil), kv.Value...)
	return kv
}

// Get implements store.Store.
func (s *Store) Get(ctx context.Context, key string) (store.KV, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	kv, ok := s.kvs[key]
	if !ok {
		return store.KV{}, store.ErrNotFound
	}
	return copyKV(kv), nil
}

// List implements store.Store.
func (s *Store) List(ctx context.Context, prefix string, page store.Page) (store.ListResult, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	at := page.Revision
	switch {
	case at <= 0:
		at = s.rev
	case at < s.compacted:
		return store.ListResult{}, fmt.Errorf("listing %s at revision %d: %w", prefix, at, store.ErrCompacted)
	case at > s.rev:
		return store.ListResult{}, fmt.Errorf("listing %s at revision %d: the store is only at %d", prefix, at, s.rev)
	}
	found := map[string]store.KV{}
	for k, vs := range s.versions {
		if !strings.HasPrefix(k, prefix) || k <= page.After {
			continue
		}
		// The newest write at or before the revision asked for.
		i := sort.Search(len(vs), func(i int) bool { return vs[i].kv.Revision > at }) - 1
		if i >= 0 && !vs[i].deleted {
			found[k] = vs[i].kv
		}
	}
	keys := make([]string, 0, len(found))
	for k := range found {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	res := store.ListResult{Revision: at}
	if page.Limit > 0 && len(keys) > page.Limit {
		keys = keys[:page.Limit]
		res.More = true
	}
	for _, k := range keys {
		res.KVs = append(res.KVs, copyKV(found[k]))
	}
	return res, nil
}

// Create implements store.Store.
func (s *Store) Create(ctx context.Context, key string, value []byte) (int64, error) {
	rev, err := s.Txn(ctx, []store.Cond{store.Absent(key)}, []store.Op{store.Put(key, value)})
	if err == store.ErrConflict {
		return 0, store.ErrExists
	}
	return rev, err
}

// Update implements store.Store.
func (s *Store) Update(ctx context.Context, key string, value []byte, rev int64) (int64, error) {
	if rev <= 0 {
		return 0, store.ErrConflict
	}
	n, err := s.Txn(ctx, []store.Cond{store.At(key, rev)}, []store.Op{store.Put(key, value)})
	if err == store.ErrConflict {
		if _, gerr := s.Get(ctx, key); gerr == store.ErrNotFound {
			return 0, store.ErrNotFound
		}
	}
	return n, err
}

// Delete implements store.Store.
func (s *Store) Delete(ctx context.Context, key string, rev int64) error {
	s.mu.Lock()
	kv, ok := s.kvs[key]
	s.mu.Unlock()
	if !ok {
		return store.ErrNotFound
	}
	cond := store.At(key, kv.Revision)
	if rev > 0 {
		cond.Revision = rev
	}
	_, err := s.Txn(ctx, []store.Cond{cond}, []store.Op{store.Del(key)})
	if err == store.ErrConflict {
		if _, gerr := s.Get(ctx, key); gerr == store.ErrNotFound {
			return store.ErrNotFound
		}
	}
	return err
}

// Txn implements store.Store.
func (s *Store) Txn(ctx context.Context, conds []store.Cond, ops []store.Op) (int64, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	if len(ops) > store.MaxTxnOps || len(conds) > store.MaxTxnOps {
		return 0, fmt.Errorf("a transaction of %d operations and %d conditions: at most %d of each", len(ops), len(conds), store.MaxTxnOps)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range conds {
		kv, ok := s.kvs[c.Key]
		if c.Revision == 0 && ok || c.Revision != 0 && (!ok || kv.Revision != c.Revision) {
			return 0, store.ErrConflict
		}
	}
	if len(ops) == 0 {
		return s.rev, nil
	}
	s.rev++
	for _, op := range ops {
		switch op.Kind {
		case store.OpPut:
			kv := store.KV{Key: op.Key, Value: append([]byte(nil), op.Value...), Revision: s.rev, CreateRevision: s.rev}
			if old, ok := s.kvs[op.Key]; ok {
				kv.CreateRevision = old.CreateRevision
			}
			s.kvs[op.Key] = kv
			s.versions[op.Key] = append(s.versions[op.Key], version{kv: kv})
			s.record(store.WatchEvent{Type: store.EventPut, KV: copyKV(kv)})
		case store.OpDelete:
			if _, ok := s.kvs[op.Key]; ok {
				delete(s.kvs, op.Key)
				gone := store.KV{Key: op.Key, Revision: s.rev}
				s.versions[op.Key] = append(s.versions[op.Key], version{kv: gone, deleted: true})
				s.record(store.WatchEvent{Type: store.EventDelete, KV: gone})
			}
		}
	}
	close(s.changed)
	s.changed = make(chan struct{})
	return s.rev, nil
}

func (s *Store) record(ev store.WatchEvent) {
	s.history = append(s.history, ev)
	if len(s.history) > historyLimit {
		drop := len(s.history) - historyLimit/2
		s.compacted = s.history[drop-1].KV.Revision
		s.history = append([]store.WatchEvent(nil), s.history[drop:]...)
		s.compactVersions()
	}
}

// compactVersions forgets versions no read can ask for any more: of the
// writes at or before the compacted revision only the newest stays (a
// read at exactly that revision still sees it), and a key whose newest
// such write is its deletion goes altogether.
func (s *Store) compactVersions() {
	for k, vs := range s.versions {
		i := sort.Search(len(vs), func(i int) bool { return vs[i].kv.Revision > s.compacted }) - 1
		if i > 0 {
			vs = append([]version(nil), vs[i:]...)
		}
		if len(vs) > 0 && vs[0].deleted && vs[0].kv.Revision <= s.compacted {
			vs = vs[1:]
		}
		if len(vs) == 0 {
			delete(s.versions, k)
		} else {
			s.versions[k] = vs
		}
	}
}

// Watch implements store.Store.
func (s *Store) Watch(ctx context.Context, prefix string, fromRev int64) <-chan store.WatchEvent {
	out := make(chan store.WatchEvent, 64)
	s.mu.Lock()
	next := fromRev
	if next <= 0 {
		next = s.rev + 1
	}
	s.mu.Unlock()
	go func() {
		defer close(out)
		for {
			s.mu.Lock()
			if next <= s.compacted {
				s.mu.Unlock()
				select {
				case out <- store.WatchEvent{Err: store.ErrCompacted}:
				case <-ctx.Done():
				}
				return
			}
			i := sort.Search(len(s.history), func(i int) bool { return s.history[i].KV.Revision >= next })
			batch := make([]store.WatchEvent, 0, len(s.history)-i)
			for _, ev := range s.history[i:] {
				if strings.HasPrefix(ev.KV.Key, prefix) {
					batch = append(batch, ev)
				}
			}
			next = s.rev + 1
			changed := s.changed
			s.mu.Unlock()
			for i := range batch {
				batch[i].RevisionEnd = i == len(batch)-1 || batch[i+1].KV.Revision != batch[i].KV.Revision
			}
			for _, ev := range batch {
				select {
				case out <- ev:
				case <-ctx.Done():
					return
				}
			}
			select {
			case <-changed:
			case <-ctx.Done():
				return
			}
		}
	}()
	return out
}

// Revision implements store.Store.
func (s *Store) Revision(ctx context.Context) (int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.rev, nil
}

// Close implements store.Store.
func (s *Store) Close() error { return nil }
