package scheduler

import (
	"fmt"
	"math/rand"
	"strings"
	"testing"
)

// consolidationWorld is 20 hosts (two offering containers only, one
// labelled gpu) with instances scattered thinly over them: some in
// anti-affinity groups (hard and soft), some requiring the gpu host, one
// not movable.
func consolidationWorld(seed int64) (Snapshot, []Placed) {
	rng := rand.New(rand.NewSource(seed))
	snap := Snapshot{GroupHosts: map[string]map[string]int{}}
	for i := 0; i < 20; i++ {
		h := Host{Name: fmt.Sprintf("sim-%04d", i), Enabled: true, Online: true, Kinds: []string{"vm", "container"},
			CPUs: 8, MemoryMiB: 16384, DiskGiB: 200, CPURatio: 2, MemRatio: 1.5, DiskRatio: 1, Attrs: map[string]string{}}
		if i < 2 {
			h.Kinds = []string{"container"}
		}
		if i == 7 {
			h.Attrs["GPU"] = "yes"
		}
		snap.Hosts = append(snap.Hosts, h)
	}
	gpu, _ := Parse(`GPU = "yes"`)
	var placed []Placed
	add := func(p Placed) {
		for i := range snap.Hosts {
			h := &snap.Hosts[i]
			if h.Name != p.Host {
				continue
			}
			if filter(h, &p.Request, snap.GroupHosts) != "" {
				return // the world is valid to start with
			}
			h.Used.VCPUs += p.Size.VCPUs
			h.Used.MemoryMiB += p.Size.MemoryMiB
			h.Used.DiskGiB += p.Size.DiskGiB
			h.Instances++
			if p.Group != "" {
				if snap.GroupHosts[p.Group] == nil {
					snap.GroupHosts[p.Group] = map[string]int{}
				}
				snap.GroupHosts[p.Group][h.Name]++
			}
			placed = append(placed, p)
		}
	}
	sizes := []Resources{{1, 512, 10}, {2, 2048, 20}, {4, 4096, 40}, {1, 1024, 10}}
	for i := 0; i < 60; i++ {
		p := Placed{Request: Request{ID: fmt.Sprintf("i%03d", i), Kind: "vm", Size: sizes[rng.Intn(len(sizes))]},
			Host: fmt.Sprintf("sim-%04d", rng.Intn(20)), Movable: true}
		switch {
		case i%5 == 0:
			p.Kind = "container"
		case i%7 == 0:
			p.Group, p.GroupPolicy, p.GroupHard = "p/spread", AntiAffinity, true
		case i%11 == 0:
			p.Group, p.GroupPolicy = "p/soft", AntiAffinity
		case i == 13:
			p.Requirements, p.Host = gpu, "sim-0007"
		}
		add(p)
	}
	add(Placed{Request: Request{ID: "busy", Kind: "vm", Size: Resources{1, 512, 10}}, Host: "sim-0003", Why: "it is BOOT"})
	return snap, placed
}

