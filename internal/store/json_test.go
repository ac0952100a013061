package store_test

import (
	"context"
	"errors"
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

// TestPaginateAtOnePicture: the pages of one PaginateAt call read one
// revision, and a later call given it reads it again; a listing asked for
// no revision that is compacted under starts again, one asked for a
// compacted revision says so.
func TestPaginateAtOnePicture(t *testing.T) {
	ctx := context.Background()
	m := memstore.New()
	for i := range 1200 {
		if _, err := m.Create(ctx, fmt.Sprintf("/p/%05d", i), []byte("x")); err != nil {
			t.Fatal(err)
		}
	}
	keep := func(kv store.KV) (string, bool, error) { return kv.Key, true, nil }
	first, next, rev, err := store.PaginateAt(ctx, m, "/p/", "", 700, 0, keep)
	if err != nil || len(first) != 700 || next == "" || rev != 1200 {
		t.Fatalf("first page: %d keys, next %q, revision %d, %v", len(first), next, rev, err)
	}
	// Written after the first page: not in the listing's picture.
	if _, err := m.Create(ctx, "/p/99999", []byte("x")); err != nil {
		t.Fatal(err)
	}
	rest, next, rev2, err := store.PaginateAt(ctx, m, "/p/", next, 0, rev, keep)
	if err != nil || len(rest) != 500 || next != "" || rev2 != rev {
		t.Fatalf("second page at %d: %d keys, next %q, read at %d, %v", rev, len(rest), next, rev2, err)
	}

	c := &compactsOnce{Store: m}
	all, _, _, err := store.PaginateAt(ctx, c, "/p/", "", 0, 0, keep)
	if err != nil || !c.done || len(all) != 1201 {
		t.Fatalf("compacted under a listing from now: %d keys (compacted: %v), %v", len(all), c.done, err)
	}
	c = &compactsOnce{Store: m}
	if _, _, _, err := store.PaginateAt(ctx, c, "/p/", "", 0, rev, keep); !errors.Is(err, store.ErrCompacted) {
		t.Fatalf("a compacted revision asked for: %v, want ErrCompacted", err)
	}
}
