package quota

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"

	"github.com/kumocloud/kumo/api"
	"github.com/kumocloud/kumo/internal/errs"
	"github.com/kumocloud/kumo/internal/store"
	"github.com/kumocloud/kumo/internal/store/memstore"
)

// countingGets counts reads of quota records.
type countingGets struct {
	store.Store
	gets atomic.Int64
}

func (c *countingGets) Get(ctx context.Context, key string) (store.KV, error) {
	c.gets.Add(1)
	return c.Store.Get(ctx, key)
}

// TestReserveKeepsItsOwnWrite: a reservation after the queue's own commit
// starts from the record it wrote (no read), yet a copy gone stale
// through someone else's write neither refuses a reservation that fits
// the store's figures nor lets one through that does not.
func TestReserveKeepsItsOwnWrite(t *testing.T) {
	ctx := context.Background()
	s := &countingGets{Store: memstore.New()}
	s.Txn(ctx, nil, []store.Op{InitOp("p", api.ResourceCounts{Instances: 2, VCPUs: -1, MemoryMiB: -1})})
	one := api.ResourceCounts{Instances: 1}
	if _, err := Reserve(ctx, s, "p", one, nil, nil); err != nil {
		t.Fatal(err)
	}
	before := s.gets.Load()
	if _, err := Reserve(ctx, s, "p", one, nil, nil); err != nil {
		t.Fatal(err)
	}
	if n := s.gets.Load() - before; n != 0 {
		t.Errorf("a reservation after the queue's own write read the quota %d times", n)
	}
	// Full (2 of 2) as far as the copy knows; another writer releases one.
	if _, err := Update(ctx, s, "p", func(r *Record) error { r.Usage.Instances--; return nil }, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := Reserve(ctx, s, "p", one, nil, nil); err != nil {
		t.Fatalf("refused on a stale copy although the store has room: %v", err)
	}
	// Full again (2 of 2). Another writer rewrites the record (same
	// figures, a new revision), and the copy is made to think there is
	// room: the transaction's condition must catch it.
	if _, err := Update(ctx, s, "p", func(r *Record) error { return nil }, nil); err != nil {
		t.Fatal(err)
	}
	q := queueFor(s, "p")
	q.last.Usage.Instances = 0
	if _, err := Reserve(ctx, s, "p", one, nil, nil); !errors.Is(err, errs.ErrQuotaExceeded) {
		t.Fatalf("a stale copy let a reservation over quota through: %v", err)
	}
	if r, _, _ := Get(ctx, s, "p"); r.Usage.Instances != 2 {
		t.Fatalf("usage = %d, want 2", r.Usage.Instances)
	}
}
