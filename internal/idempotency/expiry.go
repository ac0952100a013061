package idempotency

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/kumocloud/kumo/internal/store"
)

// Records expire a day after they are claimed. Finding the expired ones
// must not read the live ones (a busy cloud holds a day of creates), so
// every claim also writes an index key named by its time:
// /idempotency-expiry/<unix nanos, 20 digits>/<record hash>. Index keys
// sort by time, and a prune reads only the index keys before its cutoff.
// An index key may outlive its record (a failed request's record is
// deleted, a stale one taken over gets a newer index key); a prune checks
// the record itself before it deletes anything.
const (
	ExpiryPrefix = "/idempotency-expiry/"
	// indexedMarker says every record in the store has its index key
	// (records written before the index existed were given theirs once).
	indexedMarker = "/idempotency-expiry-indexed"
)

func expiryKey(key string, createdAt time.Time) string {
	return fmt.Sprintf("%s%020d/%s", ExpiryPrefix, createdAt.UnixNano(), strings.TrimPrefix(key, Prefix))
}

// ClaimOps are the writes that put rec at key together with its index key.
func ClaimOps(key string, rec Record) []store.Op {
	return []store.Op{store.PutJSON(key, rec), store.Put(expiryKey(key, rec.CreatedAt), nil)}
}

// Prune deletes the records claimed before cutoff, reading only the index
// keys before it (and, once per store, indexing records older than the
// index). It returns how many records went.
func Prune(ctx context.Context, s store.Store, cutoff time.Time) (int, error) {
	if err := backfill(ctx, s); err != nil {
		return 0, err
	}
	limit := fmt.Sprintf("%s%020d", ExpiryPrefix, cutoff.UnixNano())
	n := 0
	after := ""
	for {
		res, err := s.List(ctx, ExpiryPrefix, store.Page{After: after, Limit: 500})
		if err != nil {
			return n, err
		}
		for _, kv := range res.KVs {
			if kv.Key >= limit {
				return n, nil
			}
			gone, err := pruneOne(ctx, s, kv.Key, cutoff)
			if err != nil {
				return n, err
			}
			if gone {
				n++
			}
		}
		if !res.More || len(res.KVs) == 0 {
			return n, nil
		}
		after = res.KVs[len(res.KVs)-1].Key
	}
}

// pruneOne deletes the record an expired index key names if the record is
// itself older than cutoff (a record taken over since is newer and has a
// newer index key), then the index key.
func pruneOne(ctx context.Context, s store.Store, ikey string, cutoff time.Time) (bool, error) {
	rest := strings.TrimPrefix(ikey, ExpiryPrefix)
	slash := strings.IndexByte(rest, '/')
	if slash < 0 {
		return false, s.Delete(ctx, ikey, 0)
	}
	key := Prefix + rest[slash+1:]
	var rec Record
	rev, err := store.GetJSON(ctx, s, key, &rec)
	gone := false
	switch {
	case errors.Is(err, store.ErrNotFound):
	case err != nil:
		return false, err
	case rec.CreatedAt.Before(cutoff):
		if err := s.Delete(ctx, key, rev); err != nil && !errors.Is(err, store.ErrConflict) && !errors.Is(err, store.ErrNotFound) {
			return false, err
		}
		gone = true
	}
	if err := s.Delete(ctx, ikey, 0); err != nil && !errors.Is(err, store.ErrNotFound) {
		return gone, err
	}
	return gone, nil
}

// MarkIndexed records, on a store holding no record yet (a new cloud),
// that every record has its index key: every claim writes one. Without it
// the first prune would take every record made since the start for one
// that predates the index and write its index key again (63,000 needless
// writes, and as many revisions for a restart to read, in the first
// minute of a 100,000-instance run).
func MarkIndexed(ctx context.Context, s store.Store) error {
	res, err := s.List(ctx, Prefix, store.Page{Limit: 1})
	if err != nil || len(res.KVs) > 0 {
		return err
	}
	if _, err := s.Create(ctx, indexedMarker, []byte("1")); err != nil && !errors.Is(err, store.ErrExists) {
		return err
	}
	return nil
}

// backfill gives every record without an index key its key, once per store
// (records kept before the index existed would otherwise never expire).
func backfill(ctx context.Context, s store.Store) error {
	if _, err := s.Get(ctx, indexedMarker); err == nil {
		return nil
	} else if !errors.Is(err, store.ErrNotFound) {
		return err
	}
	kvs, err := store.ListAll(ctx, s, Prefix)
	if err != nil {
		return err
	}
	var ops []store.Op
	flush := func() error {
		if len(ops) == 0 {
			return nil
		}
		_, err := s.Txn(ctx, nil, ops)
		ops = ops[:0]
		return err
	}
	for _, kv := range kvs {
		var rec Record
		if store.Decode(kv, &rec) != nil {
			continue
		}
		ops = append(ops, store.Put(expiryKey(kv.Key, rec.CreatedAt), nil))
		if len(ops) == store.MaxTxnOps {
			if err := flush(); err != nil {
				return err
			}
		}
	}
	if err := flush(); err != nil {
		return err
	}
	if _, err := s.Create(ctx, indexedMarker, []byte("1")); err != nil && !errors.Is(err, store.ErrExists) {
		return err
	}
	return nil
}
