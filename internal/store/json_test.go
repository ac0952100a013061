package store_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/kumocloud/kumo/internal/store"
	"github.com/kumocloud/kumo/internal/store/memstore"
)

// compactsOnce answers the first listing past a first page as if the store
// had trimmed its history past the listing's revision meanwhile.
type compactsOnce struct {
	store.Store
	done bool
}

func (c *compactsOnce) List(ctx context.Context, prefix string, page store.Page) (store.ListResult, error) {
	if page.Revision != 0 && !c.done {
		c.done = true
		return store.ListResult{}, fmt.Errorf("listing at %d: %w", page.Revision, store.ErrCompacted)
	}
	return c.Store.List(ctx, prefix, page)
}

// TestSnapshotOutlivesCompaction: a listing whose revision is compacted
// away while it pages starts again and returns every key once, at one
// revision.
func TestSnapshotOutlivesCompaction(t *testing.T) {
	ctx := context.Background()
	m := memstore.New()
	for i := range 2500 {
		if _, err := m.Create(ctx, fmt.Sprintf("/s/%05d", i), []byte("x")); err != nil {
			t.Fatal(err)
		}
	}
	c := &compactsOnce{Store: m}
	kvs, rev, err := store.Snapshot(ctx, c, "/s/")
	if err != nil {
		t.Fatal(err)
	}
	if !c.done {
		t.Fatal("the listing was never compacted under")
	}
	seen := map[string]bool{}
	for _, kv := range kvs {
		if seen[kv.Key] {
			t.Fatalf("%s twice", kv.Key)
		}
		seen[kv.Key] = true
	}
	if len(seen) != 2500 || rev != 2500 {
		t.Fatalf("%d keys at revision %d, want 2500 at 2500", len(seen), rev)
	}
}
