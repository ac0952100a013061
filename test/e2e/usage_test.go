package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/kumocloud/kumo/api"
	"github.com/kumocloud/kumo/client"
)

// TestUsageCLI: prices, a budget, and usage reports through the CLI
// against instances run by the all-in-one server's sim agent.
func TestUsageCLI(t *testing.T) {
	s := startServer(t, "--drivers", "sim", "--sim-hosts", "2")
	root := []string{"KUMO_SOCKET=" + s.socket}
	must(t, root, "", "flavor", "set", "small", "--price-per-hour", "3600")
	if out := must(t, root, "", "price", "show"); !strings.Contains(out, "3600.000000") || !strings.Contains(out, "billed as compute: RUNNING, UNKNOWN, MIGRATE, SUSPENDED") {
		t.Errorf("price show:\n%s", out)
	}
	must(t, root, "", "price", "set", "--storage-per-gib-hour", "0.0001")
	must(t, root, "", "project", "set", "default", "--budget", "50.00", "--currency", "EUR")
	start := time.Now().UTC().Add(-time.Second).Format(time.RFC3339)
	must(t, root, "", "instance", "create", "m1", "--flavor", "small", "--image", "x", "--wait")
	must(t, root, "", "instance", "terminate", "m1", "--wait")

	var rep api.UsageReport
	if err := json.Unmarshal([]byte(must(t, root, "", "usage", "show", "--from", start, "-o", "json")), &rep); err != nil {
		t.Fatal(err)
	}
	// The charge is the instance's own history priced, however long the
	// machine took: at 3600/h a millisecond in a compute state costs
	// 1000 micro-units.
	var hist []api.HistoryRecord
	if err := json.Unmarshal([]byte(must(t, root, "", "instance", "history", "m1", "-o", "json")), &struct{ Items *[]api.HistoryRecord }{&hist}); err != nil {
		t.Fatal(err)
	}
	var computeMS int64
	for i, h := range hist {
		if i+1 < len(hist) && strings.Contains(" RUNNING UNKNOWN MIGRATE SUSPENDED ", " "+string(h.To)+" ") {
			computeMS += hist[i+1].Time.Truncate(time.Millisecond).Sub(h.Time.Truncate(time.Millisecond)).Milliseconds()
		}
	}
	var flavorMicro int64
	for _, ch := range rep.Total.Charges {
		if ch.What == "flavor small" {
			flavorMicro += ch.CostMicro
		}
	}
	if len(rep.Groups) != 1 || rep.Groups[0].Key != "m1" || computeMS == 0 || flavorMicro != computeMS*1000 || rep.Total.InstanceSeconds != computeMS/1000 || rep.Currency != "EUR" {
		t.Fatalf("usage %+v; the history says %d ms in compute states: want a flavor charge of %d", rep, computeMS, computeMS*1000)
	}
	csv := must(t, root, "", "usage", "show", "--from", start, "--by", "flavor", "-o", "csv")
	if !strings.HasPrefix(csv, "flavor,instance_hours,vcpu_hours,memory_gib_hours,storage_gib_hours,volume_gib_hours,snapshot_gib_hours,backup_gib_hours,cost_eur\nsmall,") {
		t.Errorf("csv:\n%s", csv)
	}

	// A volume is billed per GiB-hour of its size from create to the
	// removal of its file: at 3600/GiB-h, 1000 micro-units per GiB-ms.
	must(t, root, "", "price", "set", "--volume-per-gib-hour", "3600")
	must(t, root, "", "volume", "create", "d1", "--size", "2GiB")
	c := client.Socket(s.socket)
	volumeIs(t, c, "d1", "the volume made", 60*time.Second, func(v api.Volume) bool { return v.Status == api.VolumeAvailable })
	if out := must(t, root, "", "quota", "show"); !strings.Contains(out, "volume_gib") || !strings.Contains(out, "backup_gib") {
		t.Errorf("quota show:\n%s", out)
	}
	var qrows []struct {
		Resource    string
		Used, Limit int64
	}
	json.Unmarshal([]byte(must(t, root, "", "quota", "show", "-o", "json")), &qrows)
	for _, r := range qrows {
		if r.Resource == "volume_gib" && r.Used != 2 {
			t.Errorf("quota show: volume_gib used %d, want 2", r.Used)
		}
	}
	must(t, root, "", "volume", "delete", "d1")
	eventually(t, 60*time.Second, "the volume gone", func() (bool, string) {
		_, err := c.Volume(context.Background(), "default", "d1")
		return err != nil && strings.Contains(err.Error(), "not found"), fmt.Sprint(err)
	})
	if err := json.Unmarshal([]byte(must(t, root, "", "usage", "show", "--from", start, "-o", "json")), &rep); err != nil {
		t.Fatal(err)
	}
	var vol api.UsageLine
	for _, g := range rep.Groups {
		if g.Key == "volume:d1" {
			vol = g
		}
	}
	if gibMS := vol.VolumeGiBHours * 3.6e6; vol.CostMicro == 0 || math.Abs(float64(vol.CostMicro)-gibMS*1000) > 1 || len(vol.Charges) != 1 || vol.Charges[0].What != "volume storage" {
		t.Fatalf("volume usage %+v (%.0f GiB-ms)", vol, gibMS)
	}
	// The current month's report ends at now, cut to the second: once
	// that is past the instance's end, the whole run is in it.
	if end := hist[len(hist)-1].Time.Add(time.Second); time.Now().Before(end) {
		time.Sleep(time.Until(end))
	}
	month := time.Now().UTC().Format("2006-01")
	if out := must(t, root, "", "usage", "show", "--all-projects", "--month", month); !strings.Contains(out, "default") || !strings.Contains(out, "total") {
		t.Errorf("showback:\n%s", out)
	}
	var p api.Project
	json.Unmarshal([]byte(must(t, root, "", "project", "show", "default", "-o", "json")), &p)
	if p.BudgetMicro != 50_000_000 || p.MonthToDateMicro < flavorMicro {
		t.Errorf("project show: budget %d, month to date %d", p.BudgetMicro, p.MonthToDateMicro)
	}
	if r := kumo(t, root, "", "usage", "show", "--from", "2030-01-01"); r.code != 1 || !strings.Contains(r.err, "to (") && !strings.Contains(r.err, "from (") {
		t.Errorf("a future range: exit %d %s", r.code, r.err)
	}
	if r := kumo(t, root, "", "flavor", "set", "small", "--price-per-hour", "-1"); r.code != 2 {
		t.Errorf("a negative price: exit %d %s", r.code, r.err)
	}
}
