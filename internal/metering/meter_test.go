package metering

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/kumocloud/kumo/api"
	"github.com/kumocloud/kumo/internal/events"
	"github.com/kumocloud/kumo/internal/store/memstore"
)

type fakeSources struct {
	insts   []Instance
	budgets []Budget
}

func (f *fakeSources) MeteredInstances(_ context.Context, project string) ([]Instance, error) {
	var out []Instance
	for _, in := range f.insts {
		if project == "" || in.Project == project {
			out = append(out, in)
		}
	}
	return out, nil
}

func (f *fakeSources) MeteredImages(context.Context, string) ([]Image, error) { return nil, nil }

func (f *fakeSources) Budgets(context.Context) ([]Budget, error) { return f.budgets, nil }

// TestMeterLoop: the meter's checks keep one series per project with
// usage this month (a new month drops the old ones) and fire each budget
// threshold once per month.
func TestMeterLoop(t *testing.T) {
	ctx := context.Background()
	st := memstore.New()
	now := t0.Add(10 * time.Hour)
	src := &fakeSources{budgets: []Budget{{Project: "p", Micro: 1_000_000}, {Project: "free"}}}
	// 0.10/h from t0 on: 1.00 of the budget after ten hours.
	in := inst("a", hist(time.Duration(0), "RUNNING"))
	src.insts = []Instance{in}
	if err := EnsureFlavorPrice(ctx, st, "small", 100_000, t0); err != nil {
		t.Fatal(err)
	}
	m := New(st, Config{Currency: "EUR", Clock: func() time.Time { return now }, Every: time.Hour}, src, src, src)
	reg := prometheus.NewRegistry()
	reg.MustRegister(m.Collectors()...)
	fired := func() map[string]int {
		n := map[string]int{}
		err := events.Stream(ctx, st, 0, false, events.Filter{Types: []string{"budget"}}, func(e api.Event) error {
			n[e.Project+" "+e.Action]++
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	for range 2 {
		if err := m.CheckBudgets(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if n := fired(); len(n) != 2 || n["p threshold-80"] != 1 || n["p threshold-100"] != 1 {
		t.Fatalf("budget events: %v", n)
	}
	if got := series(t, reg); len(got) != 3 || got[`kumo_project_cost_month_to_date{currency="EUR",project="p"}`] != 1 || got[`kumo_project_vcpu_hours_month_to_date{project="p"}`] != 20 {
		t.Fatalf("series: %v", got)
	}
	// December: the instance ended in November; its series goes.
	src.insts[0].History = hist(time.Duration(0), "RUNNING", 11*time.Hour, "DONE")
	now = time.Date(2026, 12, 1, 1, 0, 0, 0, time.UTC)
	if err := m.CheckBudgets(ctx); err != nil {
		t.Fatal(err)
	}
	if got := series(t, reg); len(got) != 0 {
		t.Fatalf("series left from last month: %v", got)
	}
}

// series are the values a registry gathers, by name{labels}.
func series(t *testing.T, reg *prometheus.Registry) map[string]float64 {
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			var ls []string
			for _, l := range m.GetLabel() {
				ls = append(ls, l.GetName()+`="`+l.GetValue()+`"`)
			}
			out[mf.GetName()+"{"+strings.Join(ls, ",")+"}"] = m.GetGauge().GetValue()
		}
	}
	return out
}
