package e2e

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/kumocloud/kumo/internal/cli"
)

// TestBenchProvision: the all-in-one server with its local sim agent, and
// 'kumo bench provision' against it (small, so the suite stays quick; the
// figures in docs/SPECIFICATION.md come from larger runs).
func TestBenchProvision(t *testing.T) {
	s := startServer(t, "--drivers", "sim", "--sim-hosts", "20")
	root := []string{"KUMO_SOCKET=" + s.socket}
	out := must(t, root, "", "bench", "provision", "--instances", "200", "--concurrency", "16", "--cleanup", "-o", "json")
	var res cli.BenchResult
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("bench output %q: %v", out, err)
	}
	if res.Running != 200 || res.Failed != 0 || res.Hosts != 20 || res.PerSecond <= 0 || res.P99ms < res.P50ms || res.ServerRSSMiB <= 0 {
		t.Fatalf("bench result %+v", res)
	}
	t.Logf("bench: %.0f instances/s, p50 %.0f ms, p99 %.0f ms, %.2f store transactions per instance", res.PerSecond, res.P50ms, res.P99ms, res.WritesPerInst)
	table := must(t, root, "", "bench", "provision", "--instances", "20", "--concurrency", "4")
	if !strings.Contains(table, "instances/s reaching RUNNING") {
		t.Errorf("bench table:\n%s", table)
	}
}
