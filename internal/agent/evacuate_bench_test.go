package agent_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kumocloud/kumo/api"
	"github.com/kumocloud/kumo/internal/driver/qemu"
	"github.com/kumocloud/kumo/internal/server"
)

// evacuateVMs is how many VMs BenchmarkEvacuateQemu moves.
const evacuateVMs = 10

// BenchmarkEvacuateQemu measures `kumo host evacuate` of a host running
// 10 idle tiny-vm guests (TCG, 1 vCPU, 128 MiB, booted to their shell)
// onto a second host: two agents with the qemu driver, every VM live
// (disk mirrored over NBD and memory pre-copied through the server's
// tunnel), two at a time (the default concurrency). Each iteration
// empties one host onto the other (the next goes back). Reported: the
// evacuation's wall time, and the median and slowest VM downtime as
// QEMU measured them (the "stop-and-copy done" history records).
//
//	go test -run '^$' -bench EvacuateQemu -benchtime 1x ./internal/agent
func BenchmarkEvacuateQemu(b *testing.B) {
	needQemu(b)
	// Ten TCG guests load the machine: heartbeats may come late.
	c := newCloudWith(b, func(cfg *server.Config) { cfg.HostGrace = 30 * time.Second })
	ctx := context.Background()
	c.uploadTinyVM()
	if _, err := c.admin.CreateFlavor(ctx, api.FlavorsPost{Name: "bench-128", VCPUs: 1, MemoryMiB: 128, DiskGiB: 1}); err != nil {
		b.Fatal(err)
	}
	hosts := []string{"evac-a", "evac-b"}
	drivers := map[string]*qemu.Driver{hosts[0]: c.qemuAgent(hosts[0])}
	names := make([]string, evacuateVMs)
	for i := range names {
		names[i] = fmt.Sprintf("evac%02d", i)
		if _, err := c.admin.CreateInstance(ctx, "default", api.InstancesPost{Name: names[i], Type: api.TypeVM, Flavor: "bench-128", Image: "tiny-vm"}); err != nil {
			b.Fatal(err)
		}
	}
	// Booted, not just started: TCG guests on a shared machine take a
	// while, so the wait is long (and no figure depends on it).
	until(b, 15*time.Minute, "every VM booted on "+hosts[0], func() bool {
		for _, n := range names {
			in := c.instance(n)
			if in.State != api.StateRunning {
				return false
			}
			if st, err := drivers[hosts[0]].Status(ctx, in.ID); err != nil || !st.Ready {
				return false
			}
		}
		return true
	})
	drivers[hosts[1]] = c.qemuAgent(hosts[1])
	until(b, time.Minute, hosts[1]+" online", func() bool {
		h, err := c.admin.Host(ctx, hosts[1])
		return err == nil && h.State == api.HostOnline
	})
	var walls []time.Duration
	var downs []int64
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		from, to := hosts[i%2], hosts[(i+1)%2]
		b.StopTimer()
		on := true
		if _, err := c.admin.PatchHost(ctx, to, api.HostPatch{Enabled: &on}); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		start := time.Now()
		op, err := c.admin.EvacuateHost(ctx, from, 0)
		if err != nil {
			b.Fatal(err)
		}
		wctx, cancel := context.WithTimeout(ctx, 30*time.Minute)
		op, err = c.admin.WaitOperation(wctx, op.ID)
		cancel()
		walls = append(walls, time.Since(start))
		b.StopTimer()
		if err != nil || op.Status != api.OpSucceeded {
			b.Fatalf("evacuation of %s: %v %+v", from, err, op)
		}
		for _, n := range names {
			if in := c.instance(n); in.Host != to || in.State != api.StateRunning {
				b.Fatalf("%s is %s on %s after the evacuation of %s", n, in.State, in.Host, from)
			}
			downs = append(downs, lastDowntime(b, c, n))
		}
		b.StartTimer()
	}
	b.StopTimer()
	slices.Sort(downs)
	var wall time.Duration
	for _, w := range walls {
		wall += w
	}
	b.ReportMetric(wall.Seconds()/float64(len(walls)), "s/evacuation")
	b.ReportMetric(float64(downs[len(downs)/2]), "ms-median-downtime")
	b.ReportMetric(float64(downs[len(downs)-1]), "ms-max-downtime")
	b.Logf("%d evacuation(s) of %d VMs: wall %v; downtimes (ms) %v", len(walls), evacuateVMs, walls, downs)
}

// lastDowntime is the downtime of the instance's last live migration, as
// its history records it.
func lastDowntime(b *testing.B, c *cloud, name string) int64 {
	h, err := c.admin.InstanceHistory(context.Background(), "default", name)
	if err != nil {
		b.Fatal(err)
	}
	for i := len(h) - 1; i >= 0; i-- {
		if j := strings.Index(h[i].Reason, "stop-and-copy done: downtime "); j >= 0 {
			var ms int64
			if _, err := fmt.Sscanf(h[i].Reason[j:], "stop-and-copy done: downtime %d ms", &ms); err == nil {
				return ms
			}
		}
	}
	b.Fatalf("%s's history has no downtime", name)
	return 0
}
