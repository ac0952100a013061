package metering

import (
	"context"
	"log/slog"
	"maps"
	"reflect"
	"slices"
	"sync"
	"time"

	"github.com/kumocloud/kumo/api"
)

// Running keeps the month-to-date usage of every project from a feed of
// instances (InstanceFeed) instead of reading every instance and its
// history each round: a round costs what changed since the last one (and
// the number of projects), not what exists.
//
// Each counted instance adds its contribution to its project's sums once,
// when a round first sees it: its usage up to that round's time (closed
// intervals and the open one so far) and, if its last state bills, the
// rate at which the open interval grows (per millisecond: instance, vCPU,
// memory, disk and the one price in force). A project's usage at time now
// is then fixed + rate x now, whatever the number of its instances. A
// change takes the old contribution out (recomputed from the same inputs:
// the instance's record, which is never changed in place, and the time it
// was added at) and adds the new one at the next round. Everything is
// counted again when the month, a price or the rules change, when a price
// point comes into force (the open intervals' price changes) and when the
// clock steps back. Quantities are integers (milliseconds) and money is
// rounded only when a report is rendered, so the sums equal a full
// recompute exactly (TestRunningEqualsFull, TestBudgetRoundSameAsFull).
//
// The feed is a watch: the totals trail the store by its delivery (a few
// milliseconds), so a change lands in the next round at the latest, as
// it would in a cache. Until the feed's first listing is in, the budget
// loop skips its rounds (Ready).
type Running struct {
	mu      sync.Mutex
	entries map[string]*entry // by source and key
	// byID: the entries of one instance (live, archived); the archived one
	// counts when both are there (it holds the whole history).
	byID  map[string][]*entry
	ready map[string]bool
	// The sums are valid for this month, prices and rules, for rounds
	// from asOf up to until (the first price point after the last
	// recount; zero: none).
	month, asOf, until time.Time
	prices             api.Prices
	rules              Rules
	fixed, rate        map[string]*acc // by project: usage = fixed + rate x ms since month
	dirty              map[*entry]bool // counted entries whose contribution is not in the sums
	retired            []contribution  // contributions to take out of the sums
	upTo, perMS        *tally          // scratch for contributions
	sources            map[string]string
}

type entry struct {
	source, key string
	in          Instance
	counted     bool      // it is the instance's counted entry
	added       bool      // its contribution (at time at) is in the sums
	at          time.Time // the round (truncated to the millisecond) that added it
}

// contribution is what an entry put in the sums: enough to compute it
// again and take it out.
type contribution struct {
	in Instance
	at time.Time
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
		fixed: map[string]*acc{}, rate: map[string]*acc{}, dirty: map[*entry]bool{}, sources: map[string]string{}}
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
	if e.added {
		r.retired = append(r.retired, contribution{e.in, e.at})
		e.added = false
	}
	e.counted = false
	delete(r.dirty, e)
}

// Report is the month-to-date report by project as of now, with the
// given images and stored volumes, snapshots and backups: equal to
// ReportAll over every instance.
func (r *Running) Report(imgs []Image, stored []Stored, prices api.Prices, rules Rules, now time.Time) api.UsageReport {
	r.mu.Lock()
	defer r.mu.Unlock()
	from, nowMS := monthStart(now), now.Truncate(time.Millisecond)
	if !from.Equal(r.month) || !reflect.DeepEqual(prices, r.prices) || !reflect.DeepEqual(rules, r.rules) ||
		nowMS.Before(r.asOf) || !r.until.IsZero() && nowMS.After(r.until) {
		// Everything is counted again under the new month, prices or
		// rules, price in force, or a clock that stepped back.
		r.month, r.prices, r.rules = from, clonePrices(prices), maps.Clone(rules)
		r.until = nextPoint(prices, nowMS)
		r.fixed, r.rate, r.retired = map[string]*acc{}, map[string]*acc{}, nil
		for _, e := range r.entries {
			e.added = false
			if e.counted {
				r.dirty[e] = true
			}
		}
	}
	r.asOf = nowMS
	for _, c := range r.retired {
		r.contribute(c, -1)
	}
	r.retired = nil
	for e := range r.dirty {
		if fromFuture(e.in.History, now) {
			continue // counted whole below
		}
		e.added, e.at = true, nowMS
		r.contribute(contribution{e.in, nowMS}, 1)
		delete(r.dirty, e)
	}
	t := newTally(prices, rules, from, now, now, ByProject)
	sinceMonth := nowMS.Sub(from).Milliseconds()
	for p, f := range r.fixed {
		g := t.group(p)
		g.add(f)
		g.addScaled(r.rate[p], sinceMonth)
	}
	for e := range r.dirty { // left dirty: from the future, counted whole
		t.instance(&e.in, 0, len(e.in.History))
	}
	t.rest(imgs, stored)
	return t.report()
}

// contribute adds (sign 1) or takes out (-1) an instance's contribution
// as of at: its usage up to at, less its rate x at, in fixed; its rate in
// rate. Between at and the next price point its usage is then the sums'
// fixed + rate x now, exactly: the open interval's milliseconds grow one
// by one at the price in force at at (no price point lies in between).
func (r *Running) contribute(c contribution, sign int64) {
	h, p := c.in.History, c.in.Project
	if r.fixed[p] == nil {
		r.fixed[p], r.rate[p] = newAcc(), newAcc()
	}
	// Its usage up to at.
	t := r.scratch(&r.upTo, r.month, c.at, p)
	t.instance(&c.in, 0, len(h))
	r.fixed[p].addScaled(t.groups[p], sign)
	// The open interval's rate: its usage over [at, at+1ms).
	next := c.at.Add(time.Millisecond)
	t = r.scratch(&r.perMS, c.at, next, p)
	if len(h) > 0 {
		t.instance(&c.in, len(h)-1, len(h))
	}
	r.fixed[p].addScaled(t.groups[p], -sign*c.at.Sub(r.month).Milliseconds())
	r.rate[p].addScaled(t.groups[p], sign)
}

// scratch readies a tally kept for contributions (*t, made once per
// recount) over [from, to) with one empty group for project p: a round
// that adds thousands of contributions makes no maps for them.
func (r *Running) scratch(t **tally, from, to time.Time, p string) *tally {
	if *t == nil {
		*t = newTally(r.prices, r.rules, from, to, to, ByProject)
	}
	x := *t
	x.prices, x.rules, x.from, x.to, x.end = r.prices, r.rules, from, to, to
	var g *acc
	for k, old := range x.groups { // at most one: the last contribution's
		g = old
		delete(x.groups, k)
	}
	if g == nil {
		g = newAcc()
	}
	g.reset()
	x.groups[p] = g
	return x
}

// fromFuture says a history has a record after now (written before a
// clock stepped back; not always the last one): its usage so far is not
// yet fixed, so it is counted whole each round until now passes it.
func fromFuture(h []api.HistoryRecord, now time.Time) bool {
	return slices.ContainsFunc(h, func(r api.HistoryRecord) bool { return r.Time.After(now) })
}

// nextPoint is the first price point of instances (flavors, storage)
// after t; zero if none.
func nextPoint(p api.Prices, t time.Time) time.Time {
	var next time.Time
	for _, pts := range append(slices.Collect(maps.Values(p.Flavors)), p.Storage) {
		for _, pt := range pts {
			if pt.Effective.After(t) && (next.IsZero() || pt.Effective.Before(next)) {
				next = pt.Effective
			}
		}
	}
	return next
}

// clonePrices copies what a caller could change under the running totals.
func clonePrices(p api.Prices) api.Prices {
	p.Flavors = maps.Clone(p.Flavors)
	return p
}
