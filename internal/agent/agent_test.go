package agent_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/kumocloud/kumo/api"
	"github.com/kumocloud/kumo/client"
	"github.com/kumocloud/kumo/internal/agent"
	"github.com/kumocloud/kumo/internal/driver"
	"github.com/kumocloud/kumo/internal/driver/sim"
	"github.com/kumocloud/kumo/internal/identity"
	"github.com/kumocloud/kumo/internal/server"
	"github.com/kumocloud/kumo/internal/store/memstore"
)

// cloud is a real server on an in-memory store, served over HTTPS on
// loopback in this process, with a logged-in cloud admin.
type cloud struct {
	t     testing.TB
	url   string
	fp    string
	admin *client.Client
}

func newCloud(t testing.TB) *cloud {
	t.Helper()
	return newCloudWith(t, func(*server.Config) {})
}

// newCloudWith is newCloud with its server's configuration changed by set.
func newCloudWith(t testing.TB, set func(*server.Config)) *cloud {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	opts := identity.DefaultOptions()
	opts.BcryptCost = bcrypt.MinCost
	ctx, cancel := context.WithCancel(context.Background())
	cfg := server.Config{DataDir: t.TempDir(), Listen: addr, HostGrace: 2 * time.Second, Identity: opts}
	set(&cfg)
	srv, err := server.NewWithStore(ctx, cfg, memstore.New())
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan struct{})
	go func() { srv.Serve(ctx); close(served) }()
	t.Cleanup(func() { cancel(); <-served })
	c := &cloud{t: t, url: "https://" + addr, fp: srv.CAFingerprint()}
	anon, err := client.Remote(c.url, "", c.fp)
	if err != nil {
		t.Fatal(err)
	}
	var tok api.Token
	waitFor(t, "the server to answer", func() bool {
		tok, err = anon.Login(ctx, api.TokensPost{Username: identity.AdminUser, Password: srv.AdminPassword})
		return err == nil
	})
	c.admin = anon.WithToken(tok.Secret)
	return c
}

// waitFor waits (generously: the machine may be busy) for evidence.
func waitFor(t testing.TB, what string, ok func() bool) {
	t.Helper()
	until(t, 60*time.Second, what, ok)
}

