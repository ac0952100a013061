package cli

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spf13/cobra"

	"github.com/kumocloud/kumo/api"
	"github.com/kumocloud/kumo/client"
)

// BenchResult is what 'kumo bench provision' measured.
type BenchResult struct {
	Instances     int     `json:"instances"`
	Concurrency   int     `json:"concurrency"`
	Running       int     `json:"running"`
	Failed        int     `json:"failed"`
	Seconds       float64 `json:"seconds"`
	PerSecond     float64 `json:"instances_per_second"`
	P50ms         float64 `json:"p50_ms"`
	P95ms         float64 `json:"p95_ms"`
	P99ms         float64 `json:"p99_ms"`
	WritesPerInst float64 `json:"store_writes_per_instance"`
	ServerRSSMiB  float64 `json:"server_rss_mib"`
	// Ready* are create-to-ready (the guest said it is up), with --ready.
	Ready      int     `json:"ready,omitempty"`
	ReadyP50ms float64 `json:"ready_p50_ms,omitempty"`
	ReadyP95ms float64 `json:"ready_p95_ms,omitempty"`
	Hosts      int     `json:"hosts"`
	Project    string  `json:"project"`
	// NamePrefix starts the names of this run's instances (and only
	// theirs: --cleanup terminates those, not the rest of --project).
	NamePrefix     string `json:"name_prefix"`
	CreateFailures int    `json:"create_failures"`
	// Retries are creates sent again (same Idempotency-Key) after the
	// server did not answer; Lost are creates it acknowledged that do
	// not exist (there should be none).
	Retries int `json:"retries"`
	Lost    int `json:"lost"`
}

func (a *app) benchCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "bench", Short: "Measure the cloud"}
	var n, conc int
	var typ, image, flv, project string
	var timeout time.Duration
	var cleanup, closed, ready bool
	prov := &cobra.Command{
		Use:   "provision",
		Short: "Create instances through the API and measure how fast they reach RUNNING",
		Long: `Create --instances instances at --concurrency through the API against whatever
hosts exist, and report throughput (instances/s reaching RUNNING), p50/p95/p99 of
create-to-RUNNING, the store writes per instance and the server's memory.
Without --project it makes a project with unlimited quota (cloud admin).`,
		Example: "  kumo bench provision --instances 10000 --concurrency 64 -o json",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			c, err := a.client()
			if err != nil {
				return err
			}
			if n < 1 || conc < 1 {
				return usagef("--instances and --concurrency must be at least 1")
			}
			if project == "" {
				b := make([]byte, 3)
				rand.Read(b)
				project = "bench-" + hex.EncodeToString(b)
				unl := map[string]int64{"instances": -1, "vcpus": -1, "memory_mib": -1, "disk_gib": -1}
				if _, err := c.CreateProject(ctx, api.ProjectsPost{Name: project, Description: "kumo bench provision", Quota: unl}); err != nil {
					return fmt.Errorf("making a bench project (needs cloud admin; or pass --project): %w", err)
				}
			}
			res, err := runBench(ctx, c, project, n, conc, typ, image, flv, timeout, closed, ready)
			if err == nil && ready && !closed {
				err = waitReady(ctx, c, project, &res, timeout)
			}
			if err != nil {
				if res.Running+res.Failed+res.Lost > 0 {
					return fmt.Errorf("%w (what exists: %d running, %d failed, %d lost; %d creates retried)", err, res.Running, res.Failed, res.Lost, res.Retries)
				}
				return err
			}
			if cleanup {
				terminateRun(ctx, c, project, res.NamePrefix, n, conc)
			}
			if a.output != "table" {
				return a.printObject(res)
			}
			fmt.Fprintf(a.stdout, "%d instances (%d running, %d failed) on %d hosts, concurrency %d, project %s\n", res.Instances, res.Running, res.Failed, res.Hosts, res.Concurrency, res.Project)
			if res.Retries > 0 || res.Lost > 0 {
				fmt.Fprintf(a.stdout, "retries       %d creates sent again after the server did not answer; %d acknowledged and lost\n", res.Retries, res.Lost)
			}
			fmt.Fprintf(a.stdout, "throughput    %.0f instances/s reaching RUNNING (%.2f s in all)\n", res.PerSecond, res.Seconds)
			fmt.Fprintf(a.stdout, "create->RUNNING p50 %.0f ms, p95 %.0f ms, p99 %.0f ms\n", res.P50ms, res.P95ms, res.P99ms)
			if ready {
				fmt.Fprintf(a.stdout, "create->ready   p50 %.0f ms, p95 %.0f ms (%d ready)\n", res.ReadyP50ms, res.ReadyP95ms, res.Ready)
			}
			fmt.Fprintf(a.stdout, "store writes  %.2f per instance\n", res.WritesPerInst)
			if res.ServerRSSMiB > 0 {
				fmt.Fprintf(a.stdout, "server RSS    %.0f MiB\n", res.ServerRSSMiB)
			}
			return nil
		},
	}
	f := prov.Flags()
	f.IntVar(&n, "instances", 1000, "how many instances")
	f.IntVar(&conc, "concurrency", 64, "creates in flight at once")
	f.StringVar(&typ, "type", "container", "vm or container")
	f.StringVar(&image, "image", "bench", "image")
	f.StringVar(&flv, "flavor", "tiny", "flavor")
	f.StringVar(&project, "project", "", "project to use (default: a new one with unlimited quota)")
	f.DurationVar(&timeout, "timeout", 10*time.Minute, "give up waiting after this long")
	f.BoolVar(&cleanup, "cleanup", false, "terminate the instances this run made afterwards (other instances of --project stay)")
	f.BoolVar(&ready, "ready", false, "also wait for each guest to say it is ready and report create-to-ready (readiness reaches the API with heartbeats, checked every 250 ms while a guest boots); with --closed-loop each worker waits for its guest")
	f.BoolVar(&closed, "closed-loop", false, "each worker waits for its instance to be RUNNING before the next create (latency without queueing)")
	cmd.AddCommand(prov)
	return cmd
}

