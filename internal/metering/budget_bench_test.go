package metering

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/kumocloud/kumo/api"
	"github.com/kumocloud/kumo/internal/store/memstore"
)

// simInstances are n instances as a sim cloud has them, over 100
// projects: a quarter DONE (archived), the rest RUNNING since their boot.
func simInstances(n int, start time.Time) (live, archived map[string]Instance) {
	live, archived = map[string]Instance{}, map[string]Instance{}
	for i := 0; i < n; i++ {
		in := Instance{ID: fmt.Sprint("id-", i), Name: fmt.Sprint("i-", i), Project: fmt.Sprint("p", i%100), Flavor: "small",
			Size: api.Size{VCPUs: 1, MemoryMiB: 1024, DiskGiB: 10}}
		at := start.Add(time.Duration(i) * time.Second)
		from := api.State("")
		for _, s := range []api.State{api.StatePending, api.StateProlog, api.StateBoot, api.StateRunning} {
			in.History = append(in.History, api.HistoryRecord{Seq: len(in.History) + 1, Time: at, From: from, To: s})
			at, from = at.Add(time.Second), s
		}
		if i%4 == 0 {
			in.History = append(in.History, api.HistoryRecord{Seq: 5, Time: at.Add(time.Hour), From: from, To: api.StateDone})
			archived["/a/"+in.ID] = in
		} else {
			live["/i/"+in.ID] = in
		}
	}
	return live, archived
}

// BenchmarkBudgetRound100k is one round of the budget loop at 100,000
// sim instances over 100 projects, each with a budget (a third over it):
// "round" is Meter.CheckBudgets from the running totals (prices read,
// report, metrics, budgets compared, alerts kept), nothing changed since
// the last round; "round-1000-changed" the same with 1,000 instances
// stopped before it; "full-recompute" the usage of every instance and its
// history computed afresh, as a round without running totals does (less
// the store's read and decode of every record).
func BenchmarkBudgetRound100k(b *testing.B) {
	t0 := time.Date(2026, 11, 2, 0, 0, 0, 0, time.UTC)
	live, archived := simInstances(100_000, t0)
	now := t0.Add(72 * time.Hour)
	ctx := context.Background()
	st := memstore.New()
	if err := EnsureFlavorPrice(ctx, st, "small", 12_000, t0); err != nil {
		b.Fatal(err)
	}
	src := &fakeSources{}
	for p := range 100 {
		src.budgets = append(src.budgets, Budget{Project: fmt.Sprint("p", p), Micro: []int64{50_000_000, 400_000_000, 900_000_000}[p%3]})
	}
	clock := now
	m := New(st, Config{Currency: "EUR", Clock: func() time.Time { return clock }, Every: time.Hour}, src, src, src)
	m.Follow(nil)
	m.running.Replace(SourceLive, live)
	m.running.Replace(SourceArchive, archived)
	if err := m.CheckBudgets(ctx); err != nil { // the first round counts every instance once
		b.Fatal(err)
	}
	b.Run("round", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			clock = clock.Add(time.Second)
			if err := m.CheckBudgets(ctx); err != nil {
				b.Fatal(err)
			}
		}
	})
	keys := make([]string, 0, len(live))
	for k := range live {
		keys = append(keys, k)
	}
	b.Run("round-1000-changed", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			b.StopTimer()
			clock = clock.Add(time.Second)
			for j := range 1000 {
				k := keys[(i*1000+j)%len(keys)]
				in := live[k]
				last := in.History[len(in.History)-1]
				to := api.StateStopped
				if last.To == to {
					to = api.StateRunning
				}
				in.History = append(in.History[:len(in.History):len(in.History)], api.HistoryRecord{Seq: last.Seq + 1, Time: clock, From: last.To, To: to})
				live[k] = in
				m.running.Put(SourceLive, k, in)
			}
			b.StartTimer()
			if err := m.CheckBudgets(ctx); err != nil {
				b.Fatal(err)
			}
		}
	})
	all := make([]Instance, 0, len(live)+len(archived))
	for _, in := range live {
		all = append(all, in)
	}
	for _, in := range archived {
		all = append(all, in)
	}
	p, rl, err := Load(ctx, st, "EUR")
	if err != nil {
		b.Fatal(err)
	}
	b.Run("full-recompute", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			ReportAll(all, nil, nil, p, rl, monthStart(now), now, now, ByProject)
		}
	})
}
