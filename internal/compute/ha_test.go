package compute

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kumocloud/kumo/api"
	"github.com/kumocloud/kumo/internal/flavor"
	"github.com/kumocloud/kumo/internal/hosts"
	"github.com/kumocloud/kumo/internal/quota"
	"github.com/kumocloud/kumo/internal/store"
	"github.com/kumocloud/kumo/internal/store/memstore"
	"github.com/kumocloud/kumo/internal/volumes"
)

// haEnv is a store with two hosts, each its own agent's (so each agent's
// assignments are its host's), and a clock the test moves (ahead of the
// real one, which stamps heartbeats).
type haEnv struct {
	t      *testing.T
	ctx    context.Context
	ms     *memstore.Store
	hs     *hosts.Service
	agents map[string]*hosts.AgentPrincipal
	mu     sync.Mutex
	clock  time.Time
}

func (env *haEnv) now() time.Time {
	env.mu.Lock()
	defer env.mu.Unlock()
	return env.clock
}

func (env *haEnv) advance(d time.Duration) {
	env.mu.Lock()
	env.clock = env.clock.Add(d)
	env.mu.Unlock()
}

func newHAEnv(t *testing.T, ctx context.Context, fenceGrace int64) *haEnv {
	ms := seeded(t, 10)
	env := &haEnv{t: t, ctx: ctx, ms: ms, hs: hosts.New(ms, strings.Repeat("a", 64), 50*time.Millisecond),
		agents: map[string]*hosts.AgentPrincipal{}, clock: time.Now().Add(time.Hour).UTC()}
	if _, err := flavor.Create(ctx, ms, api.FlavorsPost{Name: "ha-small", VCPUs: 1, MemoryMiB: 512, DiskGiB: 1, HA: true}); err != nil {
		t.Fatal(err)
	}
	for _, h := range []string{"h1", "h2"} {
		jt, _ := env.hs.CreateJoinToken(ctx, api.JoinTokensPost{})
		ag, err := env.hs.Join(ctx, api.AgentsPost{JoinToken: jt.Token, Name: "agent-" + h, Driver: "sim", Hosts: []api.HostSpec{{Name: h, Kinds: []string{"vm"},
			Capacity: api.Size{VCPUs: 8, MemoryMiB: 8192, DiskGiB: 100}, FenceGraceSeconds: fenceGrace}}})
		if err != nil {
			t.Fatal(err)
		}
		if env.agents[h], err = env.hs.Authenticate(ctx, ag.Credential); err != nil {
			t.Fatal(err)
		}
	}
	return env
}

// service starts a compute service (its cache only: the test runs each
// controller's round itself) as a server process would.
func (env *haEnv) service(timeout time.Duration) *Service {
	svc := New(env.ms, env.hs, "", slog.New(slog.DiscardHandler), Deps{Clock: env.now, FenceTimeout: timeout})
	svc.ha.started = env.now()
	go svc.cache.run(env.ctx, env.ms, svc.log)
	svc.Ready(env.ctx)
	return svc
}

// sync waits until the service's cache has every write made so far.
func (env *haEnv) sync(svc *Service) {
	rev, _ := env.ms.Revision(env.ctx)
	svc.cache.waitRev(env.ctx, rev)
	env.syncHosts(svc)
}

func (env *haEnv) get(svc *Service, name string) (api.Instance, []api.HistoryRecord) {
	in, hist, err := svc.Get(env.ctx, "p", name)
	if err != nil {
		env.t.Fatal(err)
	}
	return in, hist
}

// run reports the agent of each placed instance taking it to RUNNING.
func (env *haEnv) run(svc *Service, names ...string) {
	for _, n := range names {
		in, _ := env.get(svc, n)
		res, err := svc.Report(env.ctx, env.agents[in.Host], []api.InstanceReport{
			{ID: in.ID, Host: in.Host, From: api.StateProlog, To: api.StateBoot},
			{ID: in.ID, Host: in.Host, From: api.StateBoot, To: api.StateRunning}})
		if err != nil || res.Applied != 1 {
			env.t.Fatalf("report %s: %+v %v", n, res, err)
		}
	}
	env.sync(svc)
}

