// Package storetest is the conformance suite every store.Store must pass.
// Each implementation's tests call Run with a constructor of empty stores.
package storetest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/kumocloud/kumo/internal/store"
)

// Run runs the whole suite. newStore returns an empty store; the suite
// closes it.
func Run(t *testing.T, newStore func(t *testing.T) store.Store) {
	tests := []struct {
		name string
		fn   func(*testing.T, store.Store)
	}{
		{"CreateGet", testCreateGet},
		{"UpdateCAS", testUpdateCAS},
		{"Delete", testDelete},
		{"ListPaging", testListPaging},
		{"TxnAtomic", testTxnAtomic},
		{"ConcurrentCAS", testConcurrentCAS},
		{"WatchFromRevision", testWatchFromRevision},
		{"WatchLive", testWatchLive},
		{"WatchRevisionEnd", testWatchRevisionEnd},
		{"ListAtRevision", testListAtRevision},
		{"TxnLimit", testTxnLimit},
		{"ReflectMissesNothing", testReflectMissesNothing},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := newStore(t)
			defer s.Close()
			tc.fn(t, s)
		})
	}
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return c
}

func testCreateGet(t *testing.T, s store.Store) {
	c := ctx(t)
	if _, err := s.Get(c, "/a"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Get of missing key: %v, want ErrNotFound", err)
	}
	rev, err := s.Create(c, "/a", []byte("1"))
	if err != nil || rev <= 0 {
		t.Fatalf("Create: rev %d err %v", rev, err)
	}
	if _, err := s.Create(c, "/a", []byte("2")); !errors.Is(err, store.ErrExists) {
		t.Fatalf("second Create: %v, want ErrExists", err)
	}
	kv, err := s.Get(c, "/a")
	if err != nil || string(kv.Value) != "1" || kv.Revision != rev || kv.CreateRevision != rev {
		t.Fatalf("Get = %+v, %v; want value 1 at rev %d", kv, err, rev)
	}
	cur, err := s.Revision(c)
	if err != nil || cur < rev {
		t.Fatalf("Revision = %d, %v; want >= %d", cur, err, rev)
	}
}

func testUpdateCAS(t *testing.T, s store.Store) {
	c := ctx(t)
	rev, _ := s.Create(c, "/k", []byte("v1"))
	rev2, err := s.Update(c, "/k", []byte("v2"), rev)
	if err != nil || rev2 <= rev {
		t.Fatalf("Update at current rev: %d %v", rev2, err)
	}
	if _, err := s.Update(c, "/k", []byte("v3"), rev); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("Update at stale rev: %v, want ErrConflict", err)
	}
	if _, err := s.Update(c, "/missing", []byte("x"), 5); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Update of missing key: %v, want ErrNotFound", err)
	}
	kv, _ := s.Get(c, "/k")
	if string(kv.Value) != "v2" || kv.CreateRevision != rev {
		t.Fatalf("after CAS: %+v", kv)
	}
}

func testDelete(t *testing.T, s store.Store) {
	c := ctx(t)
	rev, _ := s.Create(c, "/d", []byte("x"))
	if err := s.Delete(c, "/d", rev+100); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("Delete at wrong rev: %v, want ErrConflict", err)
	}
	if err := s.Delete(c, "/d", rev); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	if err := s.Delete(c, "/d", 0); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Delete of missing: %v, want ErrNotFound", err)
	}
	s.Create(c, "/d", []byte("y"))
	if err := s.Delete(c, "/d", 0); err != nil {
		t.Fatalf("unconditional Delete: %v", err)
	}
}

