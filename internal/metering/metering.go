// Package metering turns instance history and image storage into usage
// and cost, exactly, keeps prices (prices.go), and runs the loop that
// fires budget events and keeps per-project month-to-date metrics
// (meter.go).
//
// Usage is derived from the persisted history of every instance (each
// interval of each state on each host), never from counters in memory, so
// restarts and crashes neither lose nor double-count time; an open interval
// counts up to "now". Which states bill what is one table (Rules). Prices
// are points in time: a change applies from its effective time on, and a
// report says which price applied. Money is integer micro-units; time is
// counted in milliseconds and cost is rounded once per charge.
package metering

import (
	"fmt"
	"math/big"
	"sort"
	"strings"
	"time"

	"github.com/kumocloud/kumo/api"
)

// Class is what a state bills.
type Class int

// Classes.
const (
	None Class = iota
	Compute
	Storage
)

// DefaultComputeStates bill the flavor's price: the host holds the
// instance's CPU and memory (SUSPENDED keeps the memory).
var DefaultComputeStates = []api.State{api.StateRunning, api.StateUnknown, api.StateMigrate, api.StateSuspended}

// DefaultStorageStates bill storage only: disks are kept, nothing runs.
var DefaultStorageStates = []api.State{api.StateStopped, api.StatePoweroff}

// Rules maps states to what they bill; states not in it bill nothing.
type Rules map[api.State]Class

// NewRules builds rules from state lists.
func NewRules(compute, storage []api.State) Rules {
	r := Rules{}
	for _, s := range compute {
		r[s] = Compute
	}
	for _, s := range storage {
		r[s] = Storage
	}
	return r
}

// Instance is one instance as metering needs it.
type Instance struct {
	ID, Name, Project, Flavor string
	Size                      api.Size
	History                   []api.HistoryRecord
}

// Group-by keys.
const (
	ByNone     = ""
	ByInstance = "instance"
	ByFlavor   = "flavor"
	ByDay      = "day"
	ByProject  = "project"
)

// FormatMicro writes micro-units as a decimal: 150000 -> "0.150000".
func FormatMicro(m int64) string {
	sign := ""
	if m < 0 {
		sign, m = "-", -m
	}
	return fmt.Sprintf("%s%d.%06d", sign, m/1_000_000, m%1_000_000)
}

// ParseMicro reads a decimal amount ("0.012", "50", "1.5") into
// micro-units exactly, without floating point.
func ParseMicro(s string) (int64, error) {
	s = strings.TrimSpace(s)
	whole, frac, _ := strings.Cut(s, ".")
	if whole == "" && frac == "" || strings.HasPrefix(s, "-") || len(frac) > 6 {
		return 0, fmt.Errorf("%q: want an amount like 0.012 (at most 6 decimals, not negative)", s)
	}
	var w, f int64
	for _, c := range whole {
		if c < '0' || c > '9' {
			return 0, fmt.Errorf("%q is not an amount", s)
		}
		w = w*10 + int64(c-'0')
		if w > 9_000_000_000_000 {
			return 0, fmt.Errorf("%q is too large", s)
		}
	}
	frac += strings.Repeat("0", 6-len(frac))
	for _, c := range frac {
		if c < '0' || c > '9' {
			return 0, fmt.Errorf("%q is not an amount", s)
		}
		f = f*10 + int64(c-'0')
	}
	return w*1_000_000 + f, nil
}

// at returns the price point in force at t (points sorted by Effective).
func at(points []api.PricePoint, t time.Time) (api.PricePoint, int) {
	i := sort.Search(len(points), func(i int) bool { return points[i].Effective.After(t) })
	if i == 0 {
		return api.PricePoint{}, -1
	}
	return points[i-1], i - 1
}

// chargeKey identifies one price applied.
type chargeKey struct {
	what string
	idx  int
	// perMiB: the quantity is MiB-ms of a price per GiB-hour.
	perMiB bool
}

type acc struct {
	instMS, vcpuMS, memMiBMS, diskGiBMS int64
	// MiB-ms of volumes, snapshots and backups, by kind
	storedMiBMS map[string]int64
	// per price point applied: milliseconds (compute) or GiB-ms (storage)
	charges map[chargeKey]int64
	points  map[chargeKey]api.PricePoint
}

