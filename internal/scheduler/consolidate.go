package scheduler

import (
	"fmt"
	"sort"
)

// Consolidation: the energy-saving use of migration. Given a snapshot and
// the instances placed on its hosts, Consolidate plans moves that empty
// the least-used hosts onto the others, within every filter Schedule
// applies (allocation ratios, driver kind, requirements, state) and never
// breaking a server group: anti-affinity, hard or soft, is kept as if it
// were hard (consolidating must not make a spread group less spread).
//
// It is greedy and whole-host: sources are tried least used first; a host
// is emptied only if every instance on it finds a place, else nothing of
// it moves (a half-emptied host saves no energy) and the plan says which
// instance kept it. Targets are hosts that already run something and are
// not being emptied, fullest first (packing), so no empty host is woken
// and no instance moves twice. Like Schedule it is deterministic.

// Placed is an instance on a host, as consolidation sees it. Request
// carries its size, kind, requirements and group (Home is ignored: a
// migration takes its disks along). Movable says whether it can be moved
// now; Why says why not.
type Placed struct {
	Request
	Host    string
	Movable bool
	Why     string
}

// Move is one instance going from a host to another.
type Move struct {
	RequestID string
	From, To  string
}

// Kept is a host that could be emptied in principle but is not, and why.
type Kept struct {
	Host   string
	Reason string
}

// Consolidation is a consolidation plan.
type Consolidation struct {
	Moves []Move
	// Emptied are the hosts the moves empty, in the order tried.
	Emptied []string
	Kept    []Kept
	// InUse is how many hosts run instances now; After, once the plan is
	// applied.
	InUse, After int
}

// utilization is a host's use, the mean of its vCPU and memory shares.
func utilization(h *Host) float64 {
	capCPU := float64(max(1, capOf(h.CPUs, h.CPURatio)))
	capMem := float64(max(1, capOf(h.MemoryMiB, h.MemRatio)))
	return (float64(h.Used.VCPUs)/capCPU + float64(h.Used.MemoryMiB)/capMem) / 2
}

// Consolidate plans the moves (see above). The snapshot is not modified.
func Consolidate(snap Snapshot, placed []Placed) Consolidation {
	hosts := make([]Host, len(snap.Hosts))
	copy(hosts, snap.Hosts)
	byName := map[string]int{}
	for i := range hosts {
		byName[hosts[i].Name] = i
	}
	groups := map[string]map[string]int{}
	for g, m := range snap.GroupHosts {
		groups[g] = map[string]int{}
		for h, n := range m {
			groups[g][h] = n
		}
	}
	on := map[string][]Placed{}
	for _, p := range placed {
		if _, ok := byName[p.Host]; ok {
			on[p.Host] = append(on[p.Host], p)
		}
	}
	var out Consolidation
	var sources []*Host
	for i := range hosts {
		h := &hosts[i]
		if len(on[h.Name]) == 0 {
			continue
		}
		out.InUse++
		if h.Online { // an offline host's instances cannot migrate
			sources = append(sources, h)
		}
	}
	sort.SliceStable(sources, func(i, j int) bool {
		ui, uj := utilization(sources[i]), utilization(sources[j])
		if ui != uj {
			return ui < uj
		}
		return sources[i].Name < sources[j].Name
	})
	// Hosts out of play as targets: emptied ones; and a host that took
	// instances is no longer a source.
	emptied, target := map[string]bool{}, map[string]bool{}
	for _, src := range sources {
		if target[src.Name] {
			continue
		}
		moves, why := empty(src, on[src.Name], hosts, groups, emptied)
		if why != "" {
			out.Kept = append(out.Kept, Kept{Host: src.Name, Reason: why})
			continue
		}
		emptied[src.Name] = true
		out.Emptied = append(out.Emptied, src.Name)
		for _, m := range moves {
			target[m.To] = true
		}
		out.Moves = append(out.Moves, moves...)
	}
	out.After = out.InUse - len(out.Emptied)
	return out
}

// empty tries to move every instance of src elsewhere. On success it
// applies the moves to hosts and groups and returns them; otherwise it
// changes nothing and says why.
func empty(src *Host, insts []Placed, hosts []Host, groups map[string]map[string]int, emptied map[string]bool) ([]Move, string) {
	// Largest first: they are the hardest to place.
	insts = append([]Placed(nil), insts...)
	sort.SliceStable(insts, func(i, j int) bool {
		a, b := insts[i].Size, insts[j].Size
		if a.MemoryMiB != b.MemoryMiB {
			return a.MemoryMiB > b.MemoryMiB
		}
		if a.VCPUs != b.VCPUs {
			return a.VCPUs > b.VCPUs
		}
		return insts[i].ID < insts[j].ID
	})
	for _, p := range insts {
		if !p.Movable {
			return nil, fmt.Sprintf("instance %s cannot move now: %s", p.ID, p.Why)
		}
	}
	// Work on copies; commit only if all fit.
	work := make([]Host, len(hosts))
	copy(work, hosts)
	g := map[string]map[string]int{}
	for k, m := range groups {
		g[k] = map[string]int{}
		for h, n := range m {
			g[k][h] = n
		}
	}
	var moves []Move
	for _, p := range insts {
		r := p.Request
		r.Home = ""
		if r.GroupPolicy == AntiAffinity {
			r.GroupHard = true
		}
		best, bestScore := -1, 0.0
		for i := range work {
			h := &work[i]
			if h.Name == src.Name || emptied[h.Name] || h.Instances == 0 || filter(h, &r, g) != "" {
				continue
			}
			if s := utilization(h); best < 0 || s > bestScore || s == bestScore && h.Name < work[best].Name {
				best, bestScore = i, s
			}
		}
		if best < 0 {
			return nil, fmt.Sprintf("instance %s fits on no other host in use (%s)", p.ID, Summarize(others(work, src.Name, emptied), &r, g))
		}
		to := &work[best]
		to.Used.VCPUs += r.Size.VCPUs
		to.Used.MemoryMiB += r.Size.MemoryMiB
		to.Used.DiskGiB += r.Size.DiskGiB
		to.Instances++
		if r.Group != "" {
			if g[r.Group] == nil {
				g[r.Group] = map[string]int{}
			}
			g[r.Group][to.Name]++
			if g[r.Group][src.Name]--; g[r.Group][src.Name] <= 0 {
				delete(g[r.Group], src.Name)
			}
		}
		moves = append(moves, Move{RequestID: p.ID, From: src.Name, To: to.Name})
	}
	for i := range work {
		if work[i].Name == src.Name {
			work[i].Used, work[i].Instances = Resources{}, 0
		}
	}
	copy(hosts, work)
	for k := range groups {
		delete(groups, k)
	}
	for k, m := range g {
		groups[k] = m
	}
	return moves, ""
}

// others are the hosts an instance of src could go to, for a summary of
// why it fits on none.
func others(hosts []Host, src string, emptied map[string]bool) []Host {
	var out []Host
	for _, h := range hosts {
		if h.Name != src && !emptied[h.Name] && h.Instances > 0 {
			out = append(out, h)
		}
	}
	return out
}
