package scheduler

import (
	"errors"
	"fmt"
	"math/rand"
	"strings"
	"testing"
)

func host(name string, mods ...func(*Host)) Host {
	h := Host{Name: name, Enabled: true, Online: true, Kinds: []string{"vm", "container"},
		CPUs: 4, MemoryMiB: 8192, DiskGiB: 100, CPURatio: 1, MemRatio: 1, DiskRatio: 1,
		Attrs: map[string]string{"ARCH": "x86_64"}}
	for _, m := range mods {
		m(&h)
	}
	return h
}

func req(id string, mods ...func(*Request)) Request {
	r := Request{ID: id, Kind: "container", Size: Resources{VCPUs: 1, MemoryMiB: 1024, DiskGiB: 10}}
	for _, m := range mods {
		m(&r)
	}
	return r
}

func must(t *testing.T, src string) *Expr {
	t.Helper()
	e, err := Parse(src)
	if err != nil {
		t.Fatalf("Parse(%q): %v", src, err)
	}
	return e
}

func placed(p Plan) map[string]string {
	m := map[string]string{}
	for _, pl := range p.Placements {
		m[pl.RequestID] = pl.Host
	}
	return m
}

func TestFilters(t *testing.T) {
	tests := []struct {
		name   string
		host   Host
		req    Request
		reason string // "" = fits
	}{
		{"fits", host("h"), req("r"), ""},
		{"offline", host("h", func(h *Host) { h.Online = false }), req("r"), "offline"},
		{"disabled", host("h", func(h *Host) { h.Enabled = false }), req("r"), "disabled"},
		{"draining", host("h", func(h *Host) { h.Draining = true }), req("r"), "draining"},
		{"its home", host("h"), req("r", func(r *Request) { r.Home = "h" }), ""},
		{"not its home", host("h"), req("r", func(r *Request) { r.Home = "other" }), "not its home: its saved state and disks are on other"},
		{"driver kind", host("h", func(h *Host) { h.Kinds = []string{"vm"} }), req("r"), "no container driver"},
		{"cpu", host("h"), req("r", func(r *Request) { r.Size.VCPUs = 5 }), "insufficient vcpus (need 5)"},
		{"cpu with ratio", host("h", func(h *Host) { h.CPURatio = 16 }), req("r", func(r *Request) { r.Size.VCPUs = 64 }), ""},
		{"memory", host("h"), req("r", func(r *Request) { r.Size.MemoryMiB = 8193 }), "insufficient memory (need 8193 MiB)"},
		{"memory with ratio", host("h", func(h *Host) { h.MemRatio = 1.5 }), req("r", func(r *Request) { r.Size.MemoryMiB = 12288 }), ""},
		{"memory used", host("h", func(h *Host) { h.Used.MemoryMiB = 8000 }), req("r"), "insufficient memory (need 1024 MiB)"},
		{"disk", host("h"), req("r", func(r *Request) { r.Size.DiskGiB = 101 }), "insufficient disk (need 101 GiB)"},
		{"requirement met", host("h", func(h *Host) { h.Attrs["RACK"] = "r1" }), req("r", func(r *Request) { r.Requirements = must(t, `RACK = "r1" & FREE_MEM > 2048`) }), ""},
		{"requirement not met", host("h", func(h *Host) { h.Attrs["RACK"] = "r2" }), req("r", func(r *Request) { r.Requirements = must(t, `RACK = "r1"`) }), "requirements not met"},
		{"requirement on missing attr", host("h"), req("r", func(r *Request) { r.Requirements = must(t, `RACK = "r1"`) }), "requirements not met (RACK undefined)"},
		{"glob", host("h", func(h *Host) { h.Name = "edge-07" }), req("r", func(r *Request) { r.Requirements = must(t, `NAME = "edge-*"`) }), ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := filter(&tc.host, &tc.req, nil)
			if got != tc.reason {
				t.Fatalf("filter = %q, want %q", got, tc.reason)
			}
		})
	}
}