func (a *acc) add(b *acc) {
	a.instMS += b.instMS
	a.vcpuMS += b.vcpuMS
	a.memMiBMS += b.memMiBMS
	a.diskGiBMS += b.diskGiBMS
	for k, v := range b.storedMiBMS {
		a.storedMiBMS[k] += v
	}
	for k, v := range b.charges {
		a.charges[k] += v
		a.points[k] = b.points[k]
	}
}

// sub takes b (added before) out of a.
func (a *acc) sub(b *acc) {
	a.instMS -= b.instMS
	a.vcpuMS -= b.vcpuMS
	a.memMiBMS -= b.memMiBMS
	a.diskGiBMS -= b.diskGiBMS
	for k, v := range b.storedMiBMS {
		a.storedMiBMS[k] -= v
	}
	for k, v := range b.charges {
		a.charges[k] -= v
	}
}

// addScaled adds b x f to a (f -1: takes b out). Sums may wrap through
// int64 on the way (a rate x milliseconds less its base): the result is
// exact modulo 2^64, so exact whenever it fits.
func (a *acc) addScaled(b *acc, f int64) {
	a.instMS += b.instMS * f
	a.vcpuMS += b.vcpuMS * f
	a.memMiBMS += b.memMiBMS * f
	a.diskGiBMS += b.diskGiBMS * f
	for k, v := range b.storedMiBMS {
		a.storedMiBMS[k] += v * f
	}
	for k, v := range b.charges {
		a.charges[k] += v * f
		a.points[k] = b.points[k]
	}
}

// reset makes a empty for reuse.
func (a *acc) reset() {
	a.instMS, a.vcpuMS, a.memMiBMS, a.diskGiBMS = 0, 0, 0, 0
	clear(a.storedMiBMS)
	clear(a.charges)
	clear(a.points)
}

// empty says nothing was used.
func (a *acc) empty() bool {
	if a.instMS != 0 || a.vcpuMS != 0 || a.memMiBMS != 0 || a.diskGiBMS != 0 {
		return false
	}
	for _, v := range a.storedMiBMS {
		if v != 0 {
			return false
		}
	}
	for _, v := range a.charges {
		if v != 0 {
			return false
		}
	}
	return true
}

func newAcc() *acc {
	return &acc{storedMiBMS: map[string]int64{}, charges: map[chargeKey]int64{}, points: map[chargeKey]api.PricePoint{}}
}

// charge splits [s, e) at the price changes of points and adds quantity
// per millisecond times the milliseconds to each price in force.
func (a *acc) charge(what string, points []api.PricePoint, s, e time.Time, perMS int64) {
	a.chargeUnit(what, false, points, s, e, perMS)
}

// chargeUnit is charge with the quantity's unit said: perMiB for MiB of
// a price per GiB-hour.
func (a *acc) chargeUnit(what string, perMiB bool, points []api.PricePoint, s, e time.Time, perMS int64) {
	for s.Before(e) {
		p, idx := at(points, s)
		end := e
		if idx+1 < len(points) && points[idx+1].Effective.Before(e) {
			end = points[idx+1].Effective
		}
		k := chargeKey{what, idx, perMiB}
		a.charges[k] += perMS * end.Sub(s).Milliseconds()
		a.points[k] = p
		s = end
	}
}

// segment returns where the piece of [s, e) that starts at s ends (at
// midnight UTC when grouping by day) and the group it belongs to.
func segment(groupBy string, s, e time.Time, instance, flavor, project string) (time.Time, string) {
	switch groupBy {
	case ByInstance:
		return e, instance
	case ByFlavor:
		return e, flavor
	case ByProject:
		return e, project
	case ByDay:
		day := s.UTC().Truncate(24 * time.Hour)
		if next := day.Add(24 * time.Hour); next.Before(e) {
			e = next
		}
		return e, day.Format("2006-01-02")
	}
	return e, ""
}

// Image is an image's stay in storage: billed per GiB-hour (whole GiB,
// rounded up) at the storage price.
type Image struct {
	Project, Name string
	Bytes         int64
	From, To      time.Time // To zero: still stored
}

