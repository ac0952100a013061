package metering

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/kumocloud/kumo/api"
	"github.com/kumocloud/kumo/internal/events"
	"github.com/kumocloud/kumo/internal/store"
	"github.com/kumocloud/kumo/internal/store/memstore"
)

// budgetWorld runs the same cloud through two meters: "full" reads every
// instance each round (the rounds as they were before running totals,
// and the reference), "running" follows a feed of the same changes.
type budgetWorld struct {
	t                *testing.T
	now              time.Time
	src              *fakeSources
	fullSt, runSt    store.Store
	full, run        *Meter
	fullReg, runReg  *prometheus.Registry
	archived         map[string]bool
	restarts, rounds int
}

func newBudgetWorld(t *testing.T, budgets []Budget, start []Instance) *budgetWorld {
	w := &budgetWorld{t: t, now: t0, src: &fakeSources{budgets: budgets}, fullSt: memstore.New(), runSt: memstore.New(), archived: map[string]bool{}}
	for _, st := range []store.Store{w.fullSt, w.runSt} {
		for f, micro := range map[string]int64{"small": 100_000, "big": 500_000} {
			if err := EnsureFlavorPrice(context.Background(), st, f, micro, t0); err != nil {
				t.Fatal(err)
			}
		}
	}
	w.src.insts = slices.Clone(start)
	w.full, w.fullReg = w.meter(w.fullSt)
	w.restart()
	return w
}

func (w *budgetWorld) meter(st store.Store) (*Meter, *prometheus.Registry) {
	m := New(st, Config{Currency: "EUR", Clock: func() time.Time { return w.now }, Every: time.Hour}, w.src, w.src, w.src)
	reg := prometheus.NewRegistry()
	reg.MustRegister(m.Collectors()...)
	return m, reg
}

// restart makes a new running meter on the same store, its totals
// listed afresh (as a restarted server's feed lists them).
func (w *budgetWorld) restart() {
	w.run, w.runReg = w.meter(w.runSt)
	w.run.Follow(nil)
	live, arch := map[string]Instance{}, map[string]Instance{}
	for _, in := range w.src.insts {
		if w.archived[in.ID] {
			arch["/a/"+in.ID] = in
		} else {
			live["/i/"+in.ID] = in
		}
	}
	w.run.running.Replace(SourceLive, live)
	w.run.running.Replace(SourceArchive, arch)
	w.restarts++
}

// put changes (or adds) an instance; done moves it to the archive.
func (w *budgetWorld) put(in Instance, done bool) {
	i := slices.IndexFunc(w.src.insts, func(x Instance) bool { return x.ID == in.ID })
	if i < 0 {
		w.src.insts = append(w.src.insts, in)
	} else {
		w.src.insts[i] = in
	}
	if done {
		w.archived[in.ID] = true
		w.run.running.Put(SourceArchive, "/a/"+in.ID, in)
		w.run.running.Delete(SourceLive, "/i/"+in.ID)
		return
	}
	w.run.running.Put(SourceLive, "/i/"+in.ID, in)
}

// then appends a state to an instance's history at t0+at.
func (w *budgetWorld) then(id string, at time.Duration, to api.State) {
	i := slices.IndexFunc(w.src.insts, func(x Instance) bool { return x.ID == id })
	in := w.src.insts[i]
	last := in.History[len(in.History)-1]
	in.History = append(slices.Clone(in.History), api.HistoryRecord{Seq: last.Seq + 1, Time: t0.Add(at), From: last.To, To: to})
	w.put(in, to == api.StateDone)
}

// round runs one budget round in both meters at t0+at and says what
// fired (budget events by project and action) and each project's cost.
func (w *budgetWorld) round(at time.Duration) (map[string]int, map[string]float64) {
	w.t.Helper()
	w.now = t0.Add(at)
	w.rounds++
	var fired [2]map[string]int
	var cost [2]map[string]float64
	for i, m := range []*Meter{w.full, w.run} {
		if err := m.CheckBudgets(context.Background()); err != nil {
			w.t.Fatal(err)
		}
		st, reg := []store.Store{w.fullSt, w.runSt}[i], []*prometheus.Registry{w.fullReg, w.runReg}[i]
		fired[i] = map[string]int{}
		err := events.Stream(context.Background(), st, 0, false, events.Filter{Types: []string{"budget"}}, func(e api.Event) error {
			fired[i][e.Project+" "+e.Action]++
			return nil
		})
		if err != nil {
			w.t.Fatal(err)
		}
		cost[i] = series(w.t, reg)
	}
	if !maps.Equal(fired[0], fired[1]) || !maps.Equal(cost[0], cost[1]) {
		w.t.Fatalf("round %d at t0+%s: full fired %v, series %v\nrunning fired %v, series %v", w.rounds, at, fired[0], cost[0], fired[1], cost[1])
	}
	return fired[1], cost[1]
}

