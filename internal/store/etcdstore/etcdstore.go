// Package etcdstore implements store.Store on etcd v3: embedded in the kumo
// server process (the default, data on local disk) or a remote cluster.
package etcdstore

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/namespace"
	"go.etcd.io/etcd/server/v3/embed"
	"go.etcd.io/etcd/server/v3/etcdserver/api/v3client"

	"github.com/kumocloud/kumo/internal/store"
)

// Store is a store.Store on etcd.
type Store struct {
	client  *clientv3.Client
	kv      clientv3.KV
	watcher clientv3.Watcher
	etcd    *embed.Etcd // nil for a remote cluster
	desc    string
	stop    context.CancelFunc // ends the history trimming of an embedded etcd
}

var _ store.Store = (*Store)(nil)

// EmbedOptions configures an embedded etcd.
type EmbedOptions struct {
	// Dir holds etcd's data (created 0700).
	Dir string
	// NoFsync trades durability for speed; tests only.
	NoFsync bool
	// History kept (zero: DefaultHistory).
	History History
	// Logger for trouble trimming the history (nil: none).
	Logger *slog.Logger
}

// OpenEmbedded starts an etcd server inside this process with its data in
// dir and returns a store talking to it without any network hop. Its client
// and peer listeners are bound to loopback on ports the kernel picks: nothing
// outside this process needs them.
func OpenEmbedded(ctx context.Context, opts EmbedOptions) (*Store, error) {
	if err := os.MkdirAll(opts.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("etcd data dir: %w", err)
	}
	cfg := embed.NewConfig()
	cfg.Dir = opts.Dir
	cfg.Name = "kumo"
	loop, _ := url.Parse("http://127.0.0.1:0")
	cfg.ListenClientUrls = []url.URL{*loop}
	cfg.AdvertiseClientUrls = []url.URL{*loop}
	cfg.ListenPeerUrls = []url.URL{*loop}
	cfg.AdvertisePeerUrls = []url.URL{*loop}
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
	cfg.LogLevel = "error"
	// Its errors reach the server's log too: a fatal one (a disk that
	// filled up) must not exit with its reason only in a file.
	cfg.LogOutputs = []string{filepath.Join(opts.Dir, "etcd.log"), "stderr"}
	cfg.UnsafeNoFsync = opts.NoFsync
	// History is trimmed by compactLoop (by age and by count), not by
	// etcd's periodic compactor, which keeps all of a burst for its period.
	cfg.AutoCompactionRetention = "0" // etcd's own compactor off
	// Old WAL files and snapshots are for followers catching up and for
	// forensics; a lone member's database holds everything. Two of each
	// instead of etcd's five: 190 MiB less on disk after a busy hour.
	cfg.MaxWalFiles = 2
	cfg.MaxSnapFiles = 2
	// A member alone needs no long raft log for followers to catch up
	// from: etcd's default (a snapshot every 100,000 entries) held up to
	// 100,000 transactions, values and all, in memory - a fifth of the
	// server's heap at 100,000 instances.
	cfg.SnapshotCount = 10_000
	cfg.SnapshotCatchUpEntries = 1_000
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		return nil, fmt.Errorf("start embedded etcd in %s: %w", opts.Dir, err)
	}
	select {
	case <-e.Server.ReadyNotify():
	case <-ctx.Done():
		e.Close()
		return nil, ctx.Err()
	case <-time.After(60 * time.Second):
		e.Close()
		return nil, errors.New("embedded etcd did not become ready in 60s")
	}
	c := v3client.New(e.Server)
	h := opts.History
	if h == (History{}) {
		h = DefaultHistory
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	cctx, stop := context.WithCancel(context.Background())
	st := &Store{client: c, kv: c.KV, watcher: c.Watcher, etcd: e, desc: "embedded etcd", stop: stop}
	go st.compactLoop(cctx, h, log)
	return st, nil
}