// loseH1 keeps h2 beating until h1 is past the grace, and lets the node
// controller take h1 OFFLINE.
func (env *haEnv) loseH1(svc *Service) {
	deadline := time.Now().Add(10 * time.Second)
	for {
		env.hs.Heartbeat([]string{"h2"}, api.Heartbeat{})
		if alive, _ := env.hs.Alive("h1"); !alive {
			break
		}
		if time.Now().After(deadline) {
			env.t.Fatal("h1 never went silent")
		}
		time.Sleep(5 * time.Millisecond)
	}
	svc.checkNodes(env.ctx)
	env.sync(svc)
	if h, _ := env.hs.Get(env.ctx, "h1"); h.State != api.HostOffline {
		env.t.Fatalf("h1 is %s", h.State)
	}
}

// An HA instance of a lost host is recreated on another host once the
// fence timeout has passed since the loss and since the server started -
// once, even across a server restart - and a non-HA one stays UNKNOWN;
// the returning host does not get it back.
func TestHARecreatesAfterFenceTimeout(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	env := newHAEnv(t, ctx, 10)
	svc := env.service(30 * time.Second)
	for _, req := range []api.InstancesPost{
		{Name: "a", Type: "vm", Flavor: "small", Image: "img", HA: true},
		{Name: "b", Type: "vm", Flavor: "small", Image: "img"},
		{Name: "c", Type: "vm", Flavor: "ha-small", Image: "img"},
	} {
		if _, err := svc.Create(ctx, "p", req); err != nil {
			t.Fatal(err)
		}
	}
	if in, _ := env.get(svc, "c"); !in.HA {
		t.Fatal("the flavor's HA did not make the instance HA")
	}
	// Only h1 is alive: everything goes there.
	env.hs.Heartbeat([]string{"h1"}, api.Heartbeat{})
	env.sync(svc)
	if n, _, _ := svc.scheduleOnce(ctx); n != 3 {
		t.Fatalf("placed %d", n)
	}
	env.sync(svc)
	env.run(svc, "a", "b", "c")
	// a has a port (as if made at create): it keeps it, address and all.
	nic := api.InstanceNIC{Network: "app", Port: "a-eth0", PortID: "p1", MAC: "02:00:0a:00:00:05", IP: "10.0.0.5", VNI: 7, CIDR: "10.0.0.0/24"}
	r, rev, _ := svc.get(ctx, "p", "a")
	r.NICs = []api.InstanceNIC{nic}
	if _, err := svc.write(ctx, &r, rev); err != nil {
		t.Fatal(err)
	}
	env.sync(svc)
	env.loseH1(svc)
	for _, n := range []string{"a", "b", "c"} {
		if in, _ := env.get(svc, n); in.State != api.StateUnknown || in.Host != "h1" {
			t.Fatalf("%s: %s on %s", n, in.State, in.Host)
		}
	}

	// Before the timeout: nothing.
	env.advance(20 * time.Second)
	if n := svc.checkHA(ctx); n != 0 {
		t.Fatalf("recreated %d before the fence timeout", n)
	}
	// The server restarts 20 s after the loss: the new process waits a
	// full timeout from its start (the agent may have reached the old one).
	svc2 := env.service(30 * time.Second)
	env.advance(15 * time.Second) // 35 s after the loss, 15 s after the restart
	env.hs.Heartbeat([]string{"h2"}, api.Heartbeat{})
	if n := svc2.checkHA(ctx); n != 0 {
		t.Fatalf("recreated %d within a fence timeout of the server's start", n)
	}
	env.advance(16 * time.Second)
	env.hs.Heartbeat([]string{"h2"}, api.Heartbeat{})
	if n := svc2.checkHA(ctx); n != 2 {
		t.Fatalf("recreated %d, want a and c", n)
	}
	env.sync(svc2)
	// Never twice, by this process or the old one.
	if n := svc2.checkHA(ctx) + svc.checkHA(ctx); n != 0 {
		t.Fatalf("recreated %d more", n)
	}
	in, hist := env.get(svc2, "a")
	last := hist[len(hist)-1]
	if in.State != api.StatePending || in.Host != "" || in.Home != "" || last.Actor != "ha" || !strings.Contains(last.Reason, "host h1 lost") {
		t.Fatalf("a after the decision: %s host %q home %q, history %+v", in.State, in.Host, in.Home, last)
	}
	if p := in.Placements[len(in.Placements)-1]; p.Host != "h1" || p.End.IsZero() {
		t.Fatalf("the placement on h1 is not closed: %+v", p)
	}
	if in, _ := env.get(svc2, "b"); in.State != api.StateUnknown {
		t.Fatalf("the non-HA instance is %s", in.State)
	}
	if n, _, _ := svc2.scheduleOnce(ctx); n != 2 {
		t.Fatalf("placed %d again", n)
	}
	env.sync(svc2)
	for _, n := range []string{"a", "c"} {
		if in, _ := env.get(svc2, n); in.State != api.StateProlog || in.Host != "h2" {
			t.Fatalf("%s: %s on %s", n, in.State, in.Host)
		}
	}
	if in, _ := env.get(svc2, "a"); len(in.NICs) != 1 || in.NICs[0].IP != nic.IP || in.NICs[0].MAC != nic.MAC {
		t.Fatalf("a's ports after the move: %+v", in.NICs)
	}
	if nics, _, _ := svc2.PlacedNICs(); len(nics) != 1 || nics[0].Host != "h2" {
		t.Fatalf("a's port is placed on %+v", nics)
	}
	alloc, counts := svc2.HostUsage()
	if counts["h1"] != 1 || counts["h2"] != 2 || alloc["h1"].MemoryMiB != 2048 || alloc["h2"].MemoryMiB != 2048+512 {
		t.Fatalf("allocations: %v %v", alloc, counts)
	}

	// h1 returns: its agent's word on a is refused, and its complete
	// assignment list no longer names a or c (its sweep removes them).
	env.hs.Heartbeat([]string{"h1", "h2"}, api.Heartbeat{})
	a, _ := env.get(svc2, "a")
	res, err := svc2.Report(ctx, env.agents["h1"], []api.InstanceReport{{ID: a.ID, Host: "h1", From: api.StateUnknown, To: api.StatePoweroff, Reason: api.SelfFenced}})
	if err != nil || res.Applied != 0 {
		t.Fatalf("the old host's report was applied: %+v %v", res, err)
	}
	list, err := svc2.Assignments(ctx, env.agents["h1"], 0, 0)
	if err != nil || len(list.Items) != 1 || list.Items[0].Name != "b" {
		t.Fatalf("h1's assignments: %+v %v", list.Items, err)
	}
	if in, _ := env.get(svc2, "a"); in.Host != "h2" {
		t.Fatalf("a moved back to %s", in.Host)
	}
}