// Report computes usage and cost of instances over [from, to) as of now.
func Report(insts []Instance, prices api.Prices, rules Rules, from, to, now time.Time, groupBy string) api.UsageReport {
	return ReportAll(insts, nil, nil, prices, rules, from, to, now, groupBy)
}

// ReportAll computes usage and cost of instances, stored images and
// stored volumes, snapshots and backups.
func ReportAll(insts []Instance, imgs []Image, stored []Stored, prices api.Prices, rules Rules, from, to, now time.Time, groupBy string) api.UsageReport {
	t := newTally(prices, rules, from, to, now, groupBy)
	for i := range insts {
		t.instance(&insts[i], 0, len(insts[i].History))
	}
	t.rest(imgs, stored)
	return t.report()
}

// tally accumulates usage by group over [from, min(to, now)).
type tally struct {
	prices   api.Prices
	rules    Rules
	from, to time.Time
	end      time.Time
	groupBy  string
	groups   map[string]*acc
	charges  map[string]string // flavor -> its charge's name, made once
}

func newTally(prices api.Prices, rules Rules, from, to, now time.Time, groupBy string) *tally {
	end := to
	if now.Before(end) {
		end = now
	}
	return &tally{prices: prices, rules: rules, from: from, to: to, end: end, groupBy: groupBy, groups: map[string]*acc{}, charges: map[string]string{}}
}

func (t *tally) group(key string) *acc {
	g := t.groups[key]
	if g == nil {
		g = newAcc()
		t.groups[key] = g
	}
	return g
}

// instance adds the intervals that start at history records [lo, hi) of
// an instance (the last one open up to the end).
func (t *tally) instance(in *Instance, lo, hi int) {
	h := in.History
	// The state a migration under way at lo left (classOf).
	var left api.State
	for j := 0; j < lo; j++ {
		t.rules.classOf(h[j], &left)
	}
	for j := lo; j < hi; j++ {
		class := t.rules.classOf(h[j], &left)
		if class == None {
			continue
		}
		s := h[j].Time
		e := t.end
		if j+1 < len(h) {
			e = h[j+1].Time
		}
		if s.Before(t.from) {
			s = t.from
		}
		if e.After(t.end) {
			e = t.end
		}
		// Milliseconds are the unit: cut both ends to them.
		s, e = s.Truncate(time.Millisecond), e.Truncate(time.Millisecond)
		for s.Before(e) {
			segEnd, key := segment(t.groupBy, s, e, in.Name, in.Flavor, in.Project)
			g := t.group(key)
			ms := segEnd.Sub(s).Milliseconds()
			g.diskGiBMS += in.Size.DiskGiB * ms
			if class == Compute {
				g.instMS += ms
				g.vcpuMS += in.Size.VCPUs * ms
				g.memMiBMS += in.Size.MemoryMiB * ms
				what, ok := t.charges[in.Flavor]
				if !ok {
					what = "flavor " + in.Flavor
					t.charges[in.Flavor] = what
				}
				g.charge(what, t.prices.Flavors[in.Flavor], s, segEnd, 1)
			} else {
				g.charge("storage", t.prices.Storage, s, segEnd, in.Size.DiskGiB)
			}
			s = segEnd
		}
	}
}

// clip bounds a stay [s, e) (e zero: still) to the tally's range, in
// milliseconds.
func (t *tally) clip(s, e time.Time) (time.Time, time.Time) {
	if e.IsZero() || e.After(t.end) {
		e = t.end
	}
	if s.Before(t.from) {
		s = t.from
	}
	return s.Truncate(time.Millisecond), e.Truncate(time.Millisecond)
}

