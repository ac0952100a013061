package store_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/kumocloud/kumo/internal/store"
	"github.com/kumocloud/kumo/internal/store/etcdstore"
	"github.com/kumocloud/kumo/internal/store/memstore"
	"github.com/kumocloud/kumo/internal/store/storetest"
)

// closing closes the cache's watches with the store.
type closing struct {
	*store.Cached
	cancel context.CancelFunc
}

func (c closing) Close() error { c.cancel(); return c.Cached.Close() }

func cachedAll(s store.Store) store.Store {
	ctx, cancel := context.WithCancel(context.Background())
	return closing{store.NewCached(ctx, s, nil, "/"), cancel}
}

// The cache, caching everything, is still a store by the contract.
func TestCachedConformanceMem(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store { return cachedAll(memstore.New()) })
}

func TestCachedConformanceEtcd(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store {
		s, err := etcdstore.OpenEmbedded(context.Background(), etcdstore.EmbedOptions{Dir: t.TempDir(), NoFsync: true})
		if err != nil {
			t.Fatal(err)
		}
		return cachedAll(s)
	})
}

// heldWatch is a store whose watch delivers nothing while held: the
// cache's copy then knows only what was written through it.
type heldWatch struct {
	store.Store
	mu   sync.Mutex
	held bool
	wake chan struct{}
}

func (h *heldWatch) Watch(ctx context.Context, prefix string, from int64) <-chan store.WatchEvent {
	in := h.Store.Watch(ctx, prefix, from)
	out := make(chan store.WatchEvent)
	go func() {
		defer close(out)
		for ev := range in {
			for {
				h.mu.Lock()
				held, wake := h.held, h.wake
				h.mu.Unlock()
				if !held {
					break
				}
				select {
				case <-wake:
				case <-ctx.Done():
					return
				}
			}
			select {
			case out <- ev:
			case <-ctx.Done():
				return
			}
		}
	}()
	return out
}

func (h *heldWatch) hold(on bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.held = on
	if !on && h.wake != nil {
		close(h.wake)
	}
	h.wake = make(chan struct{})
}

// TestCachedReadsItsOwnWrites: with the watch stalled, a write through the
// cache is read back at once (a revoked token is refused on the next
// request, not when the watch catches up), a deletion stays deleted when
// the watch later brings the key's older versions, and a write by another
// process that the copy missed is repaired by the conflict it causes.
func TestCachedReadsItsOwnWrites(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	inner := &heldWatch{Store: memstore.New()}
	c := store.NewCached(ctx, inner, nil, "/tokens/")
	if _, err := c.Create(ctx, "/tokens/a", []byte("live")); err != nil {
		t.Fatal(err)
	}
	kv, err := c.Get(ctx, "/tokens/a")
	if err != nil || string(kv.Value) != "live" {
		t.Fatalf("Get after Create = %q, %v", kv.Value, err)
	}
	inner.hold(true)
	rev, err := c.Update(ctx, "/tokens/a", []byte("revoked"), kv.Revision)
	if err != nil {
		t.Fatal(err)
	}
	if kv, err := c.Get(ctx, "/tokens/a"); err != nil || string(kv.Value) != "revoked" || kv.Revision != rev {
		t.Fatalf("Get after Update, watch stalled = %q@%d, %v; want revoked@%d", kv.Value, kv.Revision, err, rev)
	}
	if err := c.Delete(ctx, "/tokens/a", 0); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Get(ctx, "/tokens/a"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Get after Delete = %v, want ErrNotFound", err)
	}
	// Another process writes a key the copy has not seen yet (the watch
	// is stalled): a write through the cache conditional on the copy's
	// version fails, and the retry reads the store's.
	if _, err := c.Create(ctx, "/tokens/b", []byte("v1")); err != nil {
		t.Fatal(err)
	}
	b, _ := c.Get(ctx, "/tokens/b")
	if _, err := inner.Store.Update(ctx, "/tokens/b", []byte("v2"), b.Revision); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Update(ctx, "/tokens/b", []byte("v3"), b.Revision); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("a write on a stale copy = %v, want ErrConflict", err)
	}
	if kv, err := c.Get(ctx, "/tokens/b"); err != nil || string(kv.Value) != "v2" {
		t.Fatalf("after the conflict the copy holds %q, %v; want the store's v2", kv.Value, err)
	}
	// The watch catches up, bringing "/tokens/a"'s older versions: it
	// stays deleted, and everything ends as the store has it.
	inner.hold(false)
	deadline := time.Now().Add(20 * time.Second)
	for {
		_, aerr := c.Get(ctx, "/tokens/a")
		if !errors.Is(aerr, store.ErrNotFound) {
			t.Fatalf("the watch's late news brought a deleted key back: %v", aerr)
		}
		res, err := c.List(ctx, "/tokens/", store.Page{})
		if err == nil && len(res.KVs) == 1 && string(res.KVs[0].Value) == "v2" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the copy never caught up: %+v %v", res, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