// OpenRemote connects to an external etcd cluster. Every key is kept under
// prefix, so several clouds (or other users) can share one cluster.
func OpenRemote(ctx context.Context, endpoints []string, prefix string) (*Store, error) {
	c, err := clientv3.New(clientv3.Config{Endpoints: endpoints, DialTimeout: 10 * time.Second, Context: ctx})
	if err != nil {
		return nil, fmt.Errorf("connect to etcd %v: %w", endpoints, err)
	}
	tctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, err := c.Get(tctx, "health-probe"); err != nil {
		c.Close()
		return nil, fmt.Errorf("etcd %v not reachable: %w", endpoints, err)
	}
	return &Store{
		client:  c,
		kv:      namespace.NewKV(c.KV, prefix),
		watcher: namespace.NewWatcher(c.Watcher, prefix),
		desc:    "etcd " + fmt.Sprint(endpoints),
	}, nil
}

// String says which etcd this is.
func (s *Store) String() string { return s.desc }

// Client exposes the etcd client for leader election (etcd's concurrency
// package) and leases; nothing else should use it.
func (s *Store) Client() *clientv3.Client { return s.client }

func toKV(kv interface {
	GetKey() []byte
	GetValue() []byte
	GetModRevision() int64
	GetCreateRevision() int64
}) store.KV {
	return store.KV{Key: string(kv.GetKey()), Value: kv.GetValue(), Revision: kv.GetModRevision(), CreateRevision: kv.GetCreateRevision()}
}

// Get implements store.Store.
func (s *Store) Get(ctx context.Context, key string) (store.KV, error) {
	resp, err := s.kv.Get(ctx, key)
	if err != nil {
		return store.KV{}, wrap(err)
	}
	if len(resp.Kvs) == 0 {
		return store.KV{}, store.ErrNotFound
	}
	return toKV(resp.Kvs[0]), nil
}

// List implements store.Store.
func (s *Store) List(ctx context.Context, prefix string, page store.Page) (store.ListResult, error) {
	start := prefix
	if page.After >= prefix {
		start = page.After + "\x00"
	}
	end := clientv3.GetPrefixRangeEnd(prefix)
	opts := []clientv3.OpOption{clientv3.WithRange(end), clientv3.WithSort(clientv3.SortByKey, clientv3.SortAscend)}
	if page.Limit > 0 {
		opts = append(opts, clientv3.WithLimit(int64(page.Limit)))
	}
	if page.Revision > 0 {
		opts = append(opts, clientv3.WithRev(page.Revision))
	}
	resp, err := s.kv.Get(ctx, start, opts...)
	if errors.Is(err, rpctypes.ErrCompacted) {
		return store.ListResult{}, fmt.Errorf("listing %s at revision %d: %w", prefix, page.Revision, store.ErrCompacted)
	}
	if err != nil {
		return store.ListResult{}, wrap(err)
	}
	res := store.ListResult{More: resp.More, Revision: resp.Header.Revision}
	if page.Revision > 0 {
		// The header says where the store is now; the listing is as of
		// the revision asked for.
		res.Revision = page.Revision
	}
	for _, kv := range resp.Kvs {
		res.KVs = append(res.KVs, toKV(kv))
	}
	return res, nil
}

// Create implements store.Store.
func (s *Store) Create(ctx context.Context, key string, value []byte) (int64, error) {
	rev, err := s.Txn(ctx, []store.Cond{store.Absent(key)}, []store.Op{store.Put(key, value)})
	if errors.Is(err, store.ErrConflict) {
		return 0, store.ErrExists
	}
	return rev, err
}

// Update implements store.Store.
func (s *Store) Update(ctx context.Context, key string, value []byte, rev int64) (int64, error) {
	if rev <= 0 {
		return 0, store.ErrConflict
	}
	resp, err := s.kv.Txn(ctx).
		If(clientv3.Compare(clientv3.ModRevision(key), "=", rev)).
		Then(clientv3.OpPut(key, string(value))).
		Else(clientv3.OpGet(key, clientv3.WithCountOnly())).
		Commit()
	if err != nil {
		return 0, wrap(err)
	}
	if !resp.Succeeded {
		if resp.Responses[0].GetResponseRange().Count == 0 {
			return 0, store.ErrNotFound
		}
		return 0, store.ErrConflict
	}
	return resp.Header.Revision, nil
}

