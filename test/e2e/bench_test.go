package e2e

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/kumocloud/kumo/api"
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

	// --cleanup in a --project that holds more than the run: only the
	// run's own instances go (it once terminated the whole project - the
	// 100,000 instances a scale test had filled it with).
	var first, second cli.BenchResult
	benchJSON(t, root, &first, "--instances", "10", "--concurrency", "4")
	benchJSON(t, root, &second, "--project", first.Project, "--instances", "10", "--concurrency", "4", "--cleanup")
	if second.NamePrefix == "" || second.NamePrefix == first.NamePrefix {
		t.Fatalf("name prefixes %q and %q", first.NamePrefix, second.NamePrefix)
	}
	var ins api.List[api.Instance]
	if err := json.Unmarshal([]byte(must(t, root, "", "instance", "list", "-p", first.Project, "--all", "-o", "json")), &ins); err != nil {
		t.Fatal(err)
	}
	// Each name once: the pages of one listing are one picture, even for
	// an instance reaching DONE (live, then archived) while it is read.
	kept, terminated := 0, map[string]bool{}
	for _, in := range ins.Items {
		switch {
		case strings.HasPrefix(in.Name, first.NamePrefix) && in.State == api.StateRunning:
			kept++
		case strings.HasPrefix(in.Name, second.NamePrefix) && in.State != api.StateRunning:
			if terminated[in.Name] {
				t.Errorf("%s listed twice", in.Name)
			}
			terminated[in.Name] = true
		default:
			t.Errorf("after the second run's cleanup: %s is %s", in.Name, in.State)
		}
	}
	// --all lists the DONE ones too: each of the second run's ten must
	// be there, terminated or on its way.
	if kept != 10 || len(terminated) != 10 {
		t.Errorf("%d of the first run's 10 instances still RUNNING, %d of the second's terminating", kept, len(terminated))
	}
}

func benchJSON(t *testing.T, env []string, res *cli.BenchResult, args ...string) {
	t.Helper()
	out := must(t, env, "", append([]string{"bench", "provision", "-o", "json"}, args...)...)
	if err := json.Unmarshal([]byte(out), res); err != nil {
		t.Fatalf("bench output %q: %v", out, err)
	}
	if res.Running != res.Instances {
		t.Fatalf("bench result %+v", res)
	}
}