// A host that returns before the fence timeout gets its self-fenced HA
// instances started again, by the HA controller, on the same host.
func TestHARestartsFencedInstanceOnReturn(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	env := newHAEnv(t, ctx, 10)
	svc := env.service(30 * time.Second)
	if _, err := svc.Create(ctx, "p", api.InstancesPost{Name: "a", Type: "vm", Flavor: "small", Image: "img", HA: true}); err != nil {
		t.Fatal(err)
	}
	env.hs.Heartbeat([]string{"h1"}, api.Heartbeat{})
	env.sync(svc)
	svc.scheduleOnce(ctx)
	env.sync(svc)
	env.run(svc, "a")
	env.loseH1(svc)
	env.advance(10 * time.Second)
	// Back before the timeout: the agent says it fenced a.
	a, _ := env.get(svc, "a")
	res, err := svc.Report(ctx, env.agents["h1"], []api.InstanceReport{{ID: a.ID, Host: "h1", From: api.StateUnknown, To: api.StatePoweroff, Reason: api.SelfFenced + " at noon"}})
	if err != nil || res.Applied != 1 {
		t.Fatalf("report: %+v %v", res, err)
	}
	env.sync(svc)
	if n := svc.checkHA(ctx); n != 1 {
		t.Fatalf("restarted %d", n)
	}
	env.sync(svc)
	in, hist := env.get(svc, "a")
	if in.State != api.StateBoot || in.Action != api.ActionStart || in.Host != "h1" || hist[len(hist)-1].Actor != "ha" {
		t.Fatalf("a: %s/%s on %s, %+v", in.State, in.Action, in.Host, hist[len(hist)-1])
	}
	// A user's poweroff is not undone.
	res, _ = svc.Report(ctx, env.agents["h1"], []api.InstanceReport{{ID: in.ID, Host: "h1", From: api.StateBoot, To: api.StateRunning}})
	env.sync(svc)
	if _, err := svc.Action(ctx, "p", "a", api.ActionPoweroff); err != nil {
		t.Fatal(err)
	}
	in, _ = env.get(svc, "a")
	svc.Report(ctx, env.agents["h1"], []api.InstanceReport{{ID: in.ID, Host: "h1", From: api.StateShutdown, To: api.StatePoweroff}})
	env.sync(svc)
	if n := svc.checkHA(ctx); n != 0 {
		t.Fatalf("a user's poweroff was undone (%d)", n)
	}
}

