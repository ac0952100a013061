package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kumocloud/kumo/api"
	"github.com/kumocloud/kumo/client"
)

// TestKill9DuringProvision kills the agent and then the server with
// SIGKILL while 300 instances are being created, restarts them, and checks
// that every instance ends RUNNING exactly once: the simulated hosts run
// each exactly once, where the cloud says; host allocations equal the sum
// of their instances' flavors; the project's usage is exact.
func TestKill9DuringProvision(t *testing.T) {
	s := startServer(t, "--host-grace", "5s")
	root := []string{"KUMO_SOCKET=" + s.socket}
	ag := startAgent(t, s, joinToken(t, root), 50)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	sock := client.Socket(s.socket)
	unl := map[string]int64{"instances": -1, "vcpus": -1, "memory_mib": -1, "disk_gib": -1}
	if _, err := sock.CreateProject(ctx, api.ProjectsPost{Name: "bench", Quota: unl}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "50 hosts", func() (bool, string) {
		hs, err := sock.Hosts(ctx)
		return err == nil && len(hs) == 50, fmt.Sprint(len(hs))
	})
	admin := s.remote(t, s.adminToken(t))

	const n = 300
	var done atomic.Int32
	var wg sync.WaitGroup
	next := atomic.Int32{}
	for w := 0; w < 16; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				name := fmt.Sprintf("vm-%03d", i)
				for ctx.Err() == nil {
					_, err := admin.CreateInstance(client.WithIdempotencyKey(ctx, name), "bench", api.InstancesPost{Name: name, Type: "vm", Flavor: "tiny", Image: "x"})
					if err == nil || client.StatusOf(err) == 409 {
						break
					}
					time.Sleep(100 * time.Millisecond) // the server is down: retry
				}
				done.Add(1)
			}
		}()
	}
	waitDone := func(k int32) {
		for done.Load() < k && ctx.Err() == nil {
			time.Sleep(5 * time.Millisecond)
		}
	}
	waitDone(80)
	ag.kill9()
	time.Sleep(300 * time.Millisecond)
	ag.start()
	waitDone(160)
	s.kill9()
	s.start()
	wg.Wait()

	sock = client.Socket(s.socket)
	defer func() {
		if t.Failed() {
			t.Logf("agent output:\n%.3000s\nserver output:\n%.3000s", ag.out.String(), s.out.String())
		}
	}()
	var ins []api.Instance
	eventually(t, 90*time.Second, "all instances RUNNING", func() (bool, string) {
		var err error
		ins, err = sock.Instances(ctx, "bench", false, client.ListOptions{})
		if err != nil {
			return false, err.Error()
		}
		states := map[string]int{}
		for _, in := range ins {
			states[in.State]++
		}
		return len(ins) == n && states[api.StateRunning] == n, fmt.Sprint(len(ins), states)
	})
	// The agent's driver runs each exactly once, on the host the cloud says.
	ag.stop() // flushes nothing new; the file is written before every report
	b, err := os.ReadFile(filepath.Join(ag.stateDir, "sim", "sim-instances.json"))
	if err != nil {
		t.Fatal(err)
	}
	var simInsts map[string]struct {
		Spec  struct{ Host string }
		State string
	}
	if err := json.Unmarshal(b, &simInsts); err != nil {
		t.Fatal(err)
	}
	alloc := map[string]int64{}
	for _, in := range ins {
		si, ok := simInsts[in.ID]
		if !ok || si.Spec.Host != in.Host || si.State != "running" {
			t.Errorf("%s: cloud says RUNNING on %s; driver has %+v (present %v)", in.Name, in.Host, si, ok)
		}
		alloc[in.Host] += in.Size.MemoryMiB
	}
	if len(simInsts) != n {
		t.Errorf("the driver runs %d instances, want %d", len(simInsts), n)
	}
	hs, err := sock.Hosts(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range hs {
		if h.Allocated.MemoryMiB != alloc[h.Name] {
			t.Errorf("host %s allocated %d MiB, its instances' flavors add up to %d", h.Name, h.Allocated.MemoryMiB, alloc[h.Name])
		}
	}
	p, err := sock.Project(ctx, "bench")
	if err != nil {
		t.Fatal(err)
	}
	if p.Usage.Instances != n || p.Usage.VCPUs != n || p.Usage.MemoryMiB != n*512 {
		t.Errorf("usage %+v, want %d instances of flavor tiny", p.Usage, n)
	}
}