// TestBudgetRoundSameAsFull: rounds of the budget loop from running
// totals give what rounds reading every instance give - each project's
// month-to-date series (cost, vCPU-hours, instance-hours) and the budget
// events fired, once each - through state and size changes between
// rounds, archives, a price coming into force, a month turning, a
// restart rebuilt from a listing and a clock stepping back.
func TestBudgetRoundSameAsFull(t *testing.T) {
	run := func(name string) Instance { return inst(name, hist(time.Duration(0), "RUNNING")) }
	cases := []struct {
		name    string
		budgets []Budget
		start   []Instance
		script  func(w *budgetWorld)
		want    map[string]int // fired at the end
	}{
		{"running crosses 80 then 100", []Budget{{"p", 1_000_000}}, []Instance{run("a")}, func(w *budgetWorld) {
			w.round(7 * time.Hour)
			if f, _ := w.round(8*time.Hour + 30*time.Minute); f["p threshold-80"] != 1 || f["p threshold-100"] != 0 {
				t.Fatalf("at 85%%: %v", f)
			}
			w.round(10*time.Hour + 30*time.Minute)
			w.round(11 * time.Hour)
		}, map[string]int{"p threshold-80": 1, "p threshold-100": 1}},
		{"stopped between rounds bills storage", []Budget{{"p", 700_000}}, []Instance{run("a")}, func(w *budgetWorld) {
			w.round(5 * time.Hour)
			w.then("a", 6*time.Hour, api.StateStopped)
			w.round(9 * time.Hour)
			w.round(30 * time.Hour)
		}, map[string]int{"p threshold-80": 1}},
		{"resized to a dearer flavor", []Budget{{"p", 1_000_000}}, []Instance{run("a")}, func(w *budgetWorld) {
			w.round(time.Hour)
			in := w.src.insts[0]
			in.Flavor, in.Size = "big", api.Size{VCPUs: 8, MemoryMiB: 8192, DiskGiB: 40}
			w.put(in, false)
			w.round(90 * time.Minute)
			w.round(2*time.Hour + 10*time.Minute)
		}, map[string]int{"p threshold-80": 1, "p threshold-100": 1}},
		{"archived when done", []Budget{{"p", 1_000_000}}, []Instance{run("a"), run("b")}, func(w *budgetWorld) {
			w.round(3 * time.Hour)
			w.then("a", 4*time.Hour, api.StateDone)
			w.round(5 * time.Hour)
			w.round(5*time.Hour + 30*time.Minute)
		}, map[string]int{"p threshold-80": 1}},
		{"a price comes into force between rounds", []Budget{{"p", 1_000_000}}, []Instance{run("a")}, func(w *budgetWorld) {
			for _, st := range []store.Store{w.fullSt, w.runSt} {
				if err := SetFlavorPrice(context.Background(), st, "small", api.PricePut{Micro: 200_000, EffectiveAt: t0.Add(5 * time.Hour)}, t0); err != nil {
					t.Fatal(err)
				}
			}
			w.round(4 * time.Hour)
			w.round(6 * time.Hour)
			w.round(7 * time.Hour) // 0.50 + 0.40
		}, map[string]int{"p threshold-80": 1}},
		{"the month turns", []Budget{{"p", 50_000_000}}, []Instance{run("a")}, func(w *budgetWorld) {
			w.round(27 * 24 * time.Hour)
			w.round(29*24*time.Hour - 8*time.Hour) // December 1st, 02:00
			w.round(50 * 24 * time.Hour)
		}, map[string]int{"p threshold-80": 2, "p threshold-100": 2}},
		{"a restart lists afresh and repeats nothing", []Budget{{"p", 1_000_000}}, []Instance{run("a")}, func(w *budgetWorld) {
			w.round(9 * time.Hour)
			w.restart()
			w.round(9*time.Hour + time.Minute)
			w.then("a", 9*time.Hour+2*time.Minute, api.StateSuspended)
			w.restart()
			w.round(11 * time.Hour)
		}, map[string]int{"p threshold-80": 1, "p threshold-100": 1}},
		{"a stopped instance migrating bills storage", []Budget{{"p", 100_000}}, []Instance{inst("a", hist(time.Duration(0), "RUNNING", time.Hour, "STOPPED", 2*time.Hour, "MIGRATE"))}, func(w *budgetWorld) {
			w.round(3 * time.Hour)
			w.then("a", 4*time.Hour, api.StateStopped)
			w.round(5 * time.Hour)
		}, map[string]int{"p threshold-100": 1, "p threshold-80": 1}},
		{"the clock steps back", []Budget{{"p", 1_000_000}}, []Instance{run("a")}, func(w *budgetWorld) {
			w.round(7 * time.Hour)
			w.round(6 * time.Hour)
			w.then("a", 6*time.Hour+30*time.Minute, api.StateStopped) // written by a clock ahead
			w.round(6 * time.Hour)
			w.round(9 * time.Hour)
		}, map[string]int{}},
		{"projects apart", []Budget{{"p", 800_000}, {"q", 300_000}, {"r", 0}}, nil, func(w *budgetWorld) {
			for i := range 5 {
				in := run(fmt.Sprint("i", i))
				in.Project = []string{"p", "q", "r"}[i%3]
				w.put(in, false)
			}
			w.round(2 * time.Hour)
			w.round(3*time.Hour + 30*time.Minute)
		}, map[string]int{"p threshold-80": 1, "q threshold-80": 1, "q threshold-100": 1}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			w := newBudgetWorld(t, c.budgets, c.start)
			c.script(w)
			if f, _ := w.round(w.now.Sub(t0)); !maps.Equal(f, c.want) {
				t.Fatalf("fired %v, want %v", f, c.want)
			}
		})
	}
}
