// Package scheduler decides where instances run. It is pure logic, as
// Nomad's is: given a read-only snapshot of hosts and a batch of requests it
// returns a plan, and touches nothing. The caller commits the plan with
// compare-and-swap and retries on conflict; a stale plan is never applied.
//
// Filters (a host is out if any fails): the instance's home (a host that
// holds its saved state and disks, if one does), the hosts of the volumes
// in local pools it needs (its boot volume), state (enabled, online,
// not draining), driver kind, capacity with allocation ratios, the requirement
// expression, server-group affinity/anti-affinity (hard). Ranking among the
// hosts left: a policy (packing, striping, load-aware), or a RANK
// expression, plus soft group preferences; ties go to the host name that
// sorts first, so the same input always gives the same plan.
//
// For speed at scale a request is ranked over the first K feasible hosts
// met, not all of them (K = 2*log2(hosts), at least 16), as Nomad limits
// its candidate set: packing scans from the first host by name, so it fills
// hosts in order; the others start each request at a host chosen by a hash
// of its id - the same in every round, unlike a counter that restarts at
// host 0 each round and piled striping onto the first hosts - so they
// spread: the least loaded of K hosts met from a random start (the "power
// of K choices"). Explain evaluates every host.
package scheduler

import (
	"fmt"
	"hash/fnv"
	"math"
	"math/bits"
	"sort"
	"strings"
)

// Policies.
const (
	Packing   = "packing"
	Striping  = "striping"
	LoadAware = "load-aware"
)

// Policies lists the ranking policies.
var Policies = []string{Packing, Striping, LoadAware}

// Group policies.
const (
	Affinity     = "affinity"
	AntiAffinity = "anti-affinity"
)

// Resources are an instance's size or a host's use.
type Resources struct {
	VCPUs     int64
	MemoryMiB int64
	DiskGiB   int64
}

// Host is a host as the scheduler sees it.
type Host struct {
	Name      string
	Enabled   bool
	Online    bool
	Draining  bool
	Kinds     []string // driver kinds: "vm", "container"
	CPUs      int64
	MemoryMiB int64
	DiskGiB   int64
	CPURatio  float64
	MemRatio  float64
	DiskRatio float64
	// Attrs are ARCH, CPU_MODEL, KERNEL and the admin's labels.
	Attrs map[string]string
	Used  Resources
	// Instances placed on the host.
	Instances int
}

// Request is one pending instance.
type Request struct {
	ID   string
	Kind string
	Size Resources
	// Requirements and Rank may be nil.
	Requirements *Expr
	Rank         *Expr
	// Group is the server group, with its policy and whether it is hard.
	Group       string
	GroupPolicy string
	GroupHard   bool
	// Home is the host that holds the instance's saved state and disks
	// (a STOPPED instance started again): it goes there or nowhere.
	Home string
	// Volumes are the volumes in local pools the instance needs (its boot
	// volume): each lives on one host, and the instance goes there.
	Volumes []VolumeNeed
}

// VolumeNeed is a volume an instance needs and the host it lives on.
type VolumeNeed struct {
	Name string
	Host string
}

// Snapshot is the world a plan is made against.
type Snapshot struct {
	Hosts []Host
	// GroupHosts maps a server group to the hosts its members are on.
	GroupHosts map[string]map[string]int
}

// Placement puts a request on a host.
type Placement struct {
	RequestID string
	Host      string
}

// Failure says why a request fits nowhere.
type Failure struct {
	RequestID string
	Reason    string
}

// Plan is the scheduler's answer for a batch.
type Plan struct {
	Placements []Placement
	Failures   []Failure
}

// capacity of a host for a resource, with its ratio.
func capOf(total int64, ratio float64) int64 {
	if ratio <= 0 {
		ratio = 1
	}
	return int64(math.Floor(float64(total) * ratio))
}

// FreeVCPUs is the room left for vCPUs, the ratio applied (FreeMemory
// and FreeDisk: for memory and disk).
func (h *Host) FreeVCPUs() int64  { return capOf(h.CPUs, h.CPURatio) - h.Used.VCPUs }
func (h *Host) FreeMemory() int64 { return capOf(h.MemoryMiB, h.MemRatio) - h.Used.MemoryMiB }
func (h *Host) FreeDisk() int64   { return capOf(h.DiskGiB, h.DiskRatio) - h.Used.DiskGiB }

// hostVars exposes a host to expressions.
type hostVars struct{ h *Host }