func TestGroups(t *testing.T) {
	hosts := []Host{host("a"), host("b"), host("c")}
	grp := func(policy string, hard bool) func(*Request) {
		return func(r *Request) { r.Group, r.GroupPolicy, r.GroupHard = "db", policy, hard }
	}
	// Hard anti-affinity: three members on three hosts, the fourth fails.
	var reqs []Request
	for i := 0; i < 4; i++ {
		reqs = append(reqs, req(fmt.Sprint(i), grp(AntiAffinity, true)))
	}
	p := Schedule(Snapshot{Hosts: hosts}, reqs, Packing)
	m := placed(p)
	if len(m) != 3 || m["0"] == m["1"] || m["1"] == m["2"] || m["0"] == m["2"] {
		t.Fatalf("hard anti-affinity: %v", m)
	}
	if len(p.Failures) != 1 || !strings.Contains(p.Failures[0].Reason, "0/3 hosts: 3 anti-affinity: group db already there") {
		t.Fatalf("failure: %+v", p.Failures)
	}
	// Soft anti-affinity packs a fourth member anyway.
	reqs = reqs[:0]
	for i := 0; i < 4; i++ {
		reqs = append(reqs, req(fmt.Sprint(i), grp(AntiAffinity, false)))
	}
	if p := Schedule(Snapshot{Hosts: hosts}, reqs, Packing); len(p.Placements) != 4 {
		t.Fatalf("soft anti-affinity: %+v", p)
	}
	// Hard affinity follows the first member.
	snap := Snapshot{Hosts: hosts, GroupHosts: map[string]map[string]int{"db": {"b": 1}}}
	p = Schedule(snap, []Request{req("x", grp(Affinity, true)), req("y", grp(Affinity, true))}, Striping)
	if m := placed(p); m["x"] != "b" || m["y"] != "b" {
		t.Fatalf("hard affinity: %v", m)
	}
}

func TestPolicies(t *testing.T) {
	hosts := []Host{host("a"), host("b"), host("c")}
	var reqs []Request
	for i := 0; i < 3; i++ {
		reqs = append(reqs, req(fmt.Sprint(i)))
	}
	// Packing fills one host first.
	if m := placed(Schedule(Snapshot{Hosts: hosts}, reqs, Packing)); m["0"] != "a" || m["1"] != "a" || m["2"] != "a" {
		t.Fatalf("packing: %v", m)
	}
	// Striping spreads.
	if m := placed(Schedule(Snapshot{Hosts: hosts}, reqs, Striping)); m["0"] == m["1"] || m["1"] == m["2"] || m["0"] == m["2"] {
		t.Fatalf("striping: %v", m)
	}
	// Load-aware goes where most CPU is free.

	busy := []Host{host("a", func(h *Host) { h.Used.VCPUs = 3 }), host("b", func(h *Host) { h.Used.VCPUs = 1 }), host("c", func(h *Host) { h.Used.VCPUs = 2 })}
	if m := placed(Schedule(Snapshot{Hosts: busy}, reqs[:1], LoadAware)); m["0"] != "b" {
		t.Fatalf("load-aware: %v", m)
	}
	// A RANK expression beats the policy.
	ranked := []Host{host("a", func(h *Host) { h.Attrs["PRIO"] = "1" }), host("b", func(h *Host) { h.Attrs["PRIO"] = "9" }), host("c")}
	r := req("r", func(r *Request) { r.Rank = must(t, "PRIO * 2") })
	if m := placed(Schedule(Snapshot{Hosts: ranked}, []Request{r}, Packing)); m["r"] != "b" {
		t.Fatalf("rank: %v", m)
	}
	// Ties go to the first name, whatever the input order.
	tied := []Host{host("z"), host("m"), host("b")}
	if m := placed(Schedule(Snapshot{Hosts: tied}, reqs[:1], LoadAware)); m["0"] != "b" {
		t.Fatalf("tie-break: %v", m)
	}
}

func TestSummary(t *testing.T) {
	var hosts []Host
	for i := 0; i < 2000; i++ {
		h := host(fmt.Sprintf("h-%04d", i))
		if i < 500 {
			h.Enabled = false
		} else {
			h.MemoryMiB = 1024
		}
		hosts = append(hosts, h)
	}
	p := Schedule(Snapshot{Hosts: hosts}, []Request{req("big", func(r *Request) { r.Size.MemoryMiB = 2048 })}, Packing)
	want := "0/2000 hosts: 1500 insufficient memory (need 2048 MiB), 500 disabled"
	if len(p.Failures) != 1 || p.Failures[0].Reason != want {
		t.Fatalf("failure = %+v, want %q", p.Failures, want)
	}
}

func TestExplain(t *testing.T) {
	hosts := []Host{host("a", func(h *Host) { h.Enabled = false }), host("b", func(h *Host) { h.Used.VCPUs = 2 }), host("c")}
	res := Explain(Snapshot{Hosts: hosts}, req("r"), LoadAware)
	if len(res) != 3 || res[0].Host != "c" || !res[0].Feasible || res[1].Host != "b" || res[2].Reason != "disabled" {
		t.Fatalf("explain: %+v", res)
	}
}

