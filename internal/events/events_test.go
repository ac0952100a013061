package events

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/kumocloud/kumo/api"
	"github.com/kumocloud/kumo/internal/store"
	"github.com/kumocloud/kumo/internal/store/memstore"
)

// racyStore answers the first watch that its revision was compacted
// (the stream must list), commits a transaction of events right after the
// first listing returns (before the stream's next watch starts), and
// breaks that watch after the first event of a revision: the moments a
// stream can lose or repeat events.
type racyStore struct {
	store.Store
	t        *testing.T
	listOnce sync.Once
	mu       sync.Mutex
	watches  int
	lists    int
}

func (r *racyStore) List(ctx context.Context, prefix string, page store.Page) (store.ListResult, error) {
	res, err := r.Store.List(ctx, prefix, page)
	r.mu.Lock()
	r.lists++
	r.mu.Unlock()
	r.listOnce.Do(func() {
		if _, err := r.Store.Txn(ctx, nil, []store.Op{
			Op(ctx, "thing", Created, "p", "/between/0", nil),
			Op(ctx, "thing", Created, "p", "/between/1", nil),
			Op(ctx, "thing", Created, "p", "/between/2", nil),
		}); err != nil {
			r.t.Error(err)
		}
	})
	return res, err
}

func (r *racyStore) Watch(ctx context.Context, prefix string, from int64) <-chan store.WatchEvent {
	r.mu.Lock()
	r.watches++
	n := r.watches
	r.mu.Unlock()
	if n == 1 {
		out := make(chan store.WatchEvent, 1)
		out <- store.WatchEvent{Err: store.ErrCompacted}
		close(out)
		return out
	}
	in := r.Store.Watch(ctx, prefix, from)
	if n > 2 {
		return in
	}
	out := make(chan store.WatchEvent, 1)
	go func() {
		defer close(out)
		ev := <-in
		out <- ev // the first event of the revision, then the watch breaks
		out <- store.WatchEvent{Err: errors.New("connection reset")}
	}()
	return out
}

func TestStreamMissesNothingAndRepeatsNothing(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	ms := memstore.New()
	rev, _ := ms.Txn(ctx, nil, []store.Op{Op(ctx, "thing", Created, "p", "/before", nil)})
	s := &racyStore{Store: ms, t: t}
	var got []api.Event
	done := errors.New("done")
	err := Stream(ctx, s, ID(rev, 0)-1, true, Filter{Global: true}, func(ev api.Event) error {
		got = append(got, ev)
		if len(got) == 4 {
			// A later write must come through the resumed watch too.
			ms.Txn(ctx, nil, []store.Op{Op(ctx, "thing", Created, "p", "/after", nil)})
		}
		if len(got) == 5 {
			return done
		}
		return nil
	})
	if !errors.Is(err, done) {
		t.Fatalf("stream ended with %v after %d events: %+v", err, len(got), got)
	}
	want := []string{"/before", "/between/0", "/between/1", "/between/2", "/after"}
	for i, ev := range got {
		if ev.Resource != want[i] {
			t.Fatalf("event %d is %s, want %s (all: %+v)", i, ev.Resource, want[i], got)
		}
		if i > 0 && ev.ID <= got[i-1].ID {
			t.Fatalf("event IDs do not grow: %d then %d", got[i-1].ID, ev.ID)
		}
	}
	if got[3].ID-got[1].ID != 2 {
		t.Fatalf("the three events of one transaction have IDs %d, %d, %d: want consecutive indexes", got[1].ID, got[2].ID, got[3].ID)
	}
}

// TestStreamResumesWithoutListing: a stream resumed after an event ID
// watches from that event's revision instead of listing every kept event,
// and hands over the rest of that revision and what follows, each once.
func TestStreamResumesWithoutListing(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	ms := memstore.New()
	for i := 0; i < 50; i++ { // kept events a listing would read
		ms.Txn(ctx, nil, []store.Op{Op(ctx, "thing", Created, "p", "/old", nil)})
	}
	rev, _ := ms.Txn(ctx, nil, []store.Op{
		Op(ctx, "thing", Created, "p", "/r/0", nil),
		Op(ctx, "thing", Created, "p", "/r/1", nil),
		Op(ctx, "thing", Created, "p", "/r/2", nil),
	})
	s := &countingStore{Store: ms}
	var got []string
	done := errors.New("done")
	err := Stream(ctx, s, ID(rev, 0), true, Filter{Global: true}, func(ev api.Event) error {
		got = append(got, ev.Resource)
		if len(got) == 2 {
			ms.Txn(ctx, nil, []store.Op{Op(ctx, "thing", Created, "p", "/after", nil)})
		}
		if len(got) == 3 {
			return done
		}
		return nil
	})
	if !errors.Is(err, done) {
		t.Fatalf("stream ended with %v after %v", err, got)
	}
	if want := []string{"/r/1", "/r/2", "/after"}; !slices.Equal(got, want) {
		t.Fatalf("resumed after /r/0, got %v, want %v", got, want)
	}
	if s.lists > 0 {
		t.Fatalf("the resumed stream listed the store %d times", s.lists)
	}
}

type countingStore struct {
	store.Store
	lists int
}

func (c *countingStore) List(ctx context.Context, prefix string, page store.Page) (store.ListResult, error) {
	c.lists++
	return c.Store.List(ctx, prefix, page)
}