func (v hostVars) Lookup(name string) (float64, string, bool, bool) {
	h := v.h
	switch name {
	case "NAME", "HOSTNAME":
		return 0, h.Name, false, true
	case "CPUS", "TOTAL_CPU":
		return float64(capOf(h.CPUs, h.CPURatio)), "", true, true
	case "FREE_CPU":
		return float64(h.FreeVCPUs()), "", true, true
	case "USED_CPU":
		return float64(h.Used.VCPUs), "", true, true
	case "MEMORY", "TOTAL_MEM":
		return float64(capOf(h.MemoryMiB, h.MemRatio)), "", true, true
	case "FREE_MEM":
		return float64(h.FreeMemory()), "", true, true
	case "USED_MEM":
		return float64(h.Used.MemoryMiB), "", true, true
	case "FREE_DISK":
		return float64(h.FreeDisk()), "", true, true
	case "RUNNING_VMS", "INSTANCES":
		return float64(h.Instances), "", true, true
	}
	if s, ok := h.Attrs[name]; ok {
		return attrValue(s)
	}
	for k, s := range h.Attrs {
		if strings.EqualFold(k, name) {
			return attrValue(s)
		}
	}
	return 0, "", false, false
}

func attrValue(s string) (float64, string, bool, bool) {
	var f float64
	if _, err := fmt.Sscanf(s, "%g", &f); err == nil && fmt.Sprint(f) == s {
		return f, s, true, true
	}
	return 0, s, false, true
}

// Reason classes, used to sum up why hosts were filtered out.
const (
	reasonOffline  = "offline"
	reasonDisabled = "disabled"
	reasonDraining = "draining"
	reasonKind     = "no %s driver"
	reasonCPU      = "insufficient vcpus (need %d)"
	reasonMem      = "insufficient memory (need %d MiB)"
	reasonDisk     = "insufficient disk (need %d GiB)"
	reasonReq      = "requirements not met"
	reasonAnti     = "anti-affinity: group %s already there"
	reasonAff      = "affinity: group %s is elsewhere"
	reasonHome     = "not its home: its saved state and disks are on %s"
	reasonVolume   = "volume %s lives on host %s (local pool)"
)

// filter returns "" if the host can take the request, else why not.
func filter(h *Host, r *Request, groupHosts map[string]map[string]int) string {
	for _, v := range r.Volumes {
		if v.Host != "" && v.Host != h.Name {
			return fmt.Sprintf(reasonVolume, v.Name, v.Host)
		}
	}
	switch {
	case r.Home != "" && h.Name != r.Home:
		return fmt.Sprintf(reasonHome, r.Home)
	case !h.Online:
		return reasonOffline
	case !h.Enabled:
		return reasonDisabled
	case h.Draining:
		return reasonDraining
	}
	if r.Kind != "" && !hasKind(h.Kinds, r.Kind) {
		return fmt.Sprintf(reasonKind, r.Kind)
	}
	if r.Size.VCPUs > h.FreeVCPUs() {
		return fmt.Sprintf(reasonCPU, r.Size.VCPUs)
	}
	if r.Size.MemoryMiB > h.FreeMemory() {
		return fmt.Sprintf(reasonMem, r.Size.MemoryMiB)
	}
	if r.Size.DiskGiB > h.FreeDisk() {
		return fmt.Sprintf(reasonDisk, r.Size.DiskGiB)
	}
	if r.Requirements != nil {
		if ok, missing := r.Requirements.Match(hostVars{h}); !ok {
			if missing != "" {
				return reasonReq + " (" + missing + " undefined)"
			}
			return reasonReq
		}
	}
	if r.Group != "" && r.GroupHard {
		members := groupHosts[r.Group]
		switch r.GroupPolicy {
		case AntiAffinity:
			if members[h.Name] > 0 {
				return fmt.Sprintf(reasonAnti, r.Group)
			}
		case Affinity:
			if len(members) > 0 && members[h.Name] == 0 {
				return fmt.Sprintf(reasonAff, r.Group)
			}
		}
	}
	return ""
}

func hasKind(kinds []string, k string) bool {
	for _, x := range kinds {
		if x == k {
			return true
		}
	}
	return false
}

// score ranks a feasible host: higher is better.
func score(h *Host, r *Request, policy string, groupHosts map[string]map[string]int) float64 {
	var s float64
	if r.Rank != nil {
		s = r.Rank.Number(hostVars{h})
	} else {
		capCPU := float64(max(1, capOf(h.CPUs, h.CPURatio)))
		capMem := float64(max(1, capOf(h.MemoryMiB, h.MemRatio)))
		used := (float64(h.Used.VCPUs)/capCPU + float64(h.Used.MemoryMiB)/capMem) / 2
		switch policy {
		case Striping:
			s = -float64(h.Instances) - used
		case LoadAware:
			s = float64(h.FreeVCPUs()) / capCPU
		default: // packing
			s = used + float64(h.Instances)/1e6
		}
	}
	if r.Group != "" && !r.GroupHard {
		n := float64(groupHosts[r.Group][h.Name])
		switch r.GroupPolicy {
		case AntiAffinity:
			s -= 1000 * n
		case Affinity:
			s += 1000 * n
		}
	}
	return s
}

