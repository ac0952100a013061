package etcdstore

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/kumocloud/kumo/internal/store"
)

// compactedFrom says whether a watch from rev is refused as compacted.
func compactedFrom(ctx context.Context, s *Store, rev int64) bool {
	wctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	for ev := range s.Watch(wctx, "/h/", rev) {
		return errors.Is(ev.Err, store.ErrCompacted)
	}
	return false
}

func writeKeys(t *testing.T, s *Store, n int) int64 {
	t.Helper()
	var rev int64
	for i := range n {
		var err error
		if rev, err = s.Txn(context.Background(), nil, []store.Op{store.Put(fmt.Sprintf("/h/%d", i%7), []byte(fmt.Sprint(i)))}); err != nil {
			t.Fatal(err)
		}
	}
	return rev
}

// waitCompacted waits (by the clock, generously: the verdict is whether it
// happens, not how fast) until a watch from rev is refused as compacted.
func waitCompacted(t *testing.T, s *Store, rev int64) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !compactedFrom(context.Background(), s, rev) {
		if time.Now().After(deadline) {
			t.Fatalf("revision %d was never compacted", rev)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestHistoryTrimmedByCount: a burst keeps at most MaxRevisions of
// history however young; the newest revisions stay watchable and every
// key keeps its latest value.
func TestHistoryTrimmedByCount(t *testing.T) {
	ctx := context.Background()
	s, err := OpenEmbedded(ctx, EmbedOptions{Dir: t.TempDir(), NoFsync: true,
		History: History{MaxAge: time.Hour, MaxRevisions: 20, Every: 10 * time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	last := writeKeys(t, s, 100)
	waitCompacted(t, s, last-30)
	if compactedFrom(ctx, s, last-10) {
		t.Fatalf("revision %d (10 behind) compacted with 20 kept", last-10)
	}
	kvs, err := store.ListAll(ctx, s, "/h/")
	if err != nil || len(kvs) != 7 {
		t.Fatalf("after compaction: %d keys, %v", len(kvs), err)
	}
	for _, kv := range kvs {
		if kv.Revision < last-6 {
			t.Fatalf("%s lost its latest value: revision %d", kv.Key, kv.Revision)
		}
	}
}

// TestHistoryTrimmedByAge: a quiet store keeps MaxAge of history and then
// trims it.
func TestHistoryTrimmedByAge(t *testing.T) {
	ctx := context.Background()
	s, err := OpenEmbedded(ctx, EmbedOptions{Dir: t.TempDir(), NoFsync: true,
		History: History{MaxAge: 200 * time.Millisecond, MaxRevisions: 1 << 40, Every: 10 * time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	start := time.Now()
	last := writeKeys(t, s, 10)
	waitCompacted(t, s, last-1)
	if age := time.Since(start); age < 200*time.Millisecond {
		t.Fatalf("compacted after %v, before MaxAge", age)
	}
}