// The decision itself: what is never recreated, and when.
func TestHADecide(t *testing.T) {
	lost := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	rec := func(from api.State) *record {
		return &record{History: []api.HistoryRecord{{To: api.StatePending}, {From: from, To: api.StateUnknown, Time: lost}}}
	}
	host := api.Host{Meta: api.Meta{Name: "h"}, FenceGraceSeconds: 20}
	noFence := host
	noFence.FenceGraceSeconds = 0
	late := host
	late.FenceGraceSeconds = 58
	for _, tc := range []struct {
		name     string
		r        *record
		h        api.Host
		alive    bool
		seen     time.Time
		at       time.Duration
		want     haVerdict
		contains string
	}{
		{"running, past the timeout", rec(api.StateRunning), host, false, time.Time{}, 61 * time.Second, haRecreate, "host h lost"},
		{"running, before the timeout", rec(api.StateRunning), host, false, time.Time{}, 59 * time.Second, haWait, ""},
		{"a heartbeat after the loss restarts the count", rec(api.StateRunning), host, false, lost.Add(10 * time.Second), 61 * time.Second, haWait, ""},
		{"alive again", rec(api.StateRunning), host, true, time.Time{}, time.Hour, haWait, ""},
		{"powered off when lost", rec(api.StatePoweroff), host, false, time.Time{}, time.Hour, haRefuse, "it was POWEROFF"},
		{"an agent that does not fence", rec(api.StateRunning), noFence, false, time.Time{}, time.Hour, haRefuse, "does not self-fence"},
		{"a fence grace too long", rec(api.StateRunning), late, false, time.Time{}, time.Hour, haRefuse, "too close"},
	} {
		v, why := haDecide(tc.r, tc.h, tc.alive, tc.seen, time.Time{}, lost.Add(tc.at), time.Minute, nil)
		if v != tc.want || !strings.Contains(why, tc.contains) {
			t.Errorf("%s: %v %q, want %v with %q", tc.name, v, why, tc.want, tc.contains)
		}
	}

	// Volumes: shared ones follow the instance, a local one keeps it.
	booting := func(from api.State) *record {
		r := rec(from)
		r.BootVolume, r.Boot = "root", &bootVolume{ID: "v-root"}
		return r
	}
	sharedRoot := volumes.HAVolume{Name: "root", Device: "vda"}
	sharedData := volumes.HAVolume{Name: "data", Device: "vdb"}
	localData := volumes.HAVolume{Name: "data", Local: true, Host: "h", Device: "vdb"}
	localRoot := volumes.HAVolume{Name: "root", Local: true, Host: "h", Device: "vda"}
	for _, tc := range []struct {
		name     string
		r        *record
		vols     []volumes.HAVolume
		at       time.Duration
		want     haVerdict
		contains string
	}{
		{"a shared data volume", rec(api.StateRunning), []volumes.HAVolume{sharedData}, 61 * time.Second, haRecreate, "with its shared volumes data (vdb)"},
		{"a shared boot volume", booting(api.StateRunning), []volumes.HAVolume{sharedRoot}, 61 * time.Second, haRecreate, "booting from its boot volume root (shared pool)"},
		{"shared boot and data volumes", booting(api.StateRunning), []volumes.HAVolume{sharedData, sharedRoot}, 61 * time.Second, haRecreate, "booting from its boot volume root, with its shared volumes data (vdb), root (vda)"},
		{"a shared volume, before the timeout", rec(api.StateRunning), []volumes.HAVolume{sharedData}, 59 * time.Second, haWait, ""},
		{"a local data volume", rec(api.StateRunning), []volumes.HAVolume{sharedRoot, localData}, 61 * time.Second, haRefuse, "volume data (vdb) lives on lost host h (local pool)"},
		{"a local boot volume", booting(api.StateRunning), []volumes.HAVolume{localRoot}, 61 * time.Second, haRefuse, "volume root (vda) lives on lost host h (local pool)"},
		{"a local volume, before the timeout", rec(api.StateRunning), []volumes.HAVolume{localData}, 59 * time.Second, haWait, ""},
		{"a local volume of a powered-off instance", rec(api.StatePoweroff), []volumes.HAVolume{localData}, time.Hour, haRefuse, "it was POWEROFF"},
	} {
		v, why := haDecide(tc.r, host, false, time.Time{}, time.Time{}, lost.Add(tc.at), time.Minute, tc.vols)
		if v != tc.want || !strings.Contains(why, tc.contains) {
			t.Errorf("%s: %v %q, want %v with %q", tc.name, v, why, tc.want, tc.contains)
		}
	}
}