func testListPaging(t *testing.T, s store.Store) {
	c := ctx(t)
	for i := 0; i < 25; i++ {
		s.Create(c, fmt.Sprintf("/list/%03d", i), []byte{byte(i)})
	}
	s.Create(c, "/lisx", nil) // same leading bytes, other prefix
	s.Create(c, "/list", nil) // the prefix minus its slash is another key
	s.Create(c, "/a-before", nil)
	var got []string
	after := ""
	pages := 0
	for {
		res, err := s.List(c, "/list/", store.Page{After: after, Limit: 10})
		if err != nil {
			t.Fatal(err)
		}
		pages++
		for _, kv := range res.KVs {
			got = append(got, kv.Key)
		}
		if !res.More {
			break
		}
		after = res.KVs[len(res.KVs)-1].Key
		if pages > 10 {
			t.Fatal("paging does not end")
		}
	}
	if len(got) != 25 || pages != 3 || got[0] != "/list/000" || got[24] != "/list/024" {
		t.Fatalf("paged list: %d keys in %d pages: %v", len(got), pages, got)
	}
	res, _ := s.List(c, "/list/", store.Page{})
	if len(res.KVs) != 25 || res.More {
		t.Fatalf("unpaged list: %d keys, more=%v", len(res.KVs), res.More)
	}
}

func testTxnAtomic(t *testing.T, s store.Store) {
	c := ctx(t)
	rev, _ := s.Create(c, "/usage", []byte("0"))
	// A failing condition writes nothing.
	_, err := s.Txn(c, []store.Cond{store.At("/usage", rev+7), store.Absent("/obj/1")},
		[]store.Op{store.Put("/usage", []byte("1")), store.Put("/obj/1", []byte("x"))})
	if !errors.Is(err, store.ErrConflict) {
		t.Fatalf("Txn with failing cond: %v, want ErrConflict", err)
	}
	if _, err := s.Get(c, "/obj/1"); !errors.Is(err, store.ErrNotFound) {
		t.Fatal("failed Txn left a write behind")
	}
	_, err = s.Txn(c, []store.Cond{store.At("/usage", rev), store.Absent("/obj/1")},
		[]store.Op{store.Put("/usage", []byte("1")), store.Put("/obj/1", []byte("x")), store.Del("/nothing")})
	if err != nil {
		t.Fatalf("Txn: %v", err)
	}
	u, _ := s.Get(c, "/usage")
	o, _ := s.Get(c, "/obj/1")
	if string(u.Value) != "1" || u.Revision != o.Revision {
		t.Fatalf("Txn writes not at one revision: %+v %+v", u, o)
	}
}

