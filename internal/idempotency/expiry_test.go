package idempotency

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/kumocloud/kumo/internal/store"
	"github.com/kumocloud/kumo/internal/store/memstore"
)

// countingStore counts the keys listings return under the records' prefix.
type countingStore struct {
	store.Store
	recordsListed int
}

func (c *countingStore) List(ctx context.Context, prefix string, page store.Page) (store.ListResult, error) {
	res, err := c.Store.List(ctx, prefix, page)
	if prefix == Prefix {
		c.recordsListed += len(res.KVs)
	}
	return res, err
}

func claim(t *testing.T, s store.Store, name string, at time.Time) string {
	t.Helper()
	key := Prefix + name
	if _, err := s.Txn(context.Background(), []store.Cond{store.Absent(key)}, ClaimOps(key, Record{BodyHash: "h", Status: 201, CreatedAt: at})); err != nil {
		t.Fatal(err)
	}
	return key
}

func TestPruneDeletesOnlyExpiredAndReadsOnlyThem(t *testing.T) {
	ctx := context.Background()
	s := &countingStore{Store: memstore.New()}
	now := time.Now().UTC()
	cutoff := now.Add(-24 * time.Hour)
	old := now.Add(-25 * time.Hour)

	// A record kept before the index existed: no index key.
	legacy := Prefix + "legacy"
	if _, err := s.Create(ctx, legacy, store.MustJSON(Record{CreatedAt: old})); err != nil {
		t.Fatal(err)
	}
	legacyNew := Prefix + "legacy-new"
	if _, err := s.Create(ctx, legacyNew, store.MustJSON(Record{CreatedAt: now})); err != nil {
		t.Fatal(err)
	}
	expired := claim(t, s, "expired", old)
	live := claim(t, s, "live", now)
	// Claimed long ago, then taken over (a newer claim at the same key):
	// the old index key must not take the new record with it.
	takenOver := claim(t, s, "taken-over", old)
	var rec Record
	rev, _ := store.GetJSON(ctx, s, takenOver, &rec)
	if _, err := s.Txn(ctx, []store.Cond{store.At(takenOver, rev)}, ClaimOps(takenOver, Record{Pending: true, CreatedAt: now})); err != nil {
		t.Fatal(err)
	}
	// A record deleted by its failed request leaves its index key behind.
	failed := claim(t, s, "failed", old)
	if err := s.Delete(ctx, failed, 0); err != nil {
		t.Fatal(err)
	}

	n, err := Prune(ctx, s, cutoff)
	if err != nil || n != 2 {
		t.Fatalf("Prune = %d, %v; want 2 (expired, legacy)", n, err)
	}
	for _, k := range []string{expired, legacy} {
		if _, err := s.Get(ctx, k); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("%s survived its expiry: %v", k, err)
		}
	}
	for _, k := range []string{live, takenOver, legacyNew} {
		if _, err := s.Get(ctx, k); err != nil {
			t.Errorf("%s was pruned before its time: %v", k, err)
		}
	}
	left, _ := store.ListAll(ctx, s, ExpiryPrefix)
	if len(left) != 3 {
		t.Errorf("index keys left = %d, want 3 (live, taken over, legacy-new): %v", len(left), left)
	}

	// From now on a prune reads the expired records only, however many
	// live ones there are.
	for i := range 300 {
		claim(t, s, fmt.Sprintf("live-%d", i), now)
	}
	claim(t, s, "expired-2", old)
	s.recordsListed = 0
	if n, err := Prune(ctx, s, cutoff); err != nil || n != 1 {
		t.Fatalf("second Prune = %d, %v; want 1", n, err)
	}
	if s.recordsListed != 0 {
		t.Errorf("a prune listed %d live records", s.recordsListed)
	}
}

// TestNewStoreIsNeverBackfilled: on a store marked at its start, a prune
// never lists the records (they all have their index keys) and writes no
// second index key; a store that already held records is not marked (its
// records may predate the index).
func TestNewStoreIsNeverBackfilled(t *testing.T) {
	ctx := context.Background()
	s := &countingStore{Store: memstore.New()}
	if err := MarkIndexed(ctx, s); err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC()
	for i := range 50 {
		claim(t, s, fmt.Sprintf("r-%d", i), now)
	}
	before, _ := s.Revision(ctx)
	s.recordsListed = 0
	if _, err := Prune(ctx, s, now.Add(-24*time.Hour)); err != nil {
		t.Fatal(err)
	}
	if after, _ := s.Revision(ctx); after != before || s.recordsListed != 0 {
		t.Fatalf("a prune of a new store listed %d records and wrote %d times", s.recordsListed, after-before)
	}

	old := memstore.New()
	legacy := Prefix + "legacy"
	if _, err := old.Create(ctx, legacy, store.MustJSON(Record{CreatedAt: now.Add(-25 * time.Hour)})); err != nil {
		t.Fatal(err)
	}
	if err := MarkIndexed(ctx, old); err != nil {
		t.Fatal(err)
	}
	if n, err := Prune(ctx, old, now.Add(-24*time.Hour)); err != nil || n != 1 {
		t.Fatalf("a record older than the index: Prune = %d, %v; want 1", n, err)
	}
}