// TestPlanInvariants: after any plan, no host exceeds capacity x ratio and
// hard anti-affinity holds.
func TestPlanInvariants(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	for round := 0; round < 200; round++ {
		var hosts []Host
		for i := 0; i < 1+rng.Intn(30); i++ {
			hosts = append(hosts, host(fmt.Sprintf("h%02d", i), func(h *Host) {
				h.CPUs, h.MemoryMiB, h.DiskGiB = int64(1+rng.Intn(8)), int64(512*(1+rng.Intn(16))), int64(10*(1+rng.Intn(20)))
				h.CPURatio, h.MemRatio = []float64{1, 2, 16}[rng.Intn(3)], []float64{1, 1.5}[rng.Intn(2)]
				h.Used.VCPUs = int64(rng.Intn(4))
				h.Enabled = rng.Intn(10) > 0
				h.Attrs["RACK"] = fmt.Sprint("r", rng.Intn(3))
			}))
		}
		var reqs []Request
		for i := 0; i < rng.Intn(80); i++ {
			reqs = append(reqs, req(fmt.Sprint(i), func(r *Request) {
				r.Size = Resources{VCPUs: int64(1 + rng.Intn(4)), MemoryMiB: int64(256 * (1 + rng.Intn(8))), DiskGiB: int64(rng.Intn(30))}
				if rng.Intn(3) == 0 {
					r.Group, r.GroupPolicy, r.GroupHard = fmt.Sprint("g", rng.Intn(3)), AntiAffinity, true
				}
				if rng.Intn(4) == 0 {
					r.Requirements = must(t, `RACK != "r0"`)
				}
			}))
		}
		policy := Policies[rng.Intn(len(Policies))]
		p := Schedule(Snapshot{Hosts: hosts}, reqs, policy)
		if len(p.Placements)+len(p.Failures) != len(reqs) {
			t.Fatalf("round %d: %d placed + %d failed != %d", round, len(p.Placements), len(p.Failures), len(reqs))
		}
		byID := map[string]Request{}
		for _, r := range reqs {
			byID[r.ID] = r
		}
		used := map[string]Resources{}
		group := map[string]bool{}
		for _, h := range hosts {
			used[h.Name] = h.Used
		}
		for _, pl := range p.Placements {
			r := byID[pl.RequestID]
			u := used[pl.Host]
			u.VCPUs += r.Size.VCPUs
			u.MemoryMiB += r.Size.MemoryMiB
			u.DiskGiB += r.Size.DiskGiB
			used[pl.Host] = u
			if r.GroupHard {
				k := r.Group + "@" + pl.Host
				if group[k] {
					t.Fatalf("round %d: two members of %s on %s", round, r.Group, pl.Host)
				}
				group[k] = true
			}
		}
		for _, h := range hosts {
			u := used[h.Name]
			if u.VCPUs > capOf(h.CPUs, h.CPURatio) && u.VCPUs > h.Used.VCPUs || u.MemoryMiB > capOf(h.MemoryMiB, h.MemRatio) || u.DiskGiB > capOf(h.DiskGiB, h.DiskRatio) {
				t.Fatalf("round %d: host %s over capacity: %+v", round, h.Name, u)
			}
		}
	}
}

func TestParseErrorsPointAtColumn(t *testing.T) {
	tests := []struct {
		src string
		col int
	}{
		{`RACK = "r1`, 8},
		{`FREE_MEM > `, 12},
		{`(ARCH = "x86_64"`, 17},
		{`ARCH $ 3`, 6},
		{`A = 1 B`, 7},
		{``, 1},
	}
	for _, tc := range tests {
		_, err := Parse(tc.src)
		var se *SyntaxError
		if !errors.As(err, &se) || se.Column != tc.col {
			t.Errorf("Parse(%q) = %v, want an error at column %d", tc.src, err, tc.col)
		}
	}
}