// until polls cond until it holds, failing after d.
func until(tb testing.TB, d time.Duration, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// cutTransport fails every request while cut is set: the network between
// the agent and the server is down. It counts complete-list polls and the
// instances' usage reports sent, and keeps the largest heartbeat and
// usage request.
type cutTransport struct {
	next        http.RoundTripper
	cut         atomic.Bool
	fullLists   atomic.Int64
	maxBeat     atomic.Int64
	maxUsage    atomic.Int64
	usageSeen   sync.Map // instance id -> true
	usageCounts atomic.Int64
	usageSent   atomic.Int64
}

func (c *cutTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if c.cut.Load() {
		return nil, errors.New("network cut")
	}
	if strings.HasSuffix(r.URL.Path, "/assignments") && r.URL.Query().Get("since") == "0" {
		c.fullLists.Add(1)
	}
	if strings.HasSuffix(r.URL.Path, "/heartbeat") || strings.HasSuffix(r.URL.Path, "/usage") {
		body, _ := io.ReadAll(r.Body)
		r.Body = io.NopCloser(bytes.NewReader(body))
		if strings.HasSuffix(r.URL.Path, "/heartbeat") {
			keepMax(&c.maxBeat, int64(len(body)))
		} else {
			var u api.AgentUsage
			json.Unmarshal(body, &u)
			keepMax(&c.maxUsage, int64(len(u.Usage)))
			c.usageSent.Add(int64(len(u.Usage)))
			for _, x := range u.Usage {
				if _, seen := c.usageSeen.LoadOrStore(x.ID, true); !seen {
					c.usageCounts.Add(1)
				}
			}
		}
	}
	return c.next.RoundTrip(r)
}

func keepMax(v *atomic.Int64, n int64) {
	for {
		old := v.Load()
		if n <= old || v.CompareAndSwap(old, n) {
			return
		}
	}
}

// runningAgent is an agent run by a test, with its network link.
type runningAgent struct {
	link *cutTransport
	stop func()
}

// startAgent joins (or re-attaches, with the same state dir) an agent
// driving d and runs it until the test ends or stop is called.
func (c *cloud) startAgent(d driver.Driver, stateDir string, resync time.Duration) *runningAgent {
	c.t.Helper()
	return c.startAgentWith(d, stateDir, func(cfg *agent.Config) { cfg.ResyncEvery = resync })
}

// startAgentWith is startAgent with the agent's configuration changed by
// set.
func (c *cloud) startAgentWith(d driver.Driver, stateDir string, set func(*agent.Config)) *runningAgent {
	c.t.Helper()
	return c.startAgentAs("a1", d, stateDir, set)
}

// startAgentNamed is startAgent with the agent's name.
func (c *cloud) startAgentNamed(name string, d driver.Driver, stateDir string, resync time.Duration) *runningAgent {
	c.t.Helper()
	return c.startAgentAs(name, d, stateDir, func(cfg *agent.Config) { cfg.ResyncEvery = resync })
}

// startAgentAs is startAgentWith with the agent's name.
func (c *cloud) startAgentAs(name string, d driver.Driver, stateDir string, set func(*agent.Config)) *runningAgent {
	c.t.Helper()
	ctx := context.Background()
	jt, err := c.admin.CreateJoinToken(ctx, api.JoinTokensPost{})
	if err != nil {
		c.t.Fatal(err)
	}
	link := &cutTransport{}
	conn := agent.NewConn(agent.ConnConfig{Server: c.url, JoinToken: jt.Token, Name: name, StateDir: stateDir,
		WrapTransport: func(rt http.RoundTripper) http.RoundTripper { link.next = rt; return link }})
	actx, cancel := context.WithCancel(ctx)
	cfg := agent.Config{Conn: conn, Driver: d, HeartbeatEvery: 200 * time.Millisecond, UsageEvery: 200 * time.Millisecond}
	set(&cfg)
	a, err := agent.New(actx, cfg)
	if err != nil {
		cancel()
		c.t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { a.Run(actx); close(done) }()
	var once sync.Once
	stop := func() { once.Do(func() { cancel(); <-done }) }
	c.t.Cleanup(stop)
	return &runningAgent{link: link, stop: stop}
}

func (c *cloud) instance(name string) api.Instance {
	c.t.Helper()
	in, err := c.admin.Instance(context.Background(), "default", name)
	if err != nil {
		c.t.Fatal(err)
	}
	return in
}

func (c *cloud) create(name string) {
	c.t.Helper()
	if _, err := c.admin.CreateInstance(context.Background(), "default", api.InstancesPost{Name: name, Type: api.TypeVM, Flavor: "tiny", Image: "x"}); err != nil {
		c.t.Fatal(err)
	}
}

func (c *cloud) waitState(name string, state api.State) api.Instance {
	c.t.Helper()
	var in api.Instance
	waitFor(c.t, name+" "+string(state), func() bool { in = c.instance(name); return in.State == state })
	return in
}

func (c *cloud) action(name string, action api.Action) {
	c.t.Helper()
	if _, err := c.admin.InstanceAction(context.Background(), "default", name, action); err != nil {
		c.t.Fatal(err)
	}
}

func simDriver(t *testing.T, hosts int, dir string) *sim.Driver {
	t.Helper()
	d, err := sim.New(context.Background(), driver.Common{StateDir: dir}, sim.Config{Hosts: hosts})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// TestSweepsWhatTheServerForgotWhileCutOff: an instance terminated while
// its host was cut off is stopped and cleaned up when the host returns -
// by the agent that kept running, not only by a restarted one.
func TestSweepsWhatTheServerForgotWhileCutOff(t *testing.T) {
	c := newCloud(t)
	d := simDriver(t, 1, t.TempDir())
	ag := c.startAgent(d, t.TempDir(), time.Hour) // no periodic resync: the cut alone must do it
	c.create("doomed")
	c.create("kept")
	doomed := c.waitState("doomed", api.StateRunning)
	c.waitState("kept", api.StateRunning)

	ag.link.cut.Store(true)
	c.waitState("doomed", api.StateUnknown)
	c.action("doomed", "terminate") // UNKNOWN -> DONE: the host is silent
	ag.link.cut.Store(false)

	waitFor(t, "the agent to stop and clean up the terminated instance", func() bool {
		_, err := d.Status(context.Background(), doomed.ID)
		return errors.Is(err, driver.ErrNotFound)
	})
	if in := c.waitState("kept", api.StateRunning); in.Host == "" {
		t.Fatalf("kept lost its host: %+v", in)
	}
}

// TestResyncNeverTouchesWorkInFlight: complete lists every 50 ms while
// instances boot slowly: each ends RUNNING, started exactly once.
func TestResyncNeverTouchesWorkInFlight(t *testing.T) {
	c := newCloud(t)
	d := &countingDriver{Driver: simDriverWithBoot(t, 300*time.Millisecond)}
	ag := c.startAgent(d, t.TempDir(), 50*time.Millisecond)
	names := []string{"i0", "i1", "i2", "i3", "i4", "i5"}
	for _, n := range names {
		c.create(n)
	}
	for _, n := range names {
		c.waitState(n, api.StateRunning)
	}
	// Many complete lists, each reconciled, after they all run.
	seen := ag.link.fullLists.Load()
	waitFor(t, "more complete lists", func() bool { return ag.link.fullLists.Load() >= seen+5 })
	for _, n := range names {
		in := c.instance(n)
		if in.State != api.StateRunning {
			t.Errorf("%s is %s (%s)", n, in.State, in.Reason)
		}
		if got := d.starts(in.ID); got != 1 {
			t.Errorf("%s was started %d times, want once", n, got)
		}
		if _, err := d.Status(context.Background(), in.ID); err != nil {
			t.Errorf("%s: the driver lost it: %v", n, err)
		}
	}
}

func simDriverWithBoot(t *testing.T, boot time.Duration) *sim.Driver {
	d, err := sim.New(context.Background(), driver.Common{StateDir: t.TempDir()}, sim.Config{Hosts: 1, BootDelay: boot})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// countingDriver counts Start calls per instance.
type countingDriver struct {
	*sim.Driver
	mu sync.Mutex
	n  map[string]int
}

func (c *countingDriver) Start(ctx context.Context, s driver.Spec) error {
	c.mu.Lock()
	if c.n == nil {
		c.n = map[string]int{}
	}
	c.n[s.ID]++
	c.mu.Unlock()
	return c.Driver.Start(ctx, s)
}

func (c *countingDriver) starts(id string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n[id]
}

// TestRestartReadopts: a restarted agent finds its running instances and
// leaves them running.
func TestRestartReadopts(t *testing.T) {
	c := newCloud(t)
	dir, state := t.TempDir(), t.TempDir()
	d := simDriver(t, 1, dir)
	ag := c.startAgent(d, state, time.Hour)
	c.create("web")
	in := c.waitState("web", api.StateRunning)
	ag.stop()
	if err := d.Sync(); err != nil {
		t.Fatal(err)
	}
	d2 := simDriver(t, 1, dir) // what a new agent process finds on disk
	ag2 := c.startAgent(d2, state, 50*time.Millisecond)
	seen := ag2.link.fullLists.Load()
	waitFor(t, "complete lists after the restart", func() bool { return ag2.link.fullLists.Load() >= seen+3 })
	st, err := d2.Status(context.Background(), in.ID)
	if err != nil || st.State != driver.Running {
		t.Fatalf("after the restart the driver says %+v, %v", st, err)
	}
	hist, err := c.admin.InstanceHistory(context.Background(), "default", "web")
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range hist {
		if h.To == api.StateFailed || h.To == api.StateUnknown {
			t.Fatalf("the restart showed in the history: %+v", hist)
		}
	}
}

// TestStoppedInstanceKeepsItsHome: a STOPPED instance keeps the host that
// holds its saved state; started again it goes there or nowhere (explain
// says why), and the agent's sweeps leave its saved state alone.
func TestStoppedInstanceKeepsItsHome(t *testing.T) {
	c := newCloud(t)
	ctx := context.Background()
	d := simDriver(t, 2, t.TempDir())
	ag := c.startAgent(d, t.TempDir(), 50*time.Millisecond)
	c.create("db")
	in := c.waitState("db", api.StateRunning)
	home := in.Host
	c.action("db", "stop")
	in = c.waitState("db", api.StateStopped)
	if in.Home != home || in.Host != "" {
		t.Fatalf("a STOPPED instance shows host %q home %q; want no host and home %q", in.Host, in.Home, home)
	}
	seen := ag.link.fullLists.Load()
	waitFor(t, "complete lists while it is stopped", func() bool { return ag.link.fullLists.Load() >= seen+3 })
	if st, err := d.Status(ctx, in.ID); err != nil || st.State != driver.Saved {
		t.Fatalf("the saved state on its home: %+v, %v", st, err)
	}

	no := false
	if _, err := c.admin.PatchHost(ctx, home, api.HostPatch{Enabled: &no}); err != nil {
		t.Fatal(err)
	}
	c.action("db", "start")
	waitFor(t, "the scheduler to say why it waits", func() bool {
		in = c.instance("db")
		return in.State == api.StatePending && strings.Contains(in.Reason, "not its home")
	})
	ex, err := c.admin.Explain(ctx, "default", "db")
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range ex.Hosts {
		if h.Feasible {
			t.Fatalf("a host other than its disabled home can take it: %+v", ex)
		}
		if h.Host != home && !strings.Contains(h.Reason, "not its home") {
			t.Fatalf("host %s: %q, want 'not its home'", h.Host, h.Reason)
		}
	}
	yes := true
	if _, err := c.admin.PatchHost(ctx, home, api.HostPatch{Enabled: &yes}); err != nil {
		t.Fatal(err)
	}
	in = c.waitState("db", api.StateRunning)
	if in.Host != home {
		t.Fatalf("started on %s, not its home %s", in.Host, home)
	}
}

// chattyDriver runs every command as one that prints size bytes and exits 7.
type chattyDriver struct {
	*sim.Driver
	size int
}

// Capabilities declares exec besides the simulator's own.
func (c *chattyDriver) Capabilities() driver.Capabilities {
	caps := c.Driver.Capabilities()
	for typ := range caps {
		caps[typ] |= driver.CapExec
	}
	return caps
}

func (c *chattyDriver) Exec(ctx context.Context, id string, cmd []string, out io.Writer) (int, error) {
	line := bytes.Repeat([]byte("0123456789abcdef"), 4096)
	for n := 0; n < c.size; n += len(line) {
		if _, err := out.Write(line); err != nil {
			return 0, err
		}
	}
	return 7, nil
}

// peakHeap samples the heap until stop is called and returns its peak.
func peakHeap() (stop func() uint64) {
	var peak atomic.Uint64
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		var ms runtime.MemStats
		for {
			runtime.ReadMemStats(&ms)
			if ms.HeapAlloc > peak.Load() {
				peak.Store(ms.HeapAlloc)
			}
			select {
			case <-done:
				return
			case <-time.After(5 * time.Millisecond):
			}
		}
	}()
	return func() uint64 { close(done); <-finished; return peak.Load() }
}

// TestExecOutputIsStreamed: a command printing 128 MiB passes through the
// agent and the server (both in this process) without either holding it:
// the JSON answer keeps the first MiB and says it was cut; the stream
// gives all of it; the heap never grows by anything like the output.
func TestExecOutputIsStreamed(t *testing.T) {
	const size = 128 << 20
	c := newCloud(t)
	ctx := context.Background()
	c.startAgent(&chattyDriver{Driver: simDriver(t, 1, t.TempDir()), size: size}, t.TempDir(), time.Hour)
	c.create("talker")
	c.waitState("talker", api.StateRunning)

	runtime.GC()
	var base runtime.MemStats
	runtime.ReadMemStats(&base)
	stop := peakHeap()
	res, err := c.admin.InstanceExec(ctx, "default", "talker", api.InstanceExecPost{Command: []string{"yes"}})
	peak := stop()
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Output) != 1<<20 || !res.Truncated || res.ExitCode != 7 {
		t.Fatalf("JSON exec: %d bytes, truncated %v, exit %d", len(res.Output), res.Truncated, res.ExitCode)
	}
	if grew := int64(peak) - int64(base.HeapAlloc); grew > 48<<20 {
		t.Fatalf("the heap grew by %d MiB for %d MiB of output: something held it whole", grew>>20, size>>20)
	}

	runtime.GC()
	runtime.ReadMemStats(&base)
	stop = peakHeap()
	var n countingWriter
	code, err := c.admin.InstanceExecStream(ctx, "default", "talker", api.InstanceExecPost{Command: []string{"yes"}}, &n)
	peak = stop()
	if err != nil || code != 7 || int(n) < size {
		t.Fatalf("streamed exec: %d bytes, exit %d, %v", n, code, err)
	}
	if grew := int64(peak) - int64(base.HeapAlloc); grew > 48<<20 {
		t.Fatalf("the heap grew by %d MiB streaming %d MiB", grew>>20, size>>20)
	}
}

type countingWriter int64

func (c *countingWriter) Write(p []byte) (int, error) {
	*c += countingWriter(len(p))
	return len(p), nil
}

// TestHeartbeatsDoNotGrowWithInstances: with 1,500 instances running, a
// heartbeat is as small as with none, and usage travels apart in batches
// no larger than the agent's bound - every instance's usage reaching the
// server.
func TestHeartbeatsDoNotGrowWithInstances(t *testing.T) {
	const n = 1500
	c := newCloud(t)
	ctx := context.Background()
	if _, err := c.admin.SetQuota(ctx, "default", map[string]int64{"instances": n, "vcpus": -1, "memory_mib": -1, "disk_gib": -1}); err != nil {
		t.Fatal(err)
	}
	ag := c.startAgent(simDriver(t, 10, t.TempDir()), t.TempDir(), time.Hour)
	emptyBeat := int64(0)
	waitFor(t, "a heartbeat", func() bool { emptyBeat = ag.link.maxBeat.Load(); return emptyBeat > 0 })
	for i := 0; i < n; i++ {
		if _, err := c.admin.CreateInstance(ctx, "default", api.InstancesPost{Name: fmt.Sprintf("i%04d", i), Type: api.TypeVM, Flavor: "tiny", Image: "x"}); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "the usage of every instance", func() bool { return ag.link.usageCounts.Load() >= n })
	if beat := ag.link.maxBeat.Load(); beat > emptyBeat+64 {
		t.Errorf("a heartbeat grew from %d to %d bytes with %d instances", emptyBeat, beat, n)
	}
	if m := ag.link.maxUsage.Load(); m > 500 {
		t.Errorf("a usage request carried %d instances (the batch is 500)", m)
	}
}

// notReadySim is a sim driver whose guests named in never (by instance
// name) never say they are ready.
type notReadySim struct {
	*sim.Driver
	never map[string]bool
	mu    sync.Mutex
	held  map[string]bool // their ids
}

func (n *notReadySim) Prepare(ctx context.Context, s driver.Spec) error {
	if n.never[s.Name] {
		n.mu.Lock()
		n.held[s.ID] = true
		n.mu.Unlock()
	}
	return n.Driver.Prepare(ctx, s)
}

func (n *notReadySim) Status(ctx context.Context, id string) (driver.Status, error) {
	st, err := n.Driver.Status(ctx, id)
	n.mu.Lock()
	defer n.mu.Unlock()
	st.Ready = st.Ready && !n.held[id]
	return st, err
}

func (n *notReadySim) Recover(ctx context.Context) ([]driver.Status, error) {
	sts, err := n.Driver.Recover(ctx)
	n.mu.Lock()
	defer n.mu.Unlock()
	for i := range sts {
		sts[i].Ready = sts[i].Ready && !n.held[sts[i].ID]
	}
	return sts, err
}

// readyInstances creates n instances i00... and waits until each runs
// and the server shows it ready.
func (c *cloud) readyInstances(n int) {
	c.t.Helper()
	ctx := context.Background()
	if _, err := c.admin.SetQuota(ctx, "default", map[string]int64{"instances": int64(n) + 10, "vcpus": -1, "memory_mib": -1, "disk_gib": -1}); err != nil {
		c.t.Fatal(err)
	}
	for i := 0; i < n; i++ {
		c.create(fmt.Sprintf("i%02d", i))
	}
	waitFor(c.t, fmt.Sprintf("%d instances running and ready", n), func() bool {
		ins, err := c.admin.Instances(ctx, "default", false, client.ListOptions{})
		ready := 0
		for _, in := range ins {
			if in.State == api.StateRunning && in.Ready {
				ready++
			}
		}
		return err == nil && ready >= n
	})
}

// TestReadinessRoundSendsOnlyChanges: a guest getting ready sends its
// own usage at once, not that of every instance the agent runs; the
// server keeps what it had of the others. (No complete round comes in
// the test: UsageEvery is an hour. A guest that never gets ready keeps
// the monitor's quick checks going, as a boot storm does.)
func TestReadinessRoundSendsOnlyChanges(t *testing.T) {
	const n = 40
	c := newCloud(t)
	ctx := context.Background()
	if _, err := c.admin.SetQuota(ctx, "default", map[string]int64{"instances": n + 10, "vcpus": -1, "memory_mib": -1, "disk_gib": -1}); err != nil {
		t.Fatal(err)
	}
	d := &notReadySim{Driver: simDriver(t, 2, t.TempDir()), never: map[string]bool{"slow": true}, held: map[string]bool{}}
	ag := c.startAgentWith(d, t.TempDir(), func(cfg *agent.Config) { cfg.ResyncEvery, cfg.UsageEvery = time.Hour, time.Hour })
	c.create("slow")
	slow := c.waitState("slow", api.StateRunning)
	// The others getting ready send slow's usage too, new then.
	c.readyInstances(n)
	waitFor(t, "slow's usage sent", func() bool { _, ok := ag.link.usageSeen.Load(slow.ID); return ok })

	before := ag.link.usageSent.Load()
	c.create("late")
	waitFor(t, "late ready", func() bool { return c.instance("late").Ready })
	if sent := ag.link.usageSent.Load() - before; sent != 1 {
		t.Errorf("late getting ready sent the usage of %d instances, want its own only", sent)
	}
	ins, err := c.admin.Instances(ctx, "default", false, client.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, in := range ins {
		if in.Ready != (in.Name != "slow") || in.Usage == nil {
			t.Errorf("%s: ready %v, usage %+v", in.Name, in.Ready, in.Usage)
		}
	}
}

// TestUsageRoundIsComplete: every UsageEvery the agent sends the usage of
// every instance it runs, though none changed.
func TestUsageRoundIsComplete(t *testing.T) {
	const n = 30
	c := newCloud(t)
	ag := c.startAgentWith(simDriver(t, 2, t.TempDir()), t.TempDir(), func(cfg *agent.Config) { cfg.ResyncEvery = time.Hour })
	c.readyInstances(n)
	ag.link.maxUsage.Store(0)
	waitFor(t, "a usage request of every instance", func() bool { return ag.link.maxUsage.Load() >= n })
}
