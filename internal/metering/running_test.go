package metering

import (
	"fmt"
	"math/rand"
	"reflect"
	"sort"
	"testing"
	"time"

	"github.com/kumocloud/kumo/api"
)

// TestRunningEqualsFull: over a random run of creates, transitions,
// archives (seen in either order), relists, price and rule changes and
// clock steps across months, the running totals' report equals a full
// recompute over every instance, every round.
func TestRunningEqualsFull(t *testing.T) {
	for seed := int64(1); seed <= 20; seed++ {
		t.Run(fmt.Sprint(seed), func(t *testing.T) { runningVersusFull(t, rand.New(rand.NewSource(seed))) })
	}
}

func runningVersusFull(t *testing.T, rnd *rand.Rand) {
	states := []api.State{"PENDING", "PROLOG", "BOOT", "RUNNING", "SUSPENDED", "STOPPED", "POWEROFF", "UNKNOWN", "MIGRATE", "SAVE", "FAILED"}
	flavors := []string{"small", "big"}
	now := time.Date(2026, 10, 28, 10, 0, 0, 0, time.UTC)
	p := api.Prices{Currency: "EUR", Flavors: map[string][]api.PricePoint{"small": {{Micro: 100_000}}, "big": {{Micro: 700_000}}}, Storage: []api.PricePoint{{Micro: 130}}}
	rl := NewRules(DefaultComputeStates, DefaultStorageStates)
	live, archived := map[string]Instance{}, map[string]Instance{}
	r := NewRunning(SourceLive, SourceArchive)
	r.Replace("live", nil)
	r.Replace("archive", nil)
	var pending []func() // archive moves not yet seen whole
	n := 0
	for step := 0; step < 400; step++ {
		switch x := rnd.Intn(100); {
		case x < 20:
			n++
			id := fmt.Sprint("i", n)
			in := Instance{ID: id, Name: id, Project: fmt.Sprint("p", rnd.Intn(4)), Flavor: flavors[rnd.Intn(2)],
				Size:    api.Size{VCPUs: int64(1 + rnd.Intn(4)), MemoryMiB: 512, DiskGiB: int64(rnd.Intn(3) * 10)},
				History: []api.HistoryRecord{{Seq: 1, Time: now, To: "PENDING"}}}
			live[id] = in
			r.Put("live", "/i/"+id, in)
		case x < 60 && len(live) > 0:
			id := anyKey(rnd, live)
			in := live[id]
			in.History = append(append([]api.HistoryRecord(nil), in.History...), api.HistoryRecord{Seq: len(in.History) + 1, Time: now, To: states[rnd.Intn(len(states))]})
			live[id] = in
			r.Put("live", "/i/"+id, in)
		case x < 70 && len(live) > 0:
			id := anyKey(rnd, live)
			in := live[id]
			in.History = append(append([]api.HistoryRecord(nil), in.History...), api.HistoryRecord{Seq: len(in.History) + 1, Time: now, To: "DONE"})
			delete(live, id)
			archived[id] = in
			del := func() { r.Delete("live", "/i/"+id) }
			put := func() { r.Put("archive", "/a/"+id, in) }
			if rnd.Intn(2) == 0 {
				del, put = put, del
			}
			del()
			pending = append(pending, put)
		case x < 75:
			// A relist of one source.
			src, m, pre := "live", live, "/i/"
			if rnd.Intn(2) == 0 {
				src, m, pre = "archive", archived, "/a/"
			}
			for _, f := range pending {
				f()
			}
			pending = nil
			items := map[string]Instance{}
			for id, in := range m {
				items[pre+id] = in
			}
			r.Replace(src, items)
		case x < 80:
			f := flavors[rnd.Intn(2)]
			p.Flavors[f] = append(append([]api.PricePoint(nil), p.Flavors[f]...), api.PricePoint{Effective: now.Add(time.Duration(rnd.Intn(3)) * time.Hour), Micro: int64(rnd.Intn(1_000_000))})
		case x < 82:
			if rnd.Intn(2) == 0 {
				rl = NewRules(DefaultComputeStates, DefaultStorageStates)
			} else {
				rl = NewRules([]api.State{"RUNNING"}, []api.State{"STOPPED", "SUSPENDED"})
			}
		case x < 84:
			now = now.Add(-time.Duration(rnd.Int63n(int64(3 * time.Hour)))) // a clock stepped back
		default:
			now = now.Add(time.Duration(rnd.Int63n(int64(36 * time.Hour))))
		}
		if rnd.Intn(4) > 0 {
			continue
		}
		for _, f := range pending {
			f()
		}
		pending = nil
		var all []Instance
		for _, in := range live {
			all = append(all, in)
		}
		for _, in := range archived {
			all = append(all, in)
		}
		want := ReportAll(all, nil, nil, p, rl, monthStart(now), now, now, ByProject)
		got := r.Report(nil, nil, p, rl, now)
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("step %d at %s:\nrunning %+v\nfull    %+v", step, now, got, want)
		}
	}
}

func anyKey(rnd *rand.Rand, m map[string]Instance) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	// Map order is random but not from rnd: sort for a repeatable run.
	sort.Strings(keys)
	return keys[rnd.Intn(len(keys))]
}

// TestRunningChangesDuringRounds: instances change state and size while
// rounds run (the feed calls in from the compute cache at any moment);
// once the changes stop, a round equals a full recompute.
func TestRunningChangesDuringRounds(t *testing.T) {
	r := NewRunning(SourceLive, SourceArchive)
	r.Replace(SourceLive, nil)
	r.Replace(SourceArchive, nil)
	p, now := prices(100_000), t0.Add(10*time.Hour)
	final := make([]Instance, 50)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range 2000 {
			j := i % len(final)
			in := final[j]
			if in.ID == "" {
				in = inst(fmt.Sprint("i", j), hist(time.Duration(j)*time.Minute, "RUNNING"))
			}
			last := in.History[len(in.History)-1]
			to := api.State("STOPPED")
			if last.To == to {
				to = "RUNNING"
			}
			in.History = append(append([]api.HistoryRecord(nil), in.History...), api.HistoryRecord{Seq: last.Seq + 1, Time: last.Time.Add(time.Second), From: last.To, To: to})
			in.Size.VCPUs = int64(1 + i%4)
			final[j] = in
			r.Put(SourceLive, "/i/"+in.ID, in)
		}
	}()
	rounds := 0
	for running := true; running; rounds++ {
		select {
		case <-done:
			running = false
		default:
		}
		now = now.Add(time.Second)
		r.Report(nil, nil, p, rules, now)
	}
	if got, want := r.Report(nil, nil, p, rules, now), ReportAll(final, nil, nil, p, rules, monthStart(now), now, now, ByProject); !reflect.DeepEqual(got, want) {
		t.Fatalf("after %d rounds: running %+v\nfull    %+v", rounds, got.Total, want.Total)
	}
}
