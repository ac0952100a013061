package e2e

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/kumocloud/kumo/api"
)

// TestConsolidateCLI: four sim hosts, one instance on each (striping);
// 'kumo cloud consolidate --dry-run' plans to empty three of them onto
// the fourth and moves nothing; applying says migration is not available
// in this server, with a non-zero exit, and moves nothing either.
func TestConsolidateCLI(t *testing.T) {
	s := startServer(t, "--scheduler-policy", "striping")
	root := []string{"KUMO_SOCKET=" + s.socket}
	startAgent(t, s, joinToken(t, root), 4)
	eventually(t, 30*time.Second, "4 hosts online", func() (bool, string) {
		out := must(t, root, "", "host", "list")
		return strings.Count(out, "ONLINE") == 4, out
	})
	for _, n := range []string{"c1", "c2", "c3", "c4"} {
		must(t, root, "", "instance", "create", n, "--type", "vm", "--flavor", "tiny", "--image", "x", "--wait")
	}
	hosts := map[string]bool{}
	for _, l := range lines(must(t, root, "", "instance", "list"))[1:] {
		hosts[strings.Fields(l)[3]] = true
	}
	if len(hosts) != 4 {
		t.Fatalf("striping used %d hosts:\n%s", len(hosts), must(t, root, "", "instance", "list"))
	}
	var plan api.Consolidation
	if err := json.Unmarshal([]byte(must(t, root, "", "cloud", "consolidate", "--dry-run", "-o", "json")), &plan); err != nil {
		t.Fatal(err)
	}
	if plan.HostsInUse != 4 || plan.HostsAfter != 1 || len(plan.Moves) != 3 || len(plan.Emptied) != 3 || plan.Applied {
		t.Fatalf("plan: %+v", plan)
	}
	table := must(t, root, "", "cloud", "consolidate", "--dry-run")
	if !strings.Contains(table, "hosts in use 4 -> 1") {
		t.Fatalf("the table does not sum up the plan:\n%s", table)
	}
	r := kumo(t, root, "", "cloud", "consolidate")
	if r.code == 0 || !strings.Contains(r.err, "migration") || !strings.Contains(r.err, "--dry-run") {
		t.Fatalf("apply without migration: exit %d\n%s%s", r.code, r.out, r.err)
	}
	after := map[string]bool{}
	for _, l := range lines(must(t, root, "", "instance", "list"))[1:] {
		after[strings.Fields(l)[3]] = true
	}
	if len(after) != 4 {
		t.Fatalf("something moved: %v", after)
	}
}