// haLive is compute as the volume service's agent side reads it (as the
// server wires it).
type haLive struct{ svc *Service }

func (l haLive) LiveInstance(ctx context.Context, project, name string) (string, string, string, error) {
	in, _, err := l.svc.Get(ctx, project, name)
	return in.ID, in.Type, l.svc.HostOf(project, name), err
}

func (l haLive) Rehoming(_ context.Context, project, name string) bool {
	return l.svc.Rehoming(project, name)
}

// An HA instance whose volumes are all in a shared pool is recreated with
// them, their attachments handed over in the decision's transaction; one
// with a volume of the local pool stays UNKNOWN, and its history says
// why, once.
func TestHAWithVolumes(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	env := newHAEnv(t, ctx, 10)
	if _, err := env.ms.Txn(ctx, nil, []store.Op{quota.InitOp("p", api.ResourceCounts{Instances: 10, VCPUs: -1, MemoryMiB: -1, DiskGiB: -1, Volumes: -1, VolumeGiB: -1})}); err != nil {
		t.Fatal(err)
	}
	svc := env.service(30 * time.Second)
	vs := volumes.New(env.ms, nil, svc, env.hs, env.now)
	svc.SetVolumes(vs)
	live := haLive{svc}
	if _, err := vs.CreatePool(ctx, api.StoragePoolsPost{Name: "nfs", Type: api.PoolSharedDir, Path: "/srv/nfs"}); err != nil {
		t.Fatal(err)
	}
	for _, req := range []api.VolumesPost{{Name: "s-root", Pool: "nfs"}, {Name: "s-data", Pool: "nfs"}, {Name: "l-data"}} {
		req.SizeGiB, req.Host = 1, "h1"
		v, err := vs.Create(ctx, "p", req, true)
		if err != nil {
			t.Fatal(err)
		}
		if err := vs.Report(ctx, map[string]bool{"h1": true}, live, []api.VolumeReport{{ID: v.ID, Status: "ready", SizeGiB: 1}}); err != nil {
			t.Fatal(err)
		}
	}
	for _, req := range []api.InstancesPost{
		{Name: "s", Type: "vm", Flavor: "small", Image: "img", HA: true, BootVolume: "s-root"},
		{Name: "l", Type: "vm", Flavor: "small", Image: "img", HA: true},
	} {
		if _, err := svc.Create(ctx, "p", req); err != nil {
			t.Fatal(err)
		}
	}
	env.hs.Heartbeat([]string{"h1"}, api.Heartbeat{})
	env.sync(svc)
	if n, _, _ := svc.scheduleOnce(ctx); n != 2 {
		t.Fatalf("placed %d", n)
	}
	env.sync(svc)
	env.run(svc, "s", "l")
	for vol, inst := range map[string]string{"s-data": "s", "l-data": "l"} {
		if _, err := vs.Attach(ctx, "p", vol, api.VolumeAttach{Instance: inst, Device: "vdc"}); err != nil {
			t.Fatal(err)
		}
	}
	for _, name := range []string{"s-root", "s-data", "l-data"} {
		v, _ := vs.Get(ctx, "p", name)
		if err := vs.Report(ctx, map[string]bool{"h1": true}, live, []api.VolumeReport{{ID: v.ID, Status: "ready", SizeGiB: 1, AttachedTo: v.Attachment.InstanceID}}); err != nil {
			t.Fatal(err)
		}
	}
	env.loseH1(svc)
	if _, err := vs.Attach(ctx, "p", "s-data", api.VolumeAttach{Instance: "l"}); err == nil || !strings.Contains(err.Error(), "UNKNOWN") {
		t.Fatalf("an attach to an instance of a lost host: %v", err)
	}
	env.advance(31 * time.Second)
	env.hs.Heartbeat([]string{"h2"}, api.Heartbeat{})
	if n := svc.checkHA(ctx); n != 1 {
		t.Fatalf("recreated %d, want s only", n)
	}
	env.sync(svc)
	in, hist := env.get(svc, "s")
	if last := hist[len(hist)-1]; in.State != api.StatePending || !strings.Contains(last.Reason, "booting from its boot volume s-root, with its shared volumes s-data (vdc), s-root (vda)") {
		t.Fatalf("s after the decision: %s, %+v", in.State, last)
	}
	for _, name := range []string{"s-root", "s-data"} {
		if v, _ := vs.Get(ctx, "p", name); v.Attachment == nil || v.Attachment.Instance != "s" || v.Attachment.Attached {
			t.Fatalf("%s after the decision: %+v", name, v.Attachment)
		}
	}
	// Its new host's PROLOG waits for its data volume (and its boot volume).
	data, _ := vs.Get(ctx, "p", "s-data")
	if r, _, _ := svc.get(ctx, "p", "s"); len(r.NewVolumes) != 1 || r.NewVolumes[0] != data.ID || r.Boot == nil {
		t.Fatalf("s waits for %v (boot %+v)", r.NewVolumes, r.Boot)
	}
	notes := func() int {
		_, hist := env.get(svc, "l")
		n := 0
		for _, h := range hist {
			if h.Actor == "ha" && strings.Contains(h.Reason, "volume l-data (vdc) lives on lost host h1 (local pool)") {
				n++
			}
		}
		return n
	}
	if in, _ := env.get(svc, "l"); in.State != api.StateUnknown || in.Host != "h1" || notes() != 1 || !strings.Contains(in.Reason, "until host h1 returns") {
		t.Fatalf("l: %s on %s, reason %q, %d notes", in.State, in.Host, in.Reason, notes())
	}
	env.advance(time.Minute)
	if n := svc.checkHA(ctx); n != 0 {
		t.Fatalf("decided %d more", n)
	}
	env.sync(svc)
	if notes() != 1 {
		t.Fatalf("the refusal was recorded %d times", notes())
	}
	if v, _ := vs.Get(ctx, "p", "l-data"); v.Attachment == nil || !v.Attachment.Attached || v.Host != "h1" {
		t.Fatalf("the local volume: %+v", v)
	}

	// s is placed on h2, which attaches its volumes: h1 never lists them.
	if n, _, _ := svc.scheduleOnce(ctx); n != 1 {
		t.Fatalf("placed %d", n)
	}
	env.sync(svc)
	if in, _ := env.get(svc, "s"); in.Host != "h2" {
		t.Fatalf("s placed on %q", in.Host)
	}
	for hs, want := range map[string]int{"h1": 1, "h2": 2} {
		view, err := vs.AgentView(ctx, map[string]bool{hs: true}, live)
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, v := range view.Items {
			if v.Attach != nil {
				n++
			}
		}
		if n != want {
			t.Fatalf("%s's view attaches %d volumes, want %d: %+v", hs, n, want, view.Items)
		}
	}
	env.run(svc, "s")
	if r, _, _ := svc.get(ctx, "p", "s"); r.NewVolumes != nil {
		t.Fatalf("s still waits for %v once RUNNING", r.NewVolumes)
	}
}
