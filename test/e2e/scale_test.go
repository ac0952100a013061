package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/kumocloud/kumo/api"
	"github.com/kumocloud/kumo/client"
	"github.com/kumocloud/kumo/internal/cli"
)

// TestOneAgentRunsTwentyThousand: one agent whose hosts run 20,000
// simulated instances stays ONLINE throughout. At about 8,000 an agent's
// heartbeat (which carried every instance's usage) outgrew the server's
// 1 MiB request limit and was refused: its hosts went OFFLINE and the
// instances flapped RUNNING <-> UNKNOWN for ever. The test follows host
// events from before the first create, so a single OFFLINE moment fails
// it, however brief.
func TestOneAgentRunsTwentyThousand(t *testing.T) {
	if testing.Short() {
		t.Skip("20,000 instances: not in -short")
	}
	const n, hosts = 20000, 100
	s := startServer(t)
	root := []string{"KUMO_SOCKET=" + s.socket}
	a := &agentProc{t: t, stateDir: t.TempDir()}
	// 200 tiny instances (1 vCPU, 512 MiB) per host of 256 cores, 128 GiB.
	a.args = []string{"agent", "--server", s.url(), "--join-token", joinToken(t, root), "--driver", "sim",
		"--sim-hosts", fmt.Sprint(hosts), "--sim-cpus", "256", "--sim-memory", "131072",
		"--state-dir", a.stateDir, "--heartbeat", "500ms", "--name", "e2e-scale", "--log-level", "warn"}
	a.start()
	t.Cleanup(a.stop)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sock := client.Socket(s.socket)
	eventually(t, 30*time.Second, fmt.Sprint(hosts, " hosts ONLINE"), func() (bool, string) {
		hs, err := sock.Hosts(ctx)
		online := 0
		for _, h := range hs {
			if h.State == api.HostOnline {
				online++
			}
		}
		return err == nil && online == hosts, fmt.Sprint(online, err)
	})
	info, err := sock.ServerInfo(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var offline []string
	followed := make(chan error, 1)
	go func() {
		followed <- sock.Events(ctx, client.EventQuery{Types: []string{"host"}, Since: info.EventsAfter}, func(ev api.Event) error {
			var h api.Host
			if json.Unmarshal(ev.Object, &h) == nil && h.State != api.HostOnline {
				mu.Lock()
				offline = append(offline, fmt.Sprintf("%s %s at %s", h.Name, h.State, ev.Time.Format(time.RFC3339Nano)))
				mu.Unlock()
			}
			return nil
		})
	}()

	out := must(t, root, "", "bench", "provision", "--instances", fmt.Sprint(n), "--concurrency", "32", "--timeout", "5m", "-o", "json")
	var res cli.BenchResult
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("bench output %q: %v", out, err)
	}
	if res.Running != n || res.Failed != 0 || res.Lost != 0 {
		t.Errorf("bench: %d of %d RUNNING, %d failed, %d lost", res.Running, n, res.Failed, res.Lost)
	}
	// A last look after every usage batch has had time to travel: the
	// hosts are still ONLINE and the agent's heartbeats still answered.
	hs, err := sock.Hosts(ctx)
	if err != nil {
		t.Fatal(err)
	}
	running := 0
	for _, h := range hs {
		running += h.Instances
		if h.State != api.HostOnline {
			t.Errorf("host %s is %s", h.Name, h.State)
		}
	}
	select {
	case err := <-followed:
		t.Fatalf("the host event stream ended: %v", err)
	default:
	}
	mu.Lock()
	defer mu.Unlock()
	if len(offline) > 0 {
		t.Errorf("%d host state changes away from ONLINE, first: %s", len(offline), offline[0])
	}
	t.Logf("%d instances on one agent: %.0f/s, p99 %.0f ms, server RSS %.0f MiB; hosts report %d instances", n, res.PerSecond, res.P99ms, res.ServerRSSMiB, running)
}
