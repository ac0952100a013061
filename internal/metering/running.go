package metering

import (
	"context"
	"log/slog"
	"maps"
	"reflect"
	"sync"
	"time"

	"github.com/kumocloud/kumo/api"
)

// Running keeps the month-to-date usage of every project from a feed of
// instances (InstanceFeed) instead of reading every instance and its
// history each round: the budget loop's cost grows with what changed and
// with the instances in a billed state, not with every record ever kept.
//
// An instance's usage is the intervals between its history records. All
// but the last are closed: their usage this month is fixed until the
// instance changes, the month turns or prices or rules change, so it is
// computed once and kept in its project's sum. The last interval is open
// and counted again each round up to now. Quantities are integers
// (milliseconds) and money is rounded only when a report is rendered, so
// the sums equal a full recompute exactly (TestRunningEqualsFull).
//
// The feed is a watch: the totals trail the store by its delivery (a few
// milliseconds), so a change lands in the next round at the latest, as
// it would in a cache. Until the feed's first listing is in, the budget
// loop reads every instance as before.
type Running struct {
	mu      sync.Mutex
	entries map[string]*entry // by source and key
	// byID: the entries of one instance (live, archived); the archived one
	// counts when both are there (it holds the whole history).
	byID  map[string][]*entry
	ready map[string]bool
	// The closed sums are valid for this month, prices and rules.
	month   time.Time
	prices  api.Prices
	rules   Rules
	closed  map[string]*acc   // by project: closed intervals of counted entries
	dirty   map[*entry]bool   // counted entries whose closed part is not in closed
	open    map[*entry]bool   // counted entries whose last interval bills
	sources map[string]string // source -> "" (the sources expected)
}

type entry struct {
	source, key string
	in          Instance
	counted     bool // it is the instance's counted entry
	inClosed    *acc // what it put in closed (nil: nothing)
}

// Sources of instances: live ones, and the archive of DONE ones (which
// wins when an instance is briefly in both).
const (
	SourceLive    = "live"
	SourceArchive = "archive"
)

// InstanceFeed is compute as the budget loop follows it.
type InstanceFeed interface {
	// FollowInstances feeds r with every instance (live and archived)
	// and then each change, until ctx ends.
	FollowInstances(ctx context.Context, r *Running, log *slog.Logger)
}

// NewRunning returns running totals fed by the named sources (each must
// Replace once before the totals are Ready).
func NewRunning(sources ...string) *Running {
	r := &Running{entries: map[string]*entry{}, byID: map[string][]*entry{}, ready: map[string]bool{},
		closed: map[string]*acc{}, dirty: map[*entry]bool{}, open: map[*entry]bool{}, sources: map[string]string{}}
	for _, s := range sources {
		r.sources[s] = ""
	}
	return r
}

// Ready says every source has been listed.
func (r *Running) Ready() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.ready) == len(r.sources)
}

// Replace makes the instances of source exactly items (by key).
func (r *Running) Replace(source string, items map[string]Instance) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for k, e := range r.entries {
		if e.source == source {
			if _, ok := items[e.key]; !ok {
				r.remove(k)
			}
		}
	}
	for key, in := range items {
		r.put(source, key, in)
	}
	r.ready[source] = true
}

// Put adds or changes one instance.
func (r *Running) Put(source, key string, in Instance) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.put(source, key, in)
}

// Delete removes one instance.
func (r *Running) Delete(source, key string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.remove(source + "\x00" + key)
}

func (r *Running) put(source, key string, in Instance) {
	k := source + "\x00" + key
	if old := r.entries[k]; old != nil {
		r.remove(k)
	}
	e := &entry{source: source, key: key, in: in}
	r.entries[k] = e
	r.byID[in.ID] = append(r.byID[in.ID], e)
	r.recount(in.ID)
}

func (r *Running) remove(k string) {
	e := r.entries[k]
	if e == nil {
		return
	}
	r.uncount(e)
	delete(r.entries, k)
	list := r.byID[e.in.ID]
	for i, x := range list {
		if x == e {
			list = append(list[:i], list[i+1:]...)
			break
		}
	}
	if len(list) == 0 {
		delete(r.byID, e.in.ID)
	} else {
		r.byID[e.in.ID] = list
	}
	r.recount(e.in.ID)
}

// recount makes the right entry of an instance the counted one: the
// archived one if there is one, else the live one.
func (r *Running) recount(id string) {
	list := r.byID[id]
	var want *entry
	for _, e := range list {
		if want == nil || e.source == SourceArchive {
			want = e
		}
	}
	for _, e := range list {
		if e != want && e.counted {
			r.uncount(e)
		}
	}
	if want != nil && !want.counted {
		want.counted = true
		r.dirty[want] = true
	}
}

// uncount takes an entry's usage out of the sums.
func (r *Running) uncount(e *entry) {
	if !e.counted {
		return
	}
	if e.inClosed != nil {
		r.closed[e.in.Project].sub(e.inClosed)
		e.inClosed = nil
	}
	e.counted = false
	delete(r.dirty, e)
	delete(r.open, e)
}

// Report is the month-to-date report by project as of now, with the
// given images and stored volumes, snapshots and backups: equal to
// ReportAll over every instance.
func (r *Running) Report(imgs []Image, stored []Stored, prices api.Prices, rules Rules, now time.Time) api.UsageReport {
	r.mu.Lock()
	defer r.mu.Unlock()
	from := monthStart(now)
	if !from.Equal(r.month) || !reflect.DeepEqual(prices, r.prices) || !reflect.DeepEqual(rules, r.rules) {
		// Everything closed is counted again under the new month or prices.
		r.month, r.prices, r.rules = from, clonePrices(prices), maps.Clone(rules)
		r.closed = map[string]*acc{}
		r.open = map[*entry]bool{}
		for _, e := range r.entries {
			e.inClosed = nil
			if e.counted {
				r.dirty[e] = true
			}
		}
	}
	t := newTally(prices, rules, from, now, now, ByProject)
	for e := range r.dirty {
		h := e.in.History
		if len(h) > 0 && h[len(h)-1].Time.After(now) {
			continue // from the future (a clock stepped back): counted whole below
		}
		if len(h) > 1 {
			t.groups = map[string]*acc{}
			t.instance(&e.in, 0, len(h)-1)
			if g := t.groups[e.in.Project]; g != nil {
				c := r.closed[e.in.Project]
				if c == nil {
					c = newAcc()
					r.closed[e.in.Project] = c
				}
				c.add(g)
				e.inClosed = g
			}
		}
		if len(h) > 0 && rules[h[len(h)-1].To] != None {
			r.open[e] = true
		}
		delete(r.dirty, e)
	}
	t.groups = make(map[string]*acc, len(r.closed))
	for p, c := range r.closed {
		g := newAcc()
		g.add(c)
		t.groups[p] = g
	}
	for e := range r.open {
		h := e.in.History
		t.instance(&e.in, len(h)-1, len(h))
	}
	for e := range r.dirty { // left dirty: from the future, counted whole
		t.instance(&e.in, 0, len(e.in.History))
	}
	t.rest(imgs, stored)
	return t.report()
}

// clonePrices copies what a caller could change under the running totals.
func clonePrices(p api.Prices) api.Prices {
	p.Flavors = maps.Clone(p.Flavors)
	return p
}