// rest adds stored images, volumes, snapshots and backups.
func (t *tally) rest(imgs []Image, stored []Stored) {
	for _, img := range imgs {
		s, e := t.clip(img.From, img.To)
		gib := (img.Bytes + 1<<30 - 1) >> 30
		for s.Before(e) {
			segEnd, key := segment(t.groupBy, s, e, "image:"+img.Name, "images", img.Project)
			g := t.group(key)
			g.diskGiBMS += gib * segEnd.Sub(s).Milliseconds()
			g.charge("image storage", t.prices.Storage, s, segEnd, gib)
			s = segEnd
		}
	}
	for _, st := range stored {
		kind, ok := storageKinds[st.Kind]
		if !ok {
			continue
		}
		s, e := t.clip(st.From, st.To)
		for s.Before(e) {
			segEnd, key := segment(t.groupBy, s, e, kind.prefix+st.Name, kind.flavor, st.Project)
			g := t.group(key)
			g.storedMiBMS[st.Kind] += st.MiB * segEnd.Sub(s).Milliseconds()
			g.chargeUnit(kind.charge, true, storagePrices(t.prices, st.Kind), s, segEnd, st.MiB)
			s = segEnd
		}
	}
}

// storagePrices are the prices of a ledger kind.
func storagePrices(p api.Prices, kind string) []api.PricePoint {
	switch kind {
	case KindVolume:
		return p.Volumes
	case KindSnapshot:
		return p.Snapshots
	case KindBackup:
		return p.Backups
	}
	return nil
}

// report renders the groups, each charge rounded once.
func (t *tally) report() api.UsageReport {
	rep := api.UsageReport{From: t.from, To: t.to, GroupBy: t.groupBy, Currency: t.prices.Currency, Groups: []api.UsageLine{}}
	keys := make([]string, 0, len(t.groups))
	for k, g := range t.groups {
		if !g.empty() { // a group of nothing (a 0 GiB disk stored) is no line
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	total := newAcc()
	for _, k := range keys {
		line := lineOf(k, t.groups[k])
		rep.Groups = append(rep.Groups, line)
		total.add(t.groups[k])
		rep.Total.CostMicro += line.CostMicro
	}
	tl := lineOf("total", total)
	tl.CostMicro, tl.Cost = rep.Total.CostMicro, FormatMicro(rep.Total.CostMicro)
	rep.Total = tl
	if t.groupBy == ByNone {
		rep.Groups = []api.UsageLine{}
	}
	return rep
}

var (
	msPerHour    = big.NewInt(3_600_000)
	msPerGiBHour = big.NewInt(3_600_000 * 1024) // MiB-ms in a GiB-hour
)

// lineOf renders an accumulator: each charge's cost is price x quantity /
// hour, rounded half up once; the line's cost is the sum of its charges.
func lineOf(key string, a *acc) api.UsageLine {
	l := api.UsageLine{Key: key, InstanceSeconds: a.instMS / 1000,
		VCPUHours: float64(a.vcpuMS) / 3.6e6, MemoryGiBHours: float64(a.memMiBMS) / 1024 / 3.6e6, StorageGiBHours: float64(a.diskGiBMS) / 3.6e6,
		VolumeGiBHours: float64(a.storedMiBMS[KindVolume]) / 1024 / 3.6e6, SnapshotGiBHours: float64(a.storedMiBMS[KindSnapshot]) / 1024 / 3.6e6,
		BackupGiBHours: float64(a.storedMiBMS[KindBackup]) / 1024 / 3.6e6}
	ks := make([]chargeKey, 0, len(a.charges))
	for k := range a.charges {
		ks = append(ks, k)
	}
	sort.Slice(ks, func(i, j int) bool {
		if ks[i].what != ks[j].what {
			return ks[i].what < ks[j].what
		}
		return ks[i].idx < ks[j].idx
	})
	for _, k := range ks {
		q := a.charges[k]
		if q == 0 {
			continue // nothing charged (0 GiB stored)
		}
		p := a.points[k]
		num := new(big.Int).Mul(big.NewInt(p.Micro), big.NewInt(q))
		div := msPerHour
		if k.perMiB {
			div = msPerGiBHour
		}
		num.Add(num, new(big.Int).Rsh(div, 1)) // half up
		cost := num.Quo(num, div).Int64()
		hours := float64(q) / 3.6e6
		if k.perMiB {
			hours /= 1024 // GiB-hours
		}
		l.Charges = append(l.Charges, api.Charge{What: k.what, MicroPerHour: p.Micro, Effective: p.Effective, Hours: hours, CostMicro: cost})
		l.CostMicro += cost
	}
	l.Cost = FormatMicro(l.CostMicro)
	return l
}
