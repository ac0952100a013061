package e2e

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/kumocloud/kumo/api"
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
	time.Sleep(2500 * time.Millisecond)
	must(t, root, "", "instance", "terminate", "m1", "--wait")

	var rep api.UsageReport
	if err := json.Unmarshal([]byte(must(t, root, "", "usage", "show", "--from", start, "-o", "json")), &rep); err != nil {
		t.Fatal(err)
	}
	// At 3600/h a second costs 1.000000: about 2.5 s of RUNNING.
	if len(rep.Groups) != 1 || rep.Groups[0].Key != "m1" || rep.Total.CostMicro < 1_000_000 || rep.Total.CostMicro > 5_000_000 || rep.Currency != "EUR" {
		t.Fatalf("usage: %+v", rep)
	}
	csv := must(t, root, "", "usage", "show", "--from", start, "--by", "flavor", "-o", "csv")
	if !strings.HasPrefix(csv, "flavor,instance_hours,vcpu_hours,memory_gib_hours,storage_gib_hours,cost_eur\nsmall,") {
		t.Errorf("csv:\n%s", csv)
	}
	month := time.Now().UTC().Format("2006-01")
	if out := must(t, root, "", "usage", "show", "--all-projects", "--month", month); !strings.Contains(out, "default") || !strings.Contains(out, "total") {
		t.Errorf("showback:\n%s", out)
	}
	var p api.Project
	json.Unmarshal([]byte(must(t, root, "", "project", "show", "default", "-o", "json")), &p)
	if p.BudgetMicro != 50_000_000 || p.MonthToDateMicro < 1_000_000 {
		t.Errorf("project show: budget %d, month to date %d", p.BudgetMicro, p.MonthToDateMicro)
	}
	if r := kumo(t, root, "", "usage", "show", "--from", "2030-01-01"); r.code != 1 || !strings.Contains(r.err, "to (") && !strings.Contains(r.err, "from (") {
		t.Errorf("a future range: exit %d %s", r.code, r.err)
	}
	if r := kumo(t, root, "", "flavor", "set", "small", "--price-per-hour", "-1"); r.code != 2 {
		t.Errorf("a negative price: exit %d %s", r.code, r.err)
	}
}