// Delete implements store.Store.
func (s *Store) Delete(ctx context.Context, key string, rev int64) error {
	cmp := clientv3.Compare(clientv3.CreateRevision(key), ">", 0)
	if rev > 0 {
		cmp = clientv3.Compare(clientv3.ModRevision(key), "=", rev)
	}
	resp, err := s.kv.Txn(ctx).If(cmp).
		Then(clientv3.OpDelete(key)).
		Else(clientv3.OpGet(key, clientv3.WithCountOnly())).
		Commit()
	if err != nil {
		return wrap(err)
	}
	if !resp.Succeeded {
		if resp.Responses[0].GetResponseRange().Count == 0 {
			return store.ErrNotFound
		}
		return store.ErrConflict
	}
	return nil
}

// Txn implements store.Store.
func (s *Store) Txn(ctx context.Context, conds []store.Cond, ops []store.Op) (int64, error) {
	cmps := make([]clientv3.Cmp, 0, len(conds))
	for _, c := range conds {
		if c.Revision == 0 {
			cmps = append(cmps, clientv3.Compare(clientv3.CreateRevision(c.Key), "=", 0))
		} else {
			cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(c.Key), "=", c.Revision))
		}
	}
	eops := make([]clientv3.Op, 0, len(ops))
	for _, op := range ops {
		switch op.Kind {
		case store.OpPut:
			eops = append(eops, clientv3.OpPut(op.Key, string(op.Value)))
		case store.OpDelete:
			eops = append(eops, clientv3.OpDelete(op.Key))
		}
	}
	resp, err := s.kv.Txn(ctx).If(cmps...).Then(eops...).Commit()
	if err != nil {
		return 0, wrap(err)
	}
	if !resp.Succeeded {
		return 0, store.ErrConflict
	}
	return resp.Header.Revision, nil
}

// Watch implements store.Store.
func (s *Store) Watch(ctx context.Context, prefix string, fromRev int64) <-chan store.WatchEvent {
	out := make(chan store.WatchEvent, 64)
	opts := []clientv3.OpOption{clientv3.WithPrefix()}
	if fromRev > 0 {
		opts = append(opts, clientv3.WithRev(fromRev))
	}
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	wch := s.watcher.Watch(wctx, prefix, opts...)
	go func() {
		defer cancel()
		defer close(out)
		send := func(ev store.WatchEvent) bool {
			select {
			case out <- ev:
				return true
			case <-ctx.Done():
				return false
			}
		}
		for resp := range wch {
			if err := resp.Err(); err != nil {
				if resp.CompactRevision > 0 || errors.Is(err, rpctypes.ErrCompacted) {
					err = store.ErrCompacted
				}
				send(store.WatchEvent{Err: err})
				return
			}
			for i, ev := range resp.Events {
				we := store.WatchEvent{Type: store.EventPut, KV: toKV(ev.Kv)}
				if ev.Type == clientv3.EventTypeDelete {
					we.Type = store.EventDelete
					we.KV = store.KV{Key: string(ev.Kv.Key), Revision: ev.Kv.ModRevision}
				}
				// etcd never splits a revision across watch responses.
				we.RevisionEnd = i == len(resp.Events)-1 || resp.Events[i+1].Kv.ModRevision != ev.Kv.ModRevision
				if !send(we) {
					return
				}
			}
		}
		if ctx.Err() == nil {
			send(store.WatchEvent{Err: errors.New("etcd watch closed")})
		}
	}()
	return out
}

// Revision implements store.Store.
func (s *Store) Revision(ctx context.Context) (int64, error) {
	resp, err := s.kv.Get(ctx, "\x00", clientv3.WithCountOnly())
	if err != nil {
		return 0, wrap(err)
	}
	return resp.Header.Revision, nil
}

// Close implements store.Store.
func (s *Store) Close() error {
	if s.stop != nil {
		s.stop()
	}
	err := s.client.Close()
	if s.etcd != nil {
		s.etcd.Close()
	}
	return err
}

func wrap(err error) error {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	return fmt.Errorf("etcd: %w", err)
}
