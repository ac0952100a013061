// Package events keeps kumo's event log: one record per change, written in
// the same store transaction as the change itself (so a crash can neither
// lose an event nor record a change that did not happen), streamed to
// clients and pruned after a retention period.
//
// An event's ID is made of the store revision that wrote it and its place
// among the events of that transaction: ID = revision*4096 + index. IDs
// only grow, so a client that remembers the last ID it saw resumes with
// every later event, exactly once.
package events

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/kumocloud/kumo/api"
	"github.com/kumocloud/kumo/internal/reqctx"
	"github.com/kumocloud/kumo/internal/store"
)

// Prefix is the key prefix this package owns.
const Prefix = "/events/"

// Actions.
const (
	Created = "created"
	Updated = "updated"
	Deleted = "deleted"
)

// Op returns the store write that records an event; add it to the
// transaction that makes the change. obj is the API object after the change
// (nil for deletions).
func Op(ctx context.Context, typ, action, project, resource string, obj any) store.Op {
	now := time.Now().UTC()
	ev := api.Event{Time: now, Type: typ, Action: action, Project: project, Resource: resource, Actor: reqctx.Actor(ctx)}
	if obj != nil {
		b, err := json.Marshal(obj)
		if err == nil {
			ev.Object = b
		}
	}
	// The sequence number orders the events of one transaction (one
	// process makes all of them) the way the transaction applies them.
	key := fmt.Sprintf("%s%020d-%s-%012d", Prefix, now.UnixNano(), proc, seq.Add(1))
	return store.PutJSON(key, ev)
}

var (
	seq  atomic.Int64
	proc = func() string {
		var r [4]byte
		rand.Read(r[:])
		return hex.EncodeToString(r[:])
	}()
)

// perRevision is how many events one transaction may carry.
const perRevision = 4096

// ID makes an event ID from a revision and an index within it.
func ID(rev int64, index int) int64 { return rev*perRevision + int64(index) }

func seqOf(key string) string { return key[strings.LastIndex(key, "-")+1:] }

// Decode reads an event record, giving it the ID of its place: index
// among its revision's events.
func Decode(kv store.KV, index int) (api.Event, error) {
	var ev api.Event
	if err := json.Unmarshal(kv.Value, &ev); err != nil {
		return ev, fmt.Errorf("decode event %s: %w", kv.Key, err)
	}
	ev.ID = ID(kv.CreateRevision, index)
	return ev, nil
}

// Filter selects events. A nil Projects map means every project; Global
// allows events that belong to no project (users, flavors). Types, when
// set, keeps only those types.
type Filter struct {
	Projects map[string]bool
	Global   bool
	Types    []string
}

// Match reports whether ev passes the filter.
func (f Filter) Match(ev api.Event) bool {
	if ev.Project == "" {
		if !f.Global {
			return false
		}
	} else if f.Projects != nil && !f.Projects[ev.Project] {
		return false
	}
	if len(f.Types) == 0 {
		return true
	}
	for _, t := range f.Types {
		if t == ev.Type || strings.HasPrefix(ev.Type, t+".") {
			return true
		}
	}
	return false
}

// Stream calls fn for each event matching f with ID > since, in ID order:
// first those still kept, then, when follow is set, new ones as they
// happen, until ctx ends or fn fails. since 0 with follow starts from now.
// It reads events through store.Reflect, so an event written while the
// stream starts, or while its watch is resumed, is never skipped.
func Stream(ctx context.Context, s store.Store, since int64, follow bool, f Filter, fn func(api.Event) error) error {
	if !follow {
		kvs, _, err := store.Snapshot(ctx, s, Prefix)
		if err != nil {
			return err
		}
		v := &streamView{last: since, f: f, fn: fn}
		v.Replace(kvs, 0)
		return v.err
	}
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	v := &streamView{last: since, f: f, fn: fn, stop: cancel}
	after := int64(0)
	if since == 0 {
		rev, err := s.Revision(ctx)
		if err != nil {
			return err
		}
		after, v.last = rev, ID(rev+1, 0)-1
	} else {
		// Resume by watching from the revision of the last event the
		// consumer has (the watch replays that revision's events, those
		// up to since are dropped by ID), not by listing every kept
		// event: at 100,000 instances a day's events are half a million,
		// seconds of the server's CPU for each resumed stream. A revision
		// compacted away lists them (Follow).
		after = max(since/perRevision-1, 0)
	}
	store.Follow(sctx, s, Prefix, after, v, nil)
	if v.err != nil {
		return v.err
	}
	return ctx.Err()
}

// streamView hands events to a stream's consumer, each once, in ID order.
type streamView struct {
	last   int64 // the newest event ID handed over (or skipped as too old)
	f      Filter
	fn     func(api.Event) error
	stop   func()
	err    error
	curRev int64          // the revision being watched
	keys   map[string]int // its events so far, by key: their index
}

// Replace hands over the kept events newer than the last one handed over.
func (v *streamView) Replace(kvs []store.KV, _ int64) {
	// Keys are in time order, which can differ from revision order by a
	// little when servers' clocks differ: order by revision, and within
	// one by the sequence the transaction wrote them in.
	slices.SortFunc(kvs, func(a, b store.KV) int {
		if c := cmp.Compare(a.CreateRevision, b.CreateRevision); c != 0 {
			return c
		}
		return cmp.Compare(seqOf(a.Key), seqOf(b.Key))
	})
	index := 0
	for i, kv := range kvs {
		if i > 0 && kvs[i-1].CreateRevision == kv.CreateRevision {
			index++
		} else {
			index = 0
		}
		if ev, err := Decode(kv, index); err == nil {
			v.give(ev)
		}
	}
	v.curRev, v.keys = 0, nil
}

// Apply hands over a new event; replays are dropped by their ID.
func (v *streamView) Apply(ev store.WatchEvent) {
	if ev.Type != store.EventPut {
		return // pruning
	}
	if ev.KV.Revision != v.curRev {
		v.curRev, v.keys = ev.KV.Revision, map[string]int{}
	}
	// A resumed watch replays the rest of a revision from its first
	// event: a key seen before keeps its index (and is dropped by ID).
	index, seen := v.keys[ev.KV.Key]
	if !seen {
		index = len(v.keys)
		v.keys[ev.KV.Key] = index
	}
	if e, err := Decode(ev.KV, index); err == nil {
		v.give(e)
	}
}

func (v *streamView) give(ev api.Event) {
	if v.err != nil || ev.ID <= v.last {
		return
	}
	v.last = ev.ID
	if v.f.Match(ev) {
		if err := v.fn(ev); err != nil {
			v.err = err
			if v.stop != nil {
				v.stop()
			}
		}
	}
}

// Prune deletes events older than cutoff and returns how many.
func Prune(ctx context.Context, s store.Store, cutoff time.Time) (int, error) {
	limit := fmt.Sprintf("%s%020d", Prefix, cutoff.UnixNano())
	n := 0
	after := ""
	for {
		res, err := s.List(ctx, Prefix, store.Page{After: after, Limit: 500})
		if err != nil {
			return n, err
		}
		for _, kv := range res.KVs {
			if kv.Key >= limit {
				return n, nil
			}
			if err := s.Delete(ctx, kv.Key, 0); err == nil {
				n++
			}
		}
		if !res.More || len(res.KVs) == 0 {
			return n, nil
		}
		after = res.KVs[len(res.KVs)-1].Key
	}
}
