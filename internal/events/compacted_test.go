package events

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/kumocloud/kumo/api"
	"github.com/kumocloud/kumo/internal/store"
	"github.com/kumocloud/kumo/internal/store/etcdstore"
)

// TestResumeAfterHistoryTrimmed: the embedded etcd trims its history by
// count and age (a few minutes); a stream resumed after an event ID whose
// revision is long gone from that history still gets every later event
// once, in order: resuming is good for as long as events are kept, not
// for as long as the store's history.
func TestResumeAfterHistoryTrimmed(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	s, err := etcdstore.OpenEmbedded(ctx, etcdstore.EmbedOptions{Dir: t.TempDir(), NoFsync: true,
		History: etcdstore.History{MaxAge: time.Hour, MaxRevisions: 5, Every: 10 * time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var revs []int64
	for i := range 30 {
		rev, err := s.Txn(ctx, nil, []store.Op{
			Op(ctx, "thing", Created, "p", fmt.Sprintf("/e/%d/a", i), nil),
			Op(ctx, "thing", Created, "p", fmt.Sprintf("/e/%d/b", i), nil),
		})
		if err != nil {
			t.Fatal(err)
		}
		revs = append(revs, rev)
	}
	// Wait for evidence that the history no longer holds revision 3.
	for {
		ev, ok := <-s.Watch(ctx, Prefix, revs[3])
		if ok && errors.Is(ev.Err, store.ErrCompacted) {
			break
		}
		if ctx.Err() != nil {
			t.Fatal("the history was never trimmed")
		}
		time.Sleep(10 * time.Millisecond)
	}
	var want []string
	for i := 3; i < 30; i++ {
		if i > 3 {
			want = append(want, fmt.Sprintf("/e/%d/a", i))
		}
		want = append(want, fmt.Sprintf("/e/%d/b", i))
	}
	var got []string
	done := errors.New("done")
	err = Stream(ctx, s, ID(revs[3], 0), true, Filter{Global: true}, func(ev api.Event) error {
		got = append(got, ev.Resource)
		if len(got) == len(want) {
			return done
		}
		return nil
	})
	if !errors.Is(err, done) || !slices.Equal(got, want) {
		t.Fatalf("resumed after /e/3/a with its revision compacted: %v, got %v, want %v", err, got, want)
	}
}
