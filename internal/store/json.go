package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
)

// GetJSON reads key into v and returns its revision.
func GetJSON(ctx context.Context, s Store, key string, v any) (int64, error) {
	kv, err := s.Get(ctx, key)
	if err != nil {
		return 0, err
	}
	if err := json.Unmarshal(kv.Value, v); err != nil {
		return 0, fmt.Errorf("decode %s: %w", key, err)
	}
	return kv.Revision, nil
}

// PutJSON is an Op writing v as JSON at key.
func PutJSON(key string, v any) Op { return Put(key, MustJSON(v)) }

// MustJSON encodes one of kumo's own stored types, which always marshal.
func MustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("store: marshal %T: %v", v, err))
	}
	return b
}

// ListAll returns every key under prefix, reading in pages all taken at
// the first page's revision (one consistent picture).
func ListAll(ctx context.Context, s Store, prefix string) ([]KV, error) {
	kvs, _, err := Snapshot(ctx, s, prefix)
	return kvs, err
}

// Snapshot returns every key under prefix as it was at one store revision,
// and that revision: a watch from revision+1 then sees every later change
// and nothing twice (the list-then-watch of client-go's reflector).
func Snapshot(ctx context.Context, s Store, prefix string) ([]KV, int64, error) {
	var out []KV
	page := Page{Limit: 1000}
	for {
		res, err := s.List(ctx, prefix, page)
		if errors.Is(err, ErrCompacted) && page.Revision != 0 {
			// The store trimmed its history past the first page's
			// revision while this listed (a long listing in a burst of
			// writes): list again from now.
			out, page = nil, Page{Limit: 1000}
			continue
		}
		if err != nil {
			return nil, 0, err
		}
		page.Revision = res.Revision
		out = append(out, res.KVs...)
		if !res.More || len(res.KVs) == 0 {
			return out, res.Revision, nil
		}
		page.After = res.KVs[len(res.KVs)-1].Key
	}
}

// Paginate lists objects under prefix after the name `after`, decoding each
// with decode, which may also drop it (keep=false, e.g. a filter). It
// returns at most limit objects (0 = all) and, when more may follow, the
// name to pass as `after` for the next page.
func Paginate[T any](ctx context.Context, s Store, prefix, after string, limit int, decode func(KV) (T, bool, error)) ([]T, string, error) {
	out, next, _, err := PaginateAt(ctx, s, prefix, after, limit, 0, decode)
	return out, next, err
}

// PaginateAt is Paginate reading the store as it was at revision rev (0:
// now). It returns the revision it read at: given to the next page's
// call, every page of a listing is one picture. A revision asked for that
// the store no longer keeps is ErrCompacted; asked for none (0), a
// listing the store compacted under while it read starts again.
func PaginateAt[T any](ctx context.Context, s Store, prefix, after string, limit int, rev int64, decode func(KV) (T, bool, error)) ([]T, string, int64, error) {
	asked := rev
	out := []T{}
	start := ""
	if after != "" {
		start = prefix + after
	}
	cursor := start
	for {
		batch := 500
		if limit > 0 && limit < batch {
			batch = limit
		}
		res, err := s.List(ctx, prefix, Page{After: cursor, Limit: batch, Revision: rev})
		if errors.Is(err, ErrCompacted) && asked == 0 && rev != 0 {
			out, cursor, rev = []T{}, start, 0
			continue
		}
		if err != nil {
			return nil, "", 0, err
		}
		rev = res.Revision
		for i, kv := range res.KVs {
			cursor = kv.Key
			v, keep, err := decode(kv)
			if err != nil {
				return nil, "", 0, err
			}
			if !keep {
				continue
			}
			out = append(out, v)
			if limit > 0 && len(out) == limit {
				// A next page only if keys remain (they may all be
				// filtered out: then that page is empty).
				if i < len(res.KVs)-1 || res.More {
					return out, cursor[len(prefix):], rev, nil
				}
				return out, "", rev, nil
			}
		}
		if !res.More || len(res.KVs) == 0 {
			return out, "", rev, nil
		}
	}
}

// PruneJSON deletes the objects under prefix that doom (given the object
// decoded into a fresh T) says must go, each only if unchanged since read.
// It returns how many went. Undecodable records are left alone.
func PruneJSON[T any](ctx context.Context, s Store, prefix string, doom func(*T) bool) (int, error) {
	kvs, err := ListAll(ctx, s, prefix)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, kv := range kvs {
		var v T
		if json.Unmarshal(kv.Value, &v) == nil && doom(&v) {
			if s.Delete(ctx, kv.Key, kv.Revision) == nil {
				n++
			}
		}
	}
	return n, nil
}