// candidates is how many feasible hosts a request is ranked over.
func candidates(n int) int {
	return max(16, 2*bits.Len(uint(n)))
}

// Schedule plans a batch of requests, in order, against one snapshot. The
// snapshot is not modified; the plan accounts for its own placements.
func Schedule(snap Snapshot, reqs []Request, policy string) Plan {
	hosts := make([]Host, len(snap.Hosts))
	copy(hosts, snap.Hosts)
	sort.Slice(hosts, func(i, j int) bool { return hosts[i].Name < hosts[j].Name })
	groups := map[string]map[string]int{}
	for g, m := range snap.GroupHosts {
		groups[g] = map[string]int{}
		for h, n := range m {
			groups[g][h] = n
		}
	}
	var plan Plan
	k := candidates(len(hosts))
	for i := range reqs {
		r := &reqs[i]
		best, bestScore, found := -1, 0.0, 0
		n := len(hosts)
		off := 0
		if (policy != Packing || r.Rank != nil) && n > 0 {
			h := fnv.New32a()
			h.Write([]byte(r.ID))
			off = int(h.Sum32() % uint32(n))
		}
		for j := 0; j < n && found < k; j++ {
			h := &hosts[(off+j)%n]
			if filter(h, r, groups) != "" {
				continue
			}
			found++
			s := score(h, r, policy, groups)
			if best < 0 || s > bestScore || s == bestScore && h.Name < hosts[best].Name {
				best, bestScore = (off+j)%n, s
			}
		}
		if best < 0 {
			plan.Failures = append(plan.Failures, Failure{RequestID: r.ID, Reason: Summarize(hosts, r, groups)})
			continue
		}
		h := &hosts[best]
		h.Used.VCPUs += r.Size.VCPUs
		h.Used.MemoryMiB += r.Size.MemoryMiB
		h.Used.DiskGiB += r.Size.DiskGiB
		h.Instances++
		if r.Group != "" {
			if groups[r.Group] == nil {
				groups[r.Group] = map[string]int{}
			}
			groups[r.Group][h.Name]++
		}
		plan.Placements = append(plan.Placements, Placement{RequestID: r.ID, Host: h.Name})
	}
	return plan
}

// Summarize says why a request fits on no host, by counting the reasons:
// "0/2000 hosts: 1500 insufficient memory (need 2048 MiB), 500 disabled".
func Summarize(hosts []Host, r *Request, groups map[string]map[string]int) string {
	counts := map[string]int{}
	fit := 0
	for i := range hosts {
		if why := filter(&hosts[i], r, groups); why != "" {
			counts[why]++
		} else {
			fit++
		}
	}
	if len(hosts) == 0 {
		return "0/0 hosts: no hosts have joined"
	}
	reasons := make([]string, 0, len(counts))
	for why := range counts {
		reasons = append(reasons, why)
	}
	sort.Slice(reasons, func(i, j int) bool {
		if counts[reasons[i]] != counts[reasons[j]] {
			return counts[reasons[i]] > counts[reasons[j]]
		}
		return reasons[i] < reasons[j]
	})
	parts := make([]string, len(reasons))
	for i, why := range reasons {
		parts[i] = fmt.Sprintf("%d %s", counts[why], why)
	}
	return fmt.Sprintf("%d/%d hosts: %s", fit, len(hosts), strings.Join(parts, ", "))
}

// HostResult is one host in an explanation: filtered out (Reason) or
// feasible with a Score.
type HostResult struct {
	Host     string
	Feasible bool
	Reason   string
	Score    float64
}

// Explain evaluates one request against every host, best first.
func Explain(snap Snapshot, r Request, policy string) []HostResult {
	out := make([]HostResult, 0, len(snap.Hosts))
	for i := range snap.Hosts {
		h := &snap.Hosts[i]
		if why := filter(h, &r, snap.GroupHosts); why != "" {
			out = append(out, HostResult{Host: h.Name, Reason: why})
			continue
		}
		out = append(out, HostResult{Host: h.Name, Feasible: true, Score: score(h, &r, policy, snap.GroupHosts)})
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if a.Feasible != b.Feasible {
			return a.Feasible
		}
		if a.Score != b.Score {
			return a.Score > b.Score
		}
		return a.Host < b.Host
	})
	return out
}
