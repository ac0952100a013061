package server

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/kumocloud/kumo/api"
	"github.com/kumocloud/kumo/internal/hosts"
	"github.com/kumocloud/kumo/internal/identity"
	"github.com/kumocloud/kumo/internal/store"
	"github.com/kumocloud/kumo/internal/store/etcdstore"
)

type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) Set(t time.Time)     { c.mu.Lock(); c.t = t; c.mu.Unlock() }
func (c *fakeClock) Add(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

var day = time.Date(2026, 11, 2, 0, 0, 0, 0, time.UTC)

// meterCloud is a server on a given store with a controlled clock, a
// 0.10/h flavor "meter" and one agent with one host, driven by hand.
type meterCloud struct {
	t     *testing.T
	s     *Server
	clk   *fakeClock
	agent *hosts.AgentPrincipal
	ts    *testServer
}

func newMeterCloud(t *testing.T, st store.Store, dir string, clk *fakeClock, fresh bool) *meterCloud {
	opts := identity.DefaultOptions()
	opts.BcryptCost = bcrypt.MinCost
	s, err := NewWithStore(context.Background(), Config{DataDir: dir, Identity: opts, Clock: clk.Now, HostGrace: time.Hour}, st)
	if err != nil {
		t.Fatal(err)
	}
	m := &meterCloud{t: t, s: s, clk: clk, ts: &testServer{t: t, s: s, net: s.SocketHandler()}}
	ctx := context.Background()
	if fresh {
		if r := m.ts.do("POST", "/v1/flavors", "", map[string]any{"name": "meter", "vcpus": 2, "memory_mib": 1024, "disk_gib": 10, "price_micro_per_hour": 100000}); r.Status != 201 {
			t.Fatalf("flavor: %d %s", r.Status, r.Body)
		}
		jt, _ := s.hosts.CreateJoinToken(ctx, api.JoinTokensPost{})
		ag, err := s.hosts.Join(ctx, api.AgentsPost{JoinToken: jt.Token, Name: "a", Driver: "sim", Hosts: []api.HostSpec{{Name: "h1", Kinds: []string{"vm"}, Capacity: api.Size{VCPUs: 64, MemoryMiB: 65536, DiskGiB: 1000}}}})
		if err != nil {
			t.Fatal(err)
		}
		m.agent, _ = s.hosts.Authenticate(ctx, ag.Credential)
	}
	return m
}

func (m *meterCloud) instance(name string) api.Instance {
	var in api.Instance
	m.ts.do("GET", "/v1/projects/default/instances/"+name, "", nil).decode(m.t, &in)
	return in
}

// run creates an instance and takes it to RUNNING at the clock's time.
func (m *meterCloud) run(name string) {
	if r := m.ts.do("POST", "/v1/projects/default/instances", "", map[string]any{"name": name, "type": "vm", "flavor": "meter", "image": "x"}); r.Status != 201 {
		m.t.Fatalf("create: %s", r.Body)
	}
	deadline := time.Now().Add(10 * time.Second)
	for m.instance(name).State != api.StateProlog {
		if time.Now().After(deadline) {
			m.t.Fatalf("%s not placed: %+v", name, m.instance(name))
		}
		time.Sleep(5 * time.Millisecond)
	}
	m.report(name, api.StateProlog, api.StateBoot, api.StateRunning)
}

// report moves an instance through states as its agent would.
func (m *meterCloud) report(name string, states ...api.State) {
	in := m.instance(name)
	var reps []api.InstanceReport
	for i := 0; i+1 < len(states); i++ {
		reps = append(reps, api.InstanceReport{ID: in.ID, Host: "h1", From: states[i], To: states[i+1]})
	}
	// The cache must know the instance's current state first.
	deadline := time.Now().Add(10 * time.Second)
	for {
		res, err := m.s.compute.Report(context.Background(), m.agent, reps)
		if err != nil {
			panic(err)
		}
		if res.Applied == 1 {
			return
		}
		if time.Now().After(deadline) {
			m.t.Fatalf("report %v for %s: %+v (instance %s)", states, name, res, m.instance(name).State)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (m *meterCloud) action(name, action string) {
	if r := m.ts.do("POST", "/v1/projects/default/instances/"+name+"/actions", "", map[string]any{"action": action}); r.Status != 200 {
		m.t.Fatalf("%s %s: %s", action, name, r.Body)
	}
}

func (m *meterCloud) usage(query string) api.UsageReport {
	var rep api.UsageReport
	r := m.ts.do("GET", "/v1/projects/default/usage?"+query, "", nil)
	if r.Status != 200 {
		m.t.Fatalf("usage: %d %s", r.Status, r.Body)
	}
	r.decode(m.t, &rep)
	return rep
}

func TestMeteringExact(t *testing.T) {
	clk := &fakeClock{t: day.Add(10 * time.Hour)}
	m := newMeterCloud(t, memStore(), t.TempDir(), clk, true)
	defer m.s.Close()

	// 90 minutes RUNNING on a 0.10/h flavor costs exactly 0.15.
	m.run("a")
	clk.Add(90 * time.Minute)
	m.action("a", "terminate")
	m.report("a", api.StateShutdown, api.StateEpilog, api.StateDone)
	clk.Add(time.Hour)
	rep := m.usage("from=2026-11-02&to=2026-11-02T12:30:00Z")
	if rep.Total.Cost != "0.150000" || rep.Total.InstanceSeconds != 5400 || rep.Currency != "EUR" {
		t.Fatalf("90 minutes at 0.10/h: %+v", rep.Total)
	}

	// A price change at 12:00 splits the charge at 12:00 exactly.
	clk.Set(day.Add(11 * time.Hour))
	m.run("b")
	if r := m.ts.do("PUT", "/v1/flavors/meter/price", "", map[string]any{"micro_per_hour": 200000, "effective_at": day.Add(12 * time.Hour)}); r.Status != 200 {
		t.Fatalf("price change: %s", r.Body)
	}
	clk.Set(day.Add(13 * time.Hour))
	m.action("b", "suspend")
	m.report("b", api.StateSave, api.StateSuspended) // SUSPENDED bills compute
	clk.Add(time.Hour)
	m.action("b", "stop")
	m.report("b", api.StateSave, api.StateEpilog, api.StateStopped) // STOPPED bills storage
	clk.Add(time.Hour)
	rep = m.usage("from=2026-11-02T11:00:00Z&to=2026-11-02T15:00:00Z&group_by=instance")
	var b api.UsageLine
	for _, g := range rep.Groups {
		if g.Key == "b" {
			b = g
		}
	}
	// 11-12 at 0.10, 12-14 at 0.20 (RUNNING then SUSPENDED), 14-15 STOPPED at no storage price.
	if b.CostMicro != 100000+2*200000 || len(b.Charges) != 3 || b.Charges[2].What != "storage" || b.Charges[2].CostMicro != 0 || !b.Charges[1].Effective.Equal(day.Add(12*time.Hour)) {
		t.Fatalf("b: %+v", b)
	}
	if b.StorageGiBHours != 40 {
		t.Fatalf("b storage GiB-hours %v, want 40 (10 GiB x 4 h)", b.StorageGiBHours)
	}

	// Bad ranges: 400 naming the parameter.
	for q, field := range map[string]string{
		"to=2026-11-02":                            "from",
		"from=2026-11-02":                          "to",
		"from=2026-11-03&to=2026-11-02":            "to",
		"from=2027-01-01&to=2027-02-01":            "from",
		"from=2026-11-01&to=2030-01-01":            "to",
		"from=yesterday&to=2026-11-02":             "from",
		"from=2026-11-01&to=2026-11-02&group_by=x": "group_by",
	} {
		r := m.ts.do("GET", "/v1/projects/default/usage?"+q, "", nil)
		if e := r.errBody(t); r.Status != 400 || e.Field != field {
			t.Errorf("usage?%s: %d %+v, want 400 on %s", q, r.Status, e, field)
		}
	}
}

func TestBudgetEventsOncePerPeriod(t *testing.T) {
	clk := &fakeClock{t: day.Add(10 * time.Hour)}
	m := newMeterCloud(t, memStore(), t.TempDir(), clk, true)
	defer m.s.Close()
	if r := m.ts.do("PATCH", "/v1/projects/default", "", map[string]any{"budget_micro": 1_000_000, "currency": "USD"}); r.Status != 400 {
		t.Fatalf("a budget in another currency: %d", r.Status)
	}
	if r := m.ts.do("PATCH", "/v1/projects/default", "", map[string]any{"budget_micro": 1_000_000, "currency": "EUR"}); r.Status != 200 {
		t.Fatalf("budget: %s", r.Body)
	}
	m.run("a")
	count := func() map[string]int {
		n := map[string]int{}
		for _, ev := range parseSSE(t, m.ts.do("GET", "/v1/events?follow=false&type=budget", "", nil).Body) {
			n[ev.Action]++
		}
		return n
	}
	ctx := context.Background()
	clk.Add(7 * time.Hour) // 0.70: nothing yet
	m.s.meter.CheckBudgets(ctx)
	if n := count(); len(n) != 0 {
		t.Fatalf("events below 80 %%: %v", n)
	}
	// The loop's running totals follow the instances through a watch: a
	// change lands in the round after the watch delivers it, so rounds
	// repeat until the event is there (an event fires once per period
	// however many rounds see the threshold).
	checkUntil := func(what string, ok func(map[string]int) bool) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for {
			m.s.meter.CheckBudgets(ctx)
			m.s.meter.CheckBudgets(ctx)
			n := count()
			if ok(n) {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: %v", what, n)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	clk.Add(90 * time.Minute) // 0.85
	checkUntil("at 85 %", func(n map[string]int) bool { return n["threshold-80"] == 1 && n["threshold-100"] == 0 })
	clk.Add(2 * time.Hour) // 1.05
	checkUntil("at 105 %", func(n map[string]int) bool { return n["threshold-80"] == 1 && n["threshold-100"] == 1 })
	var p api.Project
	m.ts.do("GET", "/v1/projects/default", "", nil).decode(t, &p)
	if p.MonthToDateMicro != 1_050_000 || p.BudgetMicro != 1_000_000 || p.Currency != "EUR" {
		t.Fatalf("project show: %+v", p)
	}
	metrics := string(m.ts.do("GET", "/metrics", "", nil).Body)
	if !strings.Contains(metrics, `kumo_project_cost_month_to_date{currency="EUR",project="default"} 1.05`) {
		t.Errorf("metrics lack the project's cost:\n%s", grep(metrics, "kumo_project"))
	}
}

// TestMeteringAcrossRestart: the server stops while an instance runs and
// comes back an hour later; the report equals an uninterrupted run's.
func TestMeteringAcrossRestart(t *testing.T) {
	dir := t.TempDir()
	st, err := etcdstore.OpenEmbedded(context.Background(), etcdstore.EmbedOptions{Dir: dir + "/etcd", NoFsync: true})
	if err != nil {
		t.Fatal(err)
	}
	clk := &fakeClock{t: day.Add(9 * time.Hour)}
	m := newMeterCloud(t, st, dir, clk, true)
	m.run("a")
	clk.Add(30 * time.Minute)
	m.s.Close() // the store goes with it

	clk.Add(time.Hour) // down for an hour; the instance kept running on its host
	st, err = etcdstore.OpenEmbedded(context.Background(), etcdstore.EmbedOptions{Dir: dir + "/etcd", NoFsync: true})
	if err != nil {
		t.Fatal(err)
	}
	m = newMeterCloud(t, st, dir, clk, false)
	defer m.s.Close()
	clk.Add(30 * time.Minute)
	rep := m.usage(fmt.Sprintf("from=2026-11-02&to=%s", clk.Now().Format(time.RFC3339)))
	if rep.Total.InstanceSeconds != 2*3600 || rep.Total.Cost != "0.200000" {
		t.Fatalf("after a restart: %+v, want 2 h and 0.20", rep.Total)
	}
}

func grep(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
