package metering

import (
	"fmt"
	"testing"
	"time"

	"github.com/kumocloud/kumo/api"
)

var t0 = time.Date(2026, 11, 2, 10, 0, 0, 0, time.UTC)

func hist(steps ...any) []api.HistoryRecord {
	var out []api.HistoryRecord
	from := api.State("")
	for i := 0; i < len(steps); i += 2 {
		t := t0.Add(steps[i].(time.Duration))
		to := api.State(steps[i+1].(string))
		out = append(out, api.HistoryRecord{Seq: i/2 + 1, Time: t, From: from, To: to})
		from = to
	}
	return out
}

func prices(flavorMicro int64) api.Prices {
	return api.Prices{Currency: "EUR", Flavors: map[string][]api.PricePoint{"small": {{Micro: flavorMicro}}}, Storage: []api.PricePoint{{Micro: 100}}}
}

var rules = NewRules(DefaultComputeStates, DefaultStorageStates)

func inst(name string, h []api.HistoryRecord) Instance {
	return Instance{ID: name, Name: name, Project: "p", Flavor: "small", Size: api.Size{VCPUs: 2, MemoryMiB: 2048, DiskGiB: 10}, History: h}
}

func TestNinetyMinutes(t *testing.T) {
	in := inst("a", hist(0*time.Minute, "PENDING", 1*time.Minute, "PROLOG", 2*time.Minute, "BOOT", 3*time.Minute, "RUNNING", 93*time.Minute, "SHUTDOWN", 94*time.Minute, "EPILOG", 95*time.Minute, "DONE"))
	r := Report([]Instance{in}, prices(100_000), rules, t0, t0.Add(24*time.Hour), t0.Add(24*time.Hour), ByInstance)
	if r.Total.CostMicro != 150_000 || r.Total.Cost != "0.150000" || r.Total.InstanceSeconds != 5400 || r.Total.VCPUHours != 3 {
		t.Fatalf("90 min at 0.10/h: %+v", r.Total)
	}
}

func TestChargingTable(t *testing.T) {
	// RUNNING 1h, SUSPENDED 1h (compute: the host keeps the memory),
	// STOPPED 1h (storage: 10 GiB x 0.0001/GiB-h), RUNNING 30 min, DONE.
	in := inst("a", hist(0*time.Hour, "RUNNING", 1*time.Hour, "SUSPENDED", 2*time.Hour, "STOPPED", 3*time.Hour, "RUNNING", 210*time.Minute, "DONE"))
	r := Report([]Instance{in}, prices(100_000), rules, t0, t0.Add(24*time.Hour), t0.Add(24*time.Hour), ByNone)
	want := int64(250_000 + 1_000)
	if r.Total.CostMicro != want || r.Total.InstanceSeconds != 9000 {
		t.Fatalf("cost %d (%+v), want %d", r.Total.CostMicro, r.Total, want)
	}
	// The admin's table decides: with STOPPED billing nothing, only compute is left.
	r = Report([]Instance{in}, prices(100_000), NewRules(DefaultComputeStates, nil), t0, t0.Add(24*time.Hour), t0.Add(24*time.Hour), ByNone)
	if r.Total.CostMicro != 250_000 {
		t.Fatalf("without storage billing: %d", r.Total.CostMicro)
	}
}

func TestPriceChangeSplitsAtItsTime(t *testing.T) {
	in := inst("a", hist(1*time.Hour, "RUNNING", 3*time.Hour, "DONE")) // 11:00 to 13:00
	p := prices(100_000)
	p.Flavors["small"] = append(p.Flavors["small"], api.PricePoint{Effective: t0.Add(2 * time.Hour), Micro: 200_000}) // 12:00
	r := Report([]Instance{in}, p, rules, t0, t0.Add(24*time.Hour), t0.Add(24*time.Hour), ByInstance)
	g := r.Groups[0]
	if g.CostMicro != 300_000 || len(g.Charges) != 2 || g.Charges[0].CostMicro != 100_000 || g.Charges[1].CostMicro != 200_000 ||
		!g.Charges[1].Effective.Equal(t0.Add(2*time.Hour)) || g.Charges[0].Hours != 1 {
		t.Fatalf("price change: %+v", g)
	}
}