// waitReady polls the bench's instances until each is ready, and records
// create-to-ready from their creation times.
func waitReady(ctx context.Context, c *client.Client, project string, res *BenchResult, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	readyAt := map[string]time.Time{}
	created := map[string]time.Time{}
	for time.Now().Before(deadline) {
		ins, err := c.Instances(ctx, project, false, client.ListOptions{})
		if err != nil {
			return err
		}
		now := time.Now()
		for _, in := range ins {
			created[in.Name] = in.CreatedAt
			if _, seen := readyAt[in.Name]; in.Ready && !seen {
				readyAt[in.Name] = now
			}
		}
		if len(readyAt) >= res.Running && len(readyAt) > 0 {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	var lat []float64
	for name, t := range readyAt {
		lat = append(lat, float64(t.Sub(created[name]).Microseconds())/1000)
	}
	sort.Float64s(lat)
	res.Ready = len(lat)
	res.ReadyP50ms, res.ReadyP95ms = percentile(lat, 0.50), percentile(lat, 0.95)
	if res.Ready < res.Running {
		return fmt.Errorf("only %d of %d running instances said they were ready within %s", res.Ready, res.Running, timeout)
	}
	return nil
}

// percentile of sorted values (0 for none).
func percentile(sorted []float64, p float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	return sorted[int(math.Min(float64(len(sorted)-1), math.Ceil(p*float64(len(sorted)))-1))]
}

func runBench(ctx context.Context, c *client.Client, project string, n, conc int, typ, image, flv string, timeout time.Duration, closed, ready bool) (BenchResult, error) {
	res := BenchResult{Instances: n, Concurrency: conc, Project: project}
	info, err := c.ServerInfo(ctx)
	if err != nil {
		return res, err
	}
	if hs, err := c.Hosts(ctx); err == nil {
		res.Hosts = len(hs)
	}
	rb := make([]byte, 3)
	rand.Read(rb)
	res.NamePrefix = "b" + hex.EncodeToString(rb) + "-"
	b := &bench{c: c, project: project, prefix: res.NamePrefix, n: n,
		created: map[string]time.Time{}, running: map[string]time.Time{}, failed: map[string]bool{}, acked: map[string]bool{}, lastEvent: info.EventsAfter, changed: make(chan struct{}, 1)}
	wctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	go b.follow(wctx)
	start := time.Now()
	var next atomic.Int64
	var readyMu sync.Mutex
	var readyLat []float64 // closed loop with ready: create-to-ready
	var wg sync.WaitGroup
	for w := 0; w < conc; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= n || wctx.Err() != nil {
					return
				}
				name := benchName(b.prefix, i)
				t := time.Now()
				err := b.create(wctx, name, api.InstancesPost{Name: name, Type: typ, Flavor: flv, Image: image})
				for closed && err == nil && wctx.Err() == nil && !b.settled(name) {
					time.Sleep(2 * time.Millisecond)
				}
				// With --ready, a closed loop also waits for the guest: the
				// next create then does not compete with this boot.
				for closed && ready && err == nil && wctx.Err() == nil {
					in, gerr := c.Instance(wctx, project, name)
					if gerr == nil && in.Ready {
						readyMu.Lock()
						readyLat = append(readyLat, float64(time.Since(t).Microseconds())/1000)
						readyMu.Unlock()
					}
					if gerr != nil || in.Ready || in.State != api.StateRunning {
						break
					}
					time.Sleep(20 * time.Millisecond)
				}
			}
		}()
	}
	wg.Wait()
	// Wait until every acknowledged create has settled; the list is
	// asked now and then too, so events lost with a server that died do
	// not leave the count short: each of the unsettled when they are few,
	// else a list. Listing a large project is work for the
	// server: after a list that took d, the next waits 4d more, so the
	// bench's own lists never take more than a fifth of the server's time
	// (at 100,000 instances lists every 2 s of quiet kept a loaded server
	// listing and slowed the run they measured several times over).
	var listed time.Time
	var listTook time.Duration
	for wctx.Err() == nil && !b.allSettled() {
		select {
		case <-b.changed:
		case <-time.After(2 * time.Second):
			if few, more := b.unsettled(200); !more {
				b.fromGets(wctx, few)
			} else if time.Since(listed) >= 4*listTook {
				t := time.Now()
				b.fromList(wctx)
				listed, listTook = time.Now(), time.Since(t)
			}
		case <-wctx.Done():
		}
	}
	end := time.Now()
	// The truth is what exists: the counts come from the list.
	// Listing what exists reads every instance of the project, not only
	// this run's n: a minute per 10,000 on a loaded machine, and --timeout
	// at least (3,000 closed-loop creates in a project of 100,000 had
	// their figures lost with a one-minute list).
	lctx, lcancel := context.WithTimeout(context.WithoutCancel(ctx), max(time.Minute, timeout, time.Duration(n/10000)*time.Minute))
	defer lcancel()
	listErr := b.fromList(lctx)
	b.mu.Lock()
	defer b.mu.Unlock()
	var lat []float64
	last := start
	for name, t := range b.running {
		if c0, ok := b.created[name]; ok && !t.IsZero() {
			lat = append(lat, float64(t.Sub(c0).Microseconds())/1000)
			if t.After(last) {
				last = t
			}
		}
	}
	sort.Float64s(lat)
	pct := func(p float64) float64 { return percentile(lat, p) }
	res.Running, res.Failed, res.CreateFailures, res.Retries, res.Lost = len(b.running), len(b.failed), b.createFailures, b.retries, b.lost
	res.Seconds = last.Sub(start).Seconds()
	if len(b.running) < n {
		res.Seconds = end.Sub(start).Seconds()
	}
	if res.Seconds > 0 {
		res.PerSecond = float64(res.Running) / res.Seconds
	}
	res.P50ms, res.P95ms, res.P99ms = pct(0.50), pct(0.95), pct(0.99)
	if closed && ready {
		sort.Float64s(readyLat)
		res.Ready, res.ReadyP50ms, res.ReadyP95ms = len(readyLat), percentile(readyLat, 0.5), percentile(readyLat, 0.95)
	}
	if after, err := c.ServerInfo(lctx); err == nil {
		res.WritesPerInst = float64(after.StoreRevision-info.StoreRevision) / float64(n)
	}
	if m, err := c.Metrics(lctx); err == nil {
		for _, line := range strings.Split(m, "\n") {
			if v, ok := strings.CutPrefix(line, "process_resident_memory_bytes "); ok {
				f, _ := strconv.ParseFloat(strings.TrimSpace(v), 64)
				res.ServerRSSMiB = f / (1 << 20)
			}
		}
	}
	switch {
	case listErr != nil:
		return res, fmt.Errorf("listing what exists: %w", listErr)
	case b.lost > 0:
		return res, fmt.Errorf("%d acknowledged creates do not exist", b.lost)
	case res.Running < n:
		return res, fmt.Errorf("only %d of %d instances reached RUNNING within %s (%d failed)", res.Running, n, timeout, res.Failed)
	}
	return res, nil
}

// benchName is the name of a run's i-th instance.
func benchName(prefix string, i int) string { return prefix + strconv.Itoa(i) }

// terminateRun terminates the instances one bench run made: the n names
// it gave them (prefix and index), not what a listing of --project finds
// - the project may hold other instances (the cloud an earlier run
// filled, the user's own), and listing a 100,000-instance project to
// find 3,000 took seconds. A name whose create failed answers 404,
// ignored like any other failure here.
func terminateRun(ctx context.Context, c *client.Client, project, prefix string, n, conc int) {
	ch := make(chan string)
	var wg sync.WaitGroup
	for w := 0; w < conc; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for name := range ch {
				c.InstanceAction(ctx, project, name, "terminate")
			}
		}()
	}
	for i := range n {
		ch <- benchName(prefix, i)
	}
	close(ch)
	wg.Wait()
}
