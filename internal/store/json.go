package store

import (
	"context"
	"encoding/json"
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

// ListAll returns every key under prefix, reading in pages.
func ListAll(ctx context.Context, s Store, prefix string) ([]KV, error) {
	var out []KV
	after := ""
	for {
		res, err := s.List(ctx, prefix, Page{After: after, Limit: 1000})
		if err != nil {
			return nil, err
		}
		out = append(out, res.KVs...)
		if !res.More || len(res.KVs) == 0 {
			return out, nil
		}
		after = res.KVs[len(res.KVs)-1].Key
	}
}

// Paginate lists objects under prefix after the name `after`, decoding each
// with decode, which may also drop it (keep=false, e.g. a filter). It
// returns at most limit objects (0 = all) and, when more may follow, the
// name to pass as `after` for the next page.
func Paginate[T any](ctx context.Context, s Store, prefix, after string, limit int, decode func(KV) (T, bool, error)) ([]T, string, error) {
	out := []T{}
	cursor := ""
	if after != "" {
		cursor = prefix + after
	}
	for {
		batch := 500
		if limit > 0 && limit < batch {
			batch = limit
		}
		res, err := s.List(ctx, prefix, Page{After: cursor, Limit: batch})
		if err != nil {
			return nil, "", err
		}
		for _, kv := range res.KVs {
			cursor = kv.Key
			v, keep, err := decode(kv)
			if err != nil {
				return nil, "", err
			}
			if !keep {
				continue
			}
			out = append(out, v)
			if limit > 0 && len(out) == limit {
				// There is a next page only if keys remain.
				more, err := s.List(ctx, prefix, Page{After: cursor, Limit: 1})
				if err != nil {
					return nil, "", err
				}
				if len(more.KVs) > 0 {
					return out, cursor[len(prefix):], nil
				}
				return out, "", nil
			}
		}
		if !res.More || len(res.KVs) == 0 {
			return out, "", nil
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