// A consolidation plan on 20 hosts is valid: applied, it exceeds no
// host's allocation ratios, keeps anti-affinity, runs every instance on a
// host with its kind and meeting its requirements, moves each instance at
// most once, onto no emptied host, and empties the hosts it names.
func TestConsolidationPlanIsValid(t *testing.T) {
	for seed := int64(1); seed <= 20; seed++ {
		snap, placed := consolidationWorld(seed)
		plan := Consolidate(snap, placed)
		if len(plan.Emptied) == 0 || plan.After != plan.InUse-len(plan.Emptied) {
			t.Fatalf("seed %d: emptied %v of %d hosts in use", seed, plan.Emptied, plan.InUse)
		}
		where := map[string]*Placed{}
		for i := range placed {
			where[placed[i].ID] = &placed[i]
		}
		final := map[string]string{}
		for _, p := range placed {
			final[p.ID] = p.Host
		}
		emptied := map[string]bool{}
		for _, h := range plan.Emptied {
			emptied[h] = true
		}
		moved := map[string]bool{}
		for _, m := range plan.Moves {
			if moved[m.RequestID] || final[m.RequestID] != m.From || emptied[m.To] || !where[m.RequestID].Movable {
				t.Fatalf("seed %d: bad move %+v", seed, m)
			}
			moved[m.RequestID] = true
			final[m.RequestID] = m.To
		}
		used := map[string]Resources{}
		members := map[string]map[string]int{}
		for id, h := range final {
			p := where[id]
			if emptied[h] {
				t.Fatalf("seed %d: %s is left on emptied host %s", seed, id, h)
			}
			u := used[h]
			u.VCPUs, u.MemoryMiB, u.DiskGiB = u.VCPUs+p.Size.VCPUs, u.MemoryMiB+p.Size.MemoryMiB, u.DiskGiB+p.Size.DiskGiB
			used[h] = u
			if p.Group != "" {
				if members[p.Group] == nil {
					members[p.Group] = map[string]int{}
				}
				members[p.Group][h]++
			}
			for i := range snap.Hosts {
				host := snap.Hosts[i]
				if host.Name != h {
					continue
				}
				if !hasKind(host.Kinds, p.Kind) {
					t.Fatalf("seed %d: %s (%s) on %s without that kind", seed, id, p.Kind, h)
				}
				if p.Requirements != nil {
					if ok, _ := p.Requirements.Match(hostVars{&host}); !ok {
						t.Fatalf("seed %d: %s on %s, which does not meet its requirements", seed, id, h)
					}
				}
			}
		}
		for _, h := range snap.Hosts {
			h.Used = used[h.Name]
			if h.FreeVCPUs() < 0 || h.FreeMemory() < 0 || h.FreeDisk() < 0 {
				t.Fatalf("seed %d: %s over its ratios: %+v", seed, h.Name, h.Used)
			}
		}
		for g, hs := range members {
			for h, n := range hs {
				if n > 1 && snap.GroupHosts[g][h] < n {
					t.Fatalf("seed %d: the plan put %d members of anti-affinity group %s on %s", seed, n, g, h)
				}
			}
		}
		for _, k := range plan.Kept {
			if k.Host == "sim-0003" && !strings.Contains(k.Reason, "busy cannot move now: it is BOOT") {
				t.Fatalf("seed %d: sim-0003 kept for %q", seed, k.Reason)
			}
			if emptied[k.Host] {
				t.Fatalf("seed %d: %s both kept and emptied", seed, k.Host)
			}
		}
	}
}

// A host whose instances fit nowhere else keeps them all: nothing of it
// moves.
func TestConsolidationIsWholeHost(t *testing.T) {
	h := func(name string, usedMem int64) Host {
		return Host{Name: name, Enabled: true, Online: true, Kinds: []string{"vm"}, CPUs: 4, MemoryMiB: 4096, DiskGiB: 100,
			CPURatio: 1, MemRatio: 1, DiskRatio: 1, Used: Resources{VCPUs: 1, MemoryMiB: usedMem, DiskGiB: 1}, Instances: 1}
	}
	snap := Snapshot{Hosts: []Host{h("a", 1024), h("b", 3072)}}
	snap.Hosts[0].Used, snap.Hosts[0].Instances = Resources{VCPUs: 2, MemoryMiB: 1536, DiskGiB: 2}, 2
	placed := []Placed{
		{Request: Request{ID: "a1", Kind: "vm", Size: Resources{1, 512, 1}}, Host: "a", Movable: true},
		{Request: Request{ID: "a2", Kind: "vm", Size: Resources{1, 1024, 1}}, Host: "a", Movable: true},
		{Request: Request{ID: "b1", Kind: "vm", Size: Resources{1, 3072, 1}}, Host: "b", Movable: true},
	}
	plan := Consolidate(snap, placed)
	// a (1.5 GiB used) is tried first; b has 1 GiB free: a2 fits, a1 then
	// does not. Nothing moves; b cannot go onto a either (3 GiB > 2.5).
	if len(plan.Moves) != 0 || len(plan.Emptied) != 0 || len(plan.Kept) != 2 || plan.After != 2 {
		t.Fatalf("plan: %+v", plan)
	}
}
