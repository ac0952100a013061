package compute

import (
	"context"
	"fmt"
	"log/slog"
	"reflect"
	"testing"
	"time"

	"github.com/kumocloud/kumo/api"
	"github.com/kumocloud/kumo/internal/metering"
	"github.com/kumocloud/kumo/internal/store"
	"github.com/kumocloud/kumo/internal/store/memstore"
)

// runningSink is metering's running totals as FollowMetered feeds them
// (the server's adapter, whose source names are the same).
type runningSink struct{ r *metering.Running }

func toMetering(m Metered) metering.Instance {
	return metering.Instance{ID: m.Instance.ID, Name: m.Instance.Name, Project: m.Instance.Project, Flavor: m.Instance.Flavor, Size: m.Instance.Size, History: m.History}
}

func (s runningSink) Replace(source string, items map[string]Metered) {
	out := map[string]metering.Instance{}
	for k, m := range items {
		out[k] = toMetering(m)
	}
	s.r.Replace(source, out)
}
func (s runningSink) Put(source, key string, m Metered) { s.r.Put(source, key, toMetering(m)) }
func (s runningSink) Delete(source, key string)         { s.r.Delete(source, key) }

// simCloud writes n instances over projects, as a sim cloud would have
// them: a quarter DONE (archived), the rest RUNNING since their boot.
func simCloud(tb testing.TB, n int, t0 time.Time) *memstore.Store {
	st := memstore.New()
	ctx := context.Background()
	var ops []store.Op
	for i := 0; i < n; i++ {
		r := record{Instance: api.Instance{Meta: api.Meta{ID: fmt.Sprint("id-", i), Name: fmt.Sprint("i-", i)}, Project: fmt.Sprint("p", i%100),
			Flavor: "small", Size: api.Size{VCPUs: 1, MemoryMiB: 1024, DiskGiB: 10}}}
		at := t0.Add(time.Duration(i) * time.Second)
		for _, s := range []api.State{api.StatePending, api.StateProlog, api.StateBoot, api.StateRunning} {
			r.transition(at, s, fmt.Sprint("h", i%10000), "test", "")
			at = at.Add(time.Second)
		}
		k := instancesPrefix + r.Project + "/" + r.Name
		if i%4 == 0 {
			r.transition(at.Add(time.Hour), api.StateDone, "", "test", "")
			k = archivePrefix + r.Project + "/" + r.Name + "/" + r.ID
		}
		ops = append(ops, store.PutJSON(k, r))
		if len(ops) == 100 || i == n-1 {
			if _, err := st.Txn(ctx, nil, ops); err != nil {
				tb.Fatal(err)
			}
			ops = nil
		}
	}
	return st
}

// follow starts the service's cache and the feed into running totals and
// waits for its listing.
func follow(tb testing.TB, svc *Service) (*metering.Running, context.CancelFunc) {
	ctx, cancel := context.WithCancel(context.Background())
	r := metering.NewRunning(metering.SourceLive, metering.SourceArchive)
	go svc.cache.run(ctx, svc.s, slog.New(slog.DiscardHandler))
	go svc.FollowMetered(ctx, runningSink{r}, nil)
	deadline := time.Now().Add(10 * time.Minute) // 100,000 records listed on a busy machine
	for !r.Ready() {
		if time.Now().After(deadline) {
			tb.Fatal("the feed never listed")
		}
		time.Sleep(10 * time.Millisecond)
	}
	return r, cancel
}

func fullReport(tb testing.TB, svc *Service, p api.Prices, rules metering.Rules, now time.Time) api.UsageReport {
	ms, err := svc.ForMetering(context.Background(), "")
	if err != nil {
		tb.Fatal(err)
	}
	insts := make([]metering.Instance, len(ms))
	for i, m := range ms {
		insts[i] = toMetering(m)
	}
	from := time.Date(now.Year(), now.Month(), 1, 0, 0, 0, 0, time.UTC)
	return metering.ReportAll(insts, nil, nil, p, rules, from, now, now, metering.ByProject)
}