// testConcurrentCAS: N writers increment one counter with CAS and retry;
// no increment may be lost.
func testConcurrentCAS(t *testing.T, s store.Store) {
	c := ctx(t)
	s.Create(c, "/counter", []byte("0"))
	const writers, each = 8, 10
	var wg sync.WaitGroup
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < each; i++ {
				for {
					kv, err := s.Get(c, "/counter")
					if err != nil {
						t.Error(err)
						return
					}
					var n int
					fmt.Sscan(string(kv.Value), &n)
					_, err = s.Update(c, "/counter", []byte(fmt.Sprint(n+1)), kv.Revision)
					if err == nil {
						break
					}
					if !errors.Is(err, store.ErrConflict) {
						t.Error(err)
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	kv, _ := s.Get(c, "/counter")
	if string(kv.Value) != fmt.Sprint(writers*each) {
		t.Fatalf("counter = %s, want %d: CAS lost updates", kv.Value, writers*each)
	}
}

func testWatchFromRevision(t *testing.T, s store.Store) {
	c := ctx(t)
	r1, _ := s.Create(c, "/w/a", []byte("1"))
	s.Create(c, "/other", []byte("x"))
	r2, _ := s.Update(c, "/w/a", []byte("2"), r1)
	s.Delete(c, "/w/a", 0)
	wctx, cancel := context.WithCancel(c)
	defer cancel()
	ch := s.Watch(wctx, "/w/", r1)
	want := []struct {
		typ store.EventType
		val string
	}{{store.EventPut, "1"}, {store.EventPut, "2"}, {store.EventDelete, ""}}
	for i, w := range want {
		select {
		case ev := <-ch:
			if ev.Err != nil || ev.Type != w.typ || string(ev.KV.Value) != w.val || ev.KV.Key != "/w/a" {
				t.Fatalf("event %d = %+v, want %+v", i, ev, w)
			}
			if i == 1 && ev.KV.Revision != r2 {
				t.Fatalf("event revision %d, want %d", ev.KV.Revision, r2)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("event %d never came", i)
		}
	}
}

// testWatchRevisionEnd: a transaction's events arrive together, the last
// one marked.
func testWatchRevisionEnd(t *testing.T, s store.Store) {
	c := ctx(t)
	wctx, cancel := context.WithCancel(c)
	defer cancel()
	rev0, _ := s.Revision(c)
	s.Txn(c, nil, []store.Op{store.Put("/tx/a", nil), store.Put("/tx/b", nil), store.Put("/tx/c", nil)})
	s.Create(c, "/tx/d", nil)
	ch := s.Watch(wctx, "/tx/", rev0+1)
	var ends []bool
	for len(ends) < 4 {
		select {
		case ev := <-ch:
			if ev.Err != nil {
				t.Fatal(ev.Err)
			}
			ends = append(ends, ev.RevisionEnd)
		case <-time.After(10 * time.Second):
			t.Fatalf("only %d events", len(ends))
		}
	}
	if fmt.Sprint(ends) != "[false false true true]" {
		t.Fatalf("RevisionEnd flags %v, want [false false true true]", ends)
	}
}

func testWatchLive(t *testing.T, s store.Store) {
	c := ctx(t)
	wctx, cancel := context.WithCancel(c)
	ch := s.Watch(wctx, "/live/", 0)
	time.Sleep(50 * time.Millisecond) // let the watch register
	rev, _ := s.Create(c, "/live/x", []byte("hello"))
	select {
	case ev := <-ch:
		if ev.Err != nil || ev.KV.Key != "/live/x" || ev.KV.Revision != rev {
			t.Fatalf("live event = %+v", ev)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("live event never came")
	}
	cancel()
	deadline := time.After(10 * time.Second)
	for {
		select {
		case _, ok := <-ch:
			if !ok {
				return
			}
		case <-deadline:
			t.Fatal("watch channel not closed after cancel")
		}
	}
}

// testListAtRevision: a listing read at a revision shows the keys as they
// were then, page after page, whatever was written since.
func testListAtRevision(t *testing.T, s store.Store) {
	c := ctx(t)
	for i := 0; i < 5; i++ {
		s.Create(c, fmt.Sprintf("/at/%d", i), []byte("old"))
	}
	first, err := s.List(c, "/at/", store.Page{Limit: 2})
	if err != nil || len(first.KVs) != 2 || !first.More {
		t.Fatalf("first page: %+v %v", first, err)
	}
	at := first.Revision
	// Between the pages: a key before the cursor goes, one after it
	// changes, a new one comes.
	s.Delete(c, "/at/0", 0)
	kv, _ := s.Get(c, "/at/3")
	s.Update(c, "/at/3", []byte("new"), kv.Revision)
	s.Create(c, "/at/9", []byte("new"))
	rest, err := s.List(c, "/at/", store.Page{After: first.KVs[1].Key, Revision: at})
	if err != nil {
		t.Fatal(err)
	}
	if rest.Revision != at {
		t.Errorf("the pinned page says revision %d, want %d", rest.Revision, at)
	}
	var got []string
	for _, kv := range append(first.KVs, rest.KVs...) {
		got = append(got, kv.Key+"="+string(kv.Value))
	}
	if fmt.Sprint(got) != "[/at/0=old /at/1=old /at/2=old /at/3=old /at/4=old]" {
		t.Fatalf("listing pinned at revision %d = %v, want the five old keys", at, got)
	}
	now, _ := s.List(c, "/at/", store.Page{})
	if len(now.KVs) != 5 || string(now.KVs[2].Value) != "new" || now.KVs[4].Key != "/at/9" {
		t.Fatalf("unpinned listing = %+v", now.KVs)
	}
	kvs, rev, err := store.Snapshot(c, s, "/at/")
	if err != nil || len(kvs) != 5 || rev < now.Revision {
		t.Fatalf("Snapshot = %d keys at %d, %v", len(kvs), rev, err)
	}
}

// writeAfterList is a store that commits one more write the first time a
// listing returns: exactly the moment a list-then-watch can lose it.
type writeAfterList struct {
	store.Store
	once sync.Once
	t    *testing.T
}

func (w *writeAfterList) List(ctx context.Context, prefix string, page store.Page) (store.ListResult, error) {
	res, err := w.Store.List(ctx, prefix, page)
	w.once.Do(func() {
		if _, err := w.Store.Create(ctx, "/refl/between", []byte("x")); err != nil {
			w.t.Errorf("write between list and watch: %v", err)
		}
	})
	return res, err
}

// mapView is a View kept as a map, ignoring replays.
type mapView struct {
	mu   sync.Mutex
	kvs  map[string]store.KV
	rev  int64
	seen chan struct{}
}

func (m *mapView) Replace(kvs []store.KV, rev int64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.kvs = map[string]store.KV{}
	for _, kv := range kvs {
		m.kvs[kv.Key] = kv
	}
	m.rev = rev
	m.poke()
}

func (m *mapView) Apply(ev store.WatchEvent) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if old, ok := m.kvs[ev.KV.Key]; ok && old.Revision >= ev.KV.Revision {
		return
	}
	if ev.Type == store.EventPut {
		m.kvs[ev.KV.Key] = ev.KV
	} else {
		delete(m.kvs, ev.KV.Key)
	}
	if ev.RevisionEnd {
		m.rev = ev.KV.Revision
	}
	m.poke()
}

func (m *mapView) poke() {
	select {
	case m.seen <- struct{}{}:
	default:
	}
}

// testReflectMissesNothing: a write committed between a reflector's
// listing and its watch reaches the view, and so does every later one.
func testReflectMissesNothing(t *testing.T, s store.Store) {
	c := ctx(t)
	s.Create(c, "/refl/before", []byte("x"))
	w := &writeAfterList{Store: s, t: t}
	v := &mapView{seen: make(chan struct{}, 1)}
	rctx, cancel := context.WithCancel(c)
	done := make(chan struct{})
	go func() { store.Reflect(rctx, w, "/refl/", v, nil); close(done) }()
	defer func() { cancel(); <-done }()
	waitView := func(what string, ok func() bool) {
		for {
			v.mu.Lock()
			done := ok()
			v.mu.Unlock()
			if done {
				return
			}
			select {
			case <-v.seen:
			case <-c.Done():
				t.Fatalf("the view never %s", what)
			}
		}
	}
	waitView("listed", func() bool { return v.rev > 0 }) // the write between list and watch is done
	for i := 0; i < 50; i++ {
		s.Create(c, fmt.Sprintf("/refl/k%02d", i), []byte("x"))
	}
	s.Delete(c, "/refl/k07", 0)
	want, rev, _ := store.Snapshot(c, s, "/refl/")
	waitView(fmt.Sprintf("reached revision %d", rev), func() bool { return v.rev >= rev })
	if _, ok := v.kvs["/refl/between"]; !ok {
		t.Fatal("the write committed between the listing and the watch never reached the view")
	}
	if len(v.kvs) != len(want) {
		t.Fatalf("the view holds %d keys, the store %d", len(v.kvs), len(want))
	}
}

// testTxnLimit: a transaction of MaxTxnOps operations goes through; one
// more is refused whole.
func testTxnLimit(t *testing.T, s store.Store) {
	c := ctx(t)
	var ops []store.Op
	for i := 0; i <= store.MaxTxnOps; i++ {
		ops = append(ops, store.Put(fmt.Sprintf("/lim/%03d", i), nil))
	}
	if _, err := s.Txn(c, nil, ops[:store.MaxTxnOps]); err != nil {
		t.Fatalf("%d operations: %v", store.MaxTxnOps, err)
	}
	if _, err := s.Txn(c, nil, ops); err == nil || errors.Is(err, store.ErrConflict) {
		t.Fatalf("%d operations: %v, want refused", len(ops), err)
	}
	if kv, err := s.Get(c, fmt.Sprintf("/lim/%03d", store.MaxTxnOps)); err == nil {
		t.Fatalf("a refused transaction wrote %s", kv.Key)
	}
}