func TestExprValues(t *testing.T) {
	h := host("edge-1", func(h *Host) { h.Attrs["RACK"] = "r1"; h.Attrs["GPUS"] = "2"; h.Used.MemoryMiB = 1024 })
	tests := map[string]bool{
		`FREE_MEM = 7168`:                   true,
		`FREE_MEM > 2048 & ARCH = "x86_64"`: true,
		`rack = "r1" && gpus >= 2`:          true,
		`RACK = "r2" | GPUS * 2 = 4`:        true,
		`!(RACK = "r1")`:                    false,
		`NAME = "edge-*"`:                   true,
		`MISSING = 1`:                       false,
		`MISSING != 1`:                      true,
		`(CPUS - USED_CPU) / 2 = 2`:         true,
		`-GPUS < 0`:                         true,
		`RUNNING_VMS = 0`:                   true,
	}
	for src, want := range tests {
		if got, _ := must(t, src).Match(hostVars{&h}); got != want {
			t.Errorf("%s = %v, want %v", src, got, want)
		}
	}
	if n := must(t, "FREE_CPU * 10 + GPUS").Number(hostVars{&h}); n != 42 {
		t.Errorf("rank = %v, want 42", n)
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{`RACK = "r1" & FREE_MEM > 2048`, `!(A|B)&&C>=-1.5`, `NAME = "x*"`, `((((1))))`, `"unterminated`, `1 +`, `a.b-c = 2`} {
		f.Add(s)
	}
	h := host("h", func(h *Host) { h.Attrs["A"] = "1" })
	f.Fuzz(func(t *testing.T, src string) {
		e, err := Parse(src)
		if err != nil {
			var se *SyntaxError
			if !errors.As(err, &se) || se.Column < 1 || se.Column > len(src)+1 {
				t.Fatalf("Parse(%q): error %v without a column in range", src, err)
			}
			return
		}
		e.Match(hostVars{&h})
		e.Number(hostVars{&h})
	})
}

// BenchmarkSchedule10kx10k plans 10,000 pending instances, with
// requirements and hard anti-affinity, onto 10,000 hosts.
func BenchmarkSchedule10kx10k(b *testing.B) {
	var hosts []Host
	for i := 0; i < 10000; i++ {
		hosts = append(hosts, host(fmt.Sprintf("h-%05d", i), func(h *Host) {
			h.CPUs, h.MemoryMiB, h.CPURatio, h.MemRatio = 32, 131072, 16, 1.5
			h.Attrs["RACK"] = fmt.Sprint("r", i%10)
		}))
	}
	reqEx, _ := Parse(`RACK != "r0" & FREE_MEM > 2048`)
	var reqs []Request
	for i := 0; i < 10000; i++ {
		reqs = append(reqs, req(fmt.Sprint(i), func(r *Request) {
			r.Requirements = reqEx
			r.Group, r.GroupPolicy, r.GroupHard = fmt.Sprint("g", i%100), AntiAffinity, true
		}))
	}
	b.ResetTimer()
	placedN := 0
	for i := 0; i < b.N; i++ {
		p := Schedule(Snapshot{Hosts: hosts}, reqs, Striping)
		placedN += len(p.Placements)
	}
	b.ReportMetric(float64(placedN)/b.Elapsed().Seconds(), "placements/s")
}

// TestStripingSpreads: 10,000 instances placed on 1,000 hosts in rounds
// of 100 (as the scheduler loop does) end within a few instances of an
// even spread, with every host used.
func TestStripingSpreads(t *testing.T) {
	for _, policy := range []string{Striping, LoadAware} {
		hosts := make([]Host, 1000)
		byName := map[string]*Host{}
		for i := range hosts {
			hosts[i] = host(fmt.Sprintf("h%04d", i), func(h *Host) { h.CPUs, h.MemoryMiB, h.DiskGiB = 64, 1<<20, 10000 })
			byName[hosts[i].Name] = &hosts[i]
		}
		for round := 0; round < 100; round++ {
			var reqs []Request
			for i := 0; i < 100; i++ {
				reqs = append(reqs, req(fmt.Sprintf("r%d-%d", round, i), func(r *Request) { r.Size = Resources{VCPUs: 1, MemoryMiB: 512, DiskGiB: 1} }))
			}
			plan := Schedule(Snapshot{Hosts: hosts}, reqs, policy)
			if len(plan.Failures) > 0 {
				t.Fatalf("%s: %v", policy, plan.Failures[0])
			}
			for _, p := range plan.Placements {
				h := byName[p.Host]
				h.Instances++
				h.Used.VCPUs++
				h.Used.MemoryMiB += 512
				h.Used.DiskGiB++
			}
		}
		lo, hi := 1<<30, 0
		for _, h := range hosts {
			lo, hi = min(lo, h.Instances), max(hi, h.Instances)
		}
		t.Logf("%s: 10,000 instances on 1,000 hosts: %d to %d per host", policy, lo, hi)
		if lo == 0 || hi-lo > 4 {
			t.Errorf("%s spreads 10,000 instances over 1,000 hosts as %d to %d per host; want within 4 of each other, none empty", policy, lo, hi)
		}
	}
}