var meterPrices = api.Prices{Currency: "EUR", Flavors: map[string][]api.PricePoint{"small": {{Micro: 12_000}}}, Storage: []api.PricePoint{{Micro: 100}}}

// TestFollowMetered: the feed gives metering every instance, live and
// archived, and each change (an instance stopped, one archived), and the
// running totals then equal a full read of the store.
func TestFollowMetered(t *testing.T) {
	t0 := time.Date(2026, 11, 2, 0, 0, 0, 0, time.UTC)
	st := simCloud(t, 200, t0)
	svc := &Service{s: st, cache: newCache()}
	r, cancel := follow(t, svc)
	defer cancel()
	rules := metering.NewRules(metering.DefaultComputeStates, metering.DefaultStorageStates)
	now := t0.Add(48 * time.Hour)
	check := func(what string) {
		t.Helper()
		want := fullReport(t, svc, meterPrices, rules, now)
		deadline := time.Now().Add(30 * time.Second)
		for {
			got := r.Report(nil, nil, meterPrices, rules, now)
			if reflect.DeepEqual(got, want) {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: running %+v\nfull %+v", what, got.Total, want.Total)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	check("after the listing")
	ctx := context.Background()
	// i-1 stops, i-2 is archived: the feed follows both.
	for _, name := range []string{"i-1", "i-2"} {
		k := instancesPrefix + "p" + name[2:] + "/" + name
		var rec record
		rev, err := store.GetJSON(ctx, st, k, &rec)
		if err != nil {
			t.Fatal(err)
		}
		if name == "i-1" {
			rec.transition(t0.Add(30*time.Hour), api.StateStopped, "", "test", "")
			_, err = st.Txn(ctx, []store.Cond{store.At(k, rev)}, []store.Op{store.PutJSON(k, rec)})
		} else {
			rec.transition(t0.Add(40*time.Hour), api.StateDone, "", "test", "")
			_, err = st.Txn(ctx, []store.Cond{store.At(k, rev)}, []store.Op{store.Del(k), store.PutJSON(archivePrefix+rec.Project+"/"+rec.Name+"/"+rec.ID, rec)})
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	check("after a stop and an archive")
}

// BenchmarkBudgetRound100k is one round of the budget loop's usage at
// 100,000 sim instances (a quarter DONE): "full" reads and decodes every
// instance and its history and recomputes the month, as CheckBudgets did;
// "running" is the same report from the running totals the feed keeps.
func BenchmarkBudgetRound100k(b *testing.B) {
	t0 := time.Date(2026, 11, 2, 0, 0, 0, 0, time.UTC)
	st := simCloud(b, 100_000, t0)
	svc := &Service{s: st, cache: newCache()}
	rules := metering.NewRules(metering.DefaultComputeStates, metering.DefaultStorageStates)
	now := t0.Add(72 * time.Hour)
	b.Run("full", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			fullReport(b, svc, meterPrices, rules, now.Add(time.Duration(i)*time.Second))
		}
	})
	// The old round without the store's read: decode every record and
	// recompute (a lower bound for any store; memstore's paged listing
	// is quadratic and dominates "full").
	b.Run("full-decode-only", func(b *testing.B) {
		var kvs []store.KV
		for _, prefix := range []string{instancesPrefix, archivePrefix} {
			l, err := store.ListAll(context.Background(), st, prefix)
			if err != nil {
				b.Fatal(err)
			}
			kvs = append(kvs, l...)
		}
		from := time.Date(now.Year(), now.Month(), 1, 0, 0, 0, 0, time.UTC)
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			insts := make([]metering.Instance, 0, len(kvs))
			for _, kv := range kvs {
				if m, ok := decodeMetered(kv); ok {
					insts = append(insts, toMetering(m))
				}
			}
			metering.ReportAll(insts, nil, nil, meterPrices, rules, from, now, now, metering.ByProject)
		}
	})
	b.Run("running", func(b *testing.B) {
		r, cancel := follow(b, svc)
		defer cancel()
		r.Report(nil, nil, meterPrices, rules, now) // the first round counts every closed interval once
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			r.Report(nil, nil, meterPrices, rules, now.Add(time.Duration(i)*time.Second))
		}
	})
}