func TestRangesAndOpenIntervals(t *testing.T) {
	in := inst("a", hist(time.Duration(0), "RUNNING")) // still running
	now := t0.Add(10 * time.Hour)
	// Open interval up to now; the range clips both ends.
	r := Report([]Instance{in}, prices(360_000), rules, t0.Add(2*time.Hour), t0.Add(24*time.Hour), now, ByNone)
	if r.Total.InstanceSeconds != 8*3600 || r.Total.CostMicro != 8*360_000 {
		t.Fatalf("open interval: %+v", r.Total)
	}
	// By day: split at midnight UTC.
	r = Report([]Instance{in}, prices(360_000), rules, t0, t0.Add(48*time.Hour), t0.Add(48*time.Hour), ByDay)
	if len(r.Groups) != 3 || r.Groups[0].Key != "2026-11-02" || r.Groups[0].InstanceSeconds != 14*3600 || r.Groups[1].InstanceSeconds != 24*3600 {
		t.Fatalf("by day: %+v", r.Groups)
	}
	// Cents of a second are not lost or invented: 1 ms at 3.6/h is 1 micro.
	in = inst("b", []api.HistoryRecord{{Time: t0, To: "RUNNING"}, {Time: t0.Add(time.Millisecond), To: "DONE"}})
	if r := Report([]Instance{in}, prices(3_600_000), rules, t0, t0.Add(time.Hour), t0.Add(time.Hour), ByNone); r.Total.CostMicro != 1 {
		t.Fatalf("1 ms: %d", r.Total.CostMicro)
	}
}

// Image storage: whole GiB (rounded up) per hour at the storage price,
// from upload to delete.
func TestImageStorage(t *testing.T) {
	img := Image{Project: "p", Name: "tiny", Bytes: 1 << 20, From: t0, To: t0.Add(3 * time.Hour)}
	r := ReportAll(nil, []Image{img}, nil, prices(100_000), rules, t0, t0.Add(24*time.Hour), t0.Add(24*time.Hour), ByInstance)
	if len(r.Groups) != 1 || r.Groups[0].Key != "image:tiny" || r.Total.CostMicro != 300 || r.Total.StorageGiBHours != 3 {
		t.Fatalf("image storage: %+v", r)
	}
}

func TestParseMicro(t *testing.T) {
	for in, want := range map[string]int64{"0.012": 12_000, "50": 50_000_000, "50.00": 50_000_000, "1.5": 1_500_000, ".5": 500_000, "0.000001": 1} {
		if got, err := ParseMicro(in); err != nil || got != want {
			t.Errorf("ParseMicro(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "-1", "1.2345678", "abc", "1e3", "1,5"} {
		if _, err := ParseMicro(bad); err == nil {
			t.Errorf("ParseMicro(%q) accepted", bad)
		}
	}
	if FormatMicro(150_000) != "0.150000" || FormatMicro(50_000_000) != "50.000000" {
		t.Error("FormatMicro")
	}
}

// BenchmarkReport1M: one project, 10,000 instances x 100 history records.
func BenchmarkReport1M(b *testing.B) {
	states := []api.State{"PENDING", "PROLOG", "BOOT", "RUNNING", "SUSPENDED", "BOOT", "RUNNING", "SAVE", "EPILOG", "STOPPED"}
	insts := make([]Instance, 10000)
	for i := range insts {
		h := make([]api.HistoryRecord, 100)
		for j := range h {
			h[j] = api.HistoryRecord{Seq: j + 1, Time: t0.Add(time.Duration(i+j*37) * time.Minute), To: states[j%len(states)]}
		}
		insts[i] = Instance{ID: fmt.Sprint(i), Name: fmt.Sprint("i-", i), Project: "p", Flavor: "small", Size: api.Size{VCPUs: 1, MemoryMiB: 1024, DiskGiB: 10}, History: h}
	}
	p := prices(100_000)
	p.Flavors["small"] = append(p.Flavors["small"], api.PricePoint{Effective: t0.Add(24 * time.Hour), Micro: 120_000})
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		Report(insts, p, rules, t0, t0.Add(60*24*time.Hour), t0.Add(60*24*time.Hour), ByInstance)
	}
	b.ReportMetric(1e6*float64(b.N)/b.Elapsed().Seconds(), "records/s")
}