// Decode reads a KV's JSON value into v.
func Decode(kv KV, v any) error {
	if err := json.Unmarshal(kv.Value, v); err != nil {
		return fmt.Errorf("decode %s: %w", kv.Key, err)
	}
	return nil
}

// UpdateJSON is the read-modify-write of one JSON object, done right: it
// reads key, lets fn change the value, and writes it back only if key is
// still at the revision read (with extra ops, made from the new value, in
// the same transaction), trying again when somebody wrote in between. An
// error from fn ends it unchanged; a missing key is ErrNotFound.
func UpdateJSON[T any](ctx context.Context, s Store, key string, fn func(*T) error, extra func(*T) []Op) (T, int64, error) {
	for attempt := 0; attempt < 100; attempt++ {
		var v T
		rev, err := GetJSON(ctx, s, key, &v)
		if err != nil {
			return v, 0, err
		}
		if err := fn(&v); err != nil {
			return v, 0, err
		}
		ops := []Op{PutJSON(key, v)}
		if extra != nil {
			ops = append(ops, extra(&v)...)
		}
		nrev, err := s.Txn(ctx, []Cond{At(key, rev)}, ops)
		if !errors.Is(err, ErrConflict) {
			return v, nrev, err
		}
	}
	var zero T
	return zero, 0, fmt.Errorf("%s keeps changing: %w", key, ErrConflict)
}

// Item is one decoded object of a listing.
type Item[T any] struct {
	Key      string
	Revision int64
	Value    T
}

// ListJSON decodes every object under the prefixes, in key order per
// prefix; records that do not decode are skipped.
func ListJSON[T any](ctx context.Context, s Store, prefixes ...string) ([]Item[T], error) {
	var out []Item[T]
	for _, prefix := range prefixes {
		kvs, err := ListAll(ctx, s, prefix)
		if err != nil {
			return nil, err
		}
		for _, kv := range kvs {
			var v T
			if json.Unmarshal(kv.Value, &v) == nil {
				out = append(out, Item[T]{Key: kv.Key, Revision: kv.Revision, Value: v})
			}
		}
	}
	return out, nil
}

// Under narrows key prefixes of per-project keys (PREFIX/project/...) to
// one project; "" keeps them whole.
func Under(project string, prefixes ...string) []string {
	if project == "" {
		return prefixes
	}
	out := make([]string, len(prefixes))
	for i, p := range prefixes {
		out[i] = p + project + "/"
	}
	return out
}

// DeleteUnder deletes every key under prefix, each in a transaction of its
// own conditioned on the revision read, with extra ops made from it (an
// event); a key changed meanwhile is ErrConflict. Run again after a crash,
// it deletes what is left.
func DeleteUnder(ctx context.Context, s Store, prefix string, extra func(KV) []Op) error {
	kvs, err := ListAll(ctx, s, prefix)
	if err != nil {
		return err
	}
	for _, kv := range kvs {
		ops := []Op{Del(kv.Key)}
		if extra != nil {
			ops = append(ops, extra(kv)...)
		}
		if _, err := s.Txn(ctx, []Cond{At(kv.Key, kv.Revision)}, ops); err != nil {
			return fmt.Errorf("delete %s: %w", kv.Key, err)
		}
	}
	return nil
}

// MoveJSON moves every object under from to the same key under to, letting
// fn change it on the way; each move is one transaction (the old key at
// the revision read, the new one absent). Run again after a crash, it
// moves what is left.
func MoveJSON[T any](ctx context.Context, s Store, from, to string, fn func(*T)) error {
	kvs, err := ListAll(ctx, s, from)
	if err != nil {
		return err
	}
	for _, kv := range kvs {
		var v T
		if err := Decode(kv, &v); err != nil {
			return err
		}
		fn(&v)
		nk := to + kv.Key[len(from):]
		if _, err := s.Txn(ctx, []Cond{At(kv.Key, kv.Revision), Absent(nk)}, []Op{Del(kv.Key), PutJSON(nk, v)}); err != nil {
			return fmt.Errorf("move %s to %s: %w", kv.Key, nk, err)
		}
	}
	return nil
}
