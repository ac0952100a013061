package compute

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kumocloud/kumo/api"
	"github.com/kumocloud/kumo/internal/errs"
	"github.com/kumocloud/kumo/internal/flavor"
	"github.com/kumocloud/kumo/internal/hosts"
	"github.com/kumocloud/kumo/internal/quota"
	"github.com/kumocloud/kumo/internal/store"
	"github.com/kumocloud/kumo/internal/store/etcdstore"
	"github.com/kumocloud/kumo/internal/store/memstore"
)

// docs/states.md shows exactly the action table.
func TestStatesDocMatchesTable(t *testing.T) {
	b, err := os.ReadFile("../../docs/states.md")
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)
	i, j := strings.Index(doc, "<!-- actions:begin -->\n"), strings.Index(doc, "<!-- actions:end -->")
	if i < 0 || j < 0 {
		t.Fatal("docs/states.md lacks the actions markers")
	}
	if got := doc[i+len("<!-- actions:begin -->\n") : j]; got != StatesDoc() {
		t.Fatalf("docs/states.md is out of date; the table is:\n%s", StatesDoc())
	}
}

func TestAgentTable(t *testing.T) {
	tests := []struct {
		from   api.State
		action api.Action
		to     api.State
		ok     bool
	}{
		{api.StateProlog, "", api.StateBoot, true},
		{api.StateBoot, "", api.StateRunning, true},
		{api.StateShutdown, api.ActionTerminate, api.StateEpilog, true},
		{api.StateShutdown, api.ActionPoweroff, api.StatePoweroff, true},
		{api.StateShutdown, api.ActionPoweroff, api.StateEpilog, false},
		{api.StateEpilog, api.ActionTerminate, api.StateDone, true},
		{api.StateRunning, "", api.StateDone, false},
		{api.StatePending, "", api.StateRunning, false},
		{api.StateBoot, "", api.StateFailed, true},
		{api.StateDone, "", api.StateFailed, false},
	}
	for _, tc := range tests {
		if got := agentMayReport(tc.from, tc.action, tc.to); got != tc.ok {
			t.Errorf("%s -(%s)-> %s: %v, want %v", tc.from, tc.action, tc.to, got, tc.ok)
		}
	}
}

// seeded is a store with the default flavors and project p, whose quota
// allows this many instances.
func seeded(t *testing.T, instances int64) *memstore.Store {
	s := memstore.New()
	ctx := context.Background()
	if _, err := s.Txn(ctx, nil, append(flavor.SeedOps(ctx), quota.InitOp("p", api.ResourceCounts{Instances: instances, VCPUs: -1, MemoryMiB: -1, DiskGiB: -1}))); err != nil {
		t.Fatal(err)
	}
	return s
}

func newService(t *testing.T) (*Service, store.Store) {
	s := seeded(t, 2)
	return New(s, hosts.New(s, strings.Repeat("a", 64), 0), "", slog.New(slog.DiscardHandler), Deps{}), s
}

func TestCreateActionsAndQuota(t *testing.T) {
	svc, s := newService(t)
	ctx := context.Background()
	req := api.InstancesPost{Name: "a", Type: "vm", Flavor: "small", Image: "x"}
	in, err := svc.Create(ctx, "p", req)
	if err != nil || in.State != api.StatePending || in.Size.MemoryMiB != 2048 || fmt.Sprint(in.Actions) != "[hold terminate]" {
		t.Fatalf("create: %+v %v", in, err)
	}
	if _, err := svc.Create(ctx, "p", req); !errors.Is(err, errs.ErrConflict) {
		t.Fatalf("same name: %v", err)
	}
	req.Name = "b"
	svc.Create(ctx, "p", req)
	req.Name = "c"
	if _, err := svc.Create(ctx, "p", req); !errors.Is(err, errs.ErrQuotaExceeded) {
		t.Fatalf("third instance with quota 2: %v", err)
	}
	for _, bad := range []api.InstancesPost{
		{Name: "d", Type: "vm", Flavor: "nope", Image: "x"},
		{Name: "d", Type: "vm", Flavor: "small", Image: "x", Requirements: "RACK ="},
		{Name: "D", Type: "vm", Flavor: "small", Image: "x"},
	} {
		if _, err := svc.Create(ctx, "p", bad); err == nil {
			t.Errorf("create %+v succeeded", bad)
		}
	}
	_, err = svc.Action(ctx, "p", "a", api.ActionResume)
	if !errors.Is(err, errs.ErrConflict) || !strings.Contains(err.Error(), "it is PENDING; allowed now: hold, terminate") {
		t.Fatalf("resume of a PENDING instance: %v", err)
	}
	if in, err := svc.Action(ctx, "p", "a", api.ActionHold); err != nil || in.State != api.StateHold {
		t.Fatalf("hold: %+v %v", in, err)
	}
	if in, err := svc.Action(ctx, "p", "a", api.ActionTerminate); err != nil || in.State != api.StateDone {
		t.Fatalf("terminate: %+v %v", in, err)
	}
	// DONE: archived, quota released, the name free again, history kept.
	q, _, _ := quota.Get(ctx, s, "p")
	if q.Usage.Instances != 1 || q.Usage.MemoryMiB != 2048 {
		t.Fatalf("usage after terminate: %+v", q.Usage)
	}
	got, hist, err := svc.Get(ctx, "p", "a")
	if err != nil || got.State != api.StateDone || len(hist) != 3 || hist[2].Actor == "" {
		t.Fatalf("archived: %+v %v %v", got, hist, err)
	}
	if _, err := svc.Action(ctx, "p", "a", api.ActionStart); !errors.Is(err, errs.ErrConflict) || !strings.Contains(err.Error(), "DONE") {
		t.Fatalf("action on a DONE instance: %v", err)
	}
	req.Name = "a"
	if _, err := svc.Create(ctx, "p", req); err != nil {
		t.Fatalf("reusing a DONE instance's name: %v", err)
	}
	if _, err := svc.Action(ctx, "p", "a", "explode"); !errors.Is(err, errs.ErrInvalid) {
		t.Fatalf("unknown action: %v", err)
	}
}

// An image's min flavor, kind and status are checked at create.
func TestImageChecksAtCreate(t *testing.T) {
	ctx := context.Background()
	images := map[string]api.Image{
		"big":     {Meta: api.Meta{Name: "big"}, Project: "owner", Kind: api.KindContainerRootfs, Status: api.ImageActive, MinFlavor: "medium", SHA256: "abc"},
		"disk":    {Meta: api.Meta{Name: "disk"}, Kind: api.KindVMDisk, Status: api.ImageActive},
		"pending": {Meta: api.Meta{Name: "pending"}, Kind: api.KindContainerRootfs, Status: api.ImageQueued},
	}
	st := seeded(t, 2)
	svc := New(st, hosts.New(st, strings.Repeat("a", 64), 0), "", slog.New(slog.DiscardHandler), Deps{Images: imagesFunc(func(ref string) (api.Image, error) {
		if img, ok := images[ref]; ok {
			return img, nil
		}
		if ref == "ambiguous" {
			return api.Image{}, errs.Conflict("image name %q is ambiguous", ref)
		}
		return api.Image{}, errs.NotFound("image %q not found", ref)
	})})
	for _, tc := range []struct {
		req  api.InstancesPost
		want error
	}{
		{api.InstancesPost{Name: "a", Type: "container", Flavor: "small", Image: "big"}, errs.ErrInvalid},
		{api.InstancesPost{Name: "b", Type: "container", Flavor: "disk-less", Image: "big"}, errs.ErrNotFound},
		{api.InstancesPost{Name: "c", Type: "container", Flavor: "small", Image: "disk"}, errs.ErrInvalid},
		{api.InstancesPost{Name: "d", Type: "container", Flavor: "small", Image: "pending"}, errs.ErrConflict},
		{api.InstancesPost{Name: "f", Type: "container", Flavor: "small", Image: "ambiguous"}, errs.ErrConflict},
	} {
		if _, err := svc.Create(ctx, "p", tc.req); !errors.Is(err, tc.want) {
			t.Errorf("%+v: %v, want %v", tc.req, err, tc.want)
		}
	}
	in, err := svc.Create(ctx, "p", api.InstancesPost{Name: "e", Type: "container", Flavor: "large", Image: "big"})
	if err != nil || in.ImageSHA256 != "abc" || in.Image != "owner/big" {
		t.Fatalf("create from an image: %+v %v", in, err)
	}
}

// createOnFirstList creates an instance the moment the cache's first
// listing of instances has been read: the write a list-then-watch loses
// if it watches from a revision read after the listing.
type createOnFirstList struct {
	store.Store
	once   sync.Once
	create func()
}

func (c *createOnFirstList) List(ctx context.Context, prefix string, page store.Page) (store.ListResult, error) {
	res, err := c.Store.List(ctx, prefix, page)
	if prefix == instancesPrefix {
		c.once.Do(c.create)
	}
	return res, err
}

// TestCacheSeesWriteBetweenListAndWatch: the instance cache (which the
// scheduler and the agents' assignments read) holds an instance created
// between its listing and its watch.
func TestCacheSeesWriteBetweenListAndWatch(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	ms := seeded(t, 5)
	var svc *Service
	racy := &createOnFirstList{Store: ms}
	racy.create = func() {
		if _, err := svc.Create(ctx, "p", api.InstancesPost{Name: "between", Type: "vm", Flavor: "small", Image: "x"}); err != nil {
			t.Error(err)
		}
	}
	svc = New(racy, hosts.New(ms, strings.Repeat("a", 64), 0), "", slog.New(slog.DiscardHandler), Deps{})
	rctx, stop := context.WithCancel(ctx)
	defer stop()
	go svc.cache.run(rctx, racy, svc.log)
	if err := svc.Ready(ctx); err != nil {
		t.Fatal(err)
	}
	rev, _ := ms.Revision(ctx)
	svc.cache.waitRev(ctx, rev)
	svc.cache.mu.RLock()
	_, ok := svc.cache.instances[instanceKey("p", "between")]
	svc.cache.mu.RUnlock()
	if !ok {
		t.Fatal("the instance created between the cache's listing and its watch is not in the cache")
	}
}

// gatedWatches holds back every watch event while its gate is shut: a
// cache that lags behind the store (events come late, never out of order).
type gatedWatches struct {
	store.Store
	mu   sync.Mutex
	shut bool
	open chan struct{} // closed when the gate opens
}

func (g *gatedWatches) setShut(shut bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if shut && !g.shut {
		g.open = make(chan struct{})
	}
	if !shut && g.shut {
		close(g.open)
	}
	g.shut = shut
}

func (g *gatedWatches) Watch(ctx context.Context, prefix string, from int64) <-chan store.WatchEvent {
	in := g.Store.Watch(ctx, prefix, from)
	out := make(chan store.WatchEvent)
	go func() {
		defer close(out)
		for ev := range in {
			g.mu.Lock()
			shut, open := g.shut, g.open
			g.mu.Unlock()
			if shut {
				select {
				case <-open:
				case <-ctx.Done():
					return
				}
			}
			select {
			case out <- ev:
			case <-ctx.Done():
				return
			}
		}
	}()
	return out
}

// TestCommitRechecksTheHost: a plan made on a cache that has not seen a
// placement on a host is not committed there; once the cache catches up,
// the instance is refused for want of room - the host is never
// overcommitted.
func TestCommitRechecksTheHost(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	ms := seeded(t, 5)
	hs := hosts.New(ms, strings.Repeat("a", 64), 0)
	jt, err := hs.CreateJoinToken(ctx, api.JoinTokensPost{})
	if err != nil {
		t.Fatal(err)
	}
	// Room for one small instance (2048 MiB), no overcommit.
	if _, err := hs.Join(ctx, api.AgentsPost{JoinToken: jt.Token, Name: "a", Driver: "sim", Hosts: []api.HostSpec{{Name: "h", Kinds: []string{"vm"}, Capacity: api.Size{VCPUs: 1, MemoryMiB: 2048, DiskGiB: 100}}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := hs.Patch(ctx, "h", api.HostPatch{Ratios: &api.Ratios{CPU: 1, Memory: 1, Disk: 1}}); err != nil {
		t.Fatal(err)
	}
	gated := &gatedWatches{Store: ms}
	svc := New(gated, hs, "", slog.New(slog.DiscardHandler), Deps{})
	go svc.cache.run(ctx, gated, svc.log)
	if err := svc.Ready(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := svc.Create(ctx, "p", api.InstancesPost{Name: "b", Type: "vm", Flavor: "small", Image: "x"}); err != nil {
		t.Fatal(err)
	}
	rev, _ := ms.Revision(ctx)
	svc.cache.waitRev(ctx, rev)

	// Another scheduler places "a" on h; this cache does not see it.
	gated.setShut(true)
	if _, err := svc.Create(ctx, "p", api.InstancesPost{Name: "a", Type: "vm", Flavor: "small", Image: "x"}); err != nil {
		t.Fatal(err)
	}
	a, arev, err := svc.get(ctx, "p", "a")
	if err != nil {
		t.Fatal(err)
	}
	a.transition(time.Now(), api.StateProlog, "h", "scheduler", "placed on h")
	if _, err := ms.Txn(ctx, []store.Cond{store.At(instanceKey("p", "a"), arev)}, []store.Op{
		store.PutJSON(instanceKey("p", "a"), a), store.PutJSON(placementKey("h"), placementMark{Last: a.ID}),
	}); err != nil {
		t.Fatal(err)
	}

	// This scheduler's cache still shows h empty and b PENDING.
	if n, _, behind := svc.scheduleOnce(ctx); n != 0 || behind == 0 {
		t.Fatalf("a stale cache placed %d instances (behind %d): the commit trusted it", n, behind)
	}
	gated.setShut(false)
	rev, _ = ms.Revision(ctx)
	if !svc.cache.waitRev(ctx, rev) {
		t.Fatal("the cache never caught up")
	}
	svc.scheduleOnce(ctx)
	in, _, err := svc.Get(ctx, "p", "b")
	if err != nil || in.State != api.StatePending || !strings.Contains(in.Reason, "insufficient") {
		t.Fatalf("b = %s (%s), %v; want PENDING for want of room", in.State, in.Reason, err)
	}
}

// TestNoPlacementOnAHostGoneMeanwhile: a host deleted after the cache saw
// it takes no placement (the instance would sit in PROLOG with no agent).
func TestNoPlacementOnAHostGoneMeanwhile(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	ms := seeded(t, 5)
	hs := hosts.New(ms, strings.Repeat("a", 64), 0)
	jt, _ := hs.CreateJoinToken(ctx, api.JoinTokensPost{})
	if _, err := hs.Join(ctx, api.AgentsPost{JoinToken: jt.Token, Name: "a", Driver: "sim", Hosts: []api.HostSpec{{Name: "h", Kinds: []string{"vm"}, Capacity: api.Size{VCPUs: 8, MemoryMiB: 8192, DiskGiB: 100}}}}); err != nil {
		t.Fatal(err)
	}
	gated := &gatedWatches{Store: ms}
	svc := New(gated, hs, "", slog.New(slog.DiscardHandler), Deps{})
	go svc.cache.run(ctx, gated, svc.log)
	svc.Ready(ctx)
	if _, err := svc.Create(ctx, "p", api.InstancesPost{Name: "b", Type: "vm", Flavor: "small", Image: "x"}); err != nil {
		t.Fatal(err)
	}
	rev, _ := ms.Revision(ctx)
	svc.cache.waitRev(ctx, rev)
	gated.setShut(true)
	if err := ms.Delete(ctx, hosts.Prefix+"h", 0); err != nil { // the admin's delete, unseen by the cache
		t.Fatal(err)
	}
	if n, _, _ := svc.scheduleOnce(ctx); n != 0 {
		t.Fatalf("placed %d instances on a deleted host", n)
	}
	gated.setShut(false)
}

// TestHostAndInstancesChangeTogether: a silent host goes OFFLINE in the
// same transaction as its instances go UNKNOWN; when its agent reports
// again, the host is ONLINE before any instance is back to RUNNING.
func TestHostAndInstancesChangeTogether(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	ms := seeded(t, 5)
	svc, hs, principal := oneHostCloud(ctx, t, ms, 50*time.Millisecond)
	sync := func() {
		rev, _ := ms.Revision(ctx)
		svc.cache.waitRev(ctx, rev)
		for {
			svc.cache.mu.RLock()
			h := svc.cache.hosts["h"]
			svc.cache.mu.RUnlock()
			if kv, _ := ms.Get(ctx, hosts.Prefix+"h"); h.Revision == kv.Revision {
				return
			}
			time.Sleep(time.Millisecond)
		}
	}
	for _, n := range []string{"a", "b"} {
		if _, err := svc.Create(ctx, "p", api.InstancesPost{Name: n, Type: "vm", Flavor: "small", Image: "x"}); err != nil {
			t.Fatal(err)
		}
	}
	hs.Heartbeat([]string{"h"}, api.Heartbeat{})
	sync()
	if n, _, _ := svc.scheduleOnce(ctx); n != 2 {
		t.Fatalf("placed %d", n)
	}
	sync()
	// Silence: the grace is 50 ms.
	time.Sleep(100 * time.Millisecond)
	svc.checkNodes(ctx)
	hkv, _ := ms.Get(ctx, hosts.Prefix+"h")
	for _, n := range []string{"a", "b"} {
		kv, _ := ms.Get(ctx, instanceKey("p", n))
		var r record
		store.Decode(kv, &r)
		if r.State != api.StateUnknown || kv.Revision != hkv.Revision {
			t.Fatalf("%s is %s at revision %d, the host went OFFLINE at %d: not one decision", n, r.State, kv.Revision, hkv.Revision)
		}
	}
	sync()
	// The agent is back and reports a: the host is ONLINE first.
	in, _, _ := svc.Get(ctx, "p", "a")
	res, err := svc.Report(ctx, principal, []api.InstanceReport{{ID: in.ID, Host: "h", From: api.StateUnknown, To: api.StateRunning}})
	if err != nil || res.Applied != 1 {
		t.Fatalf("report: %+v %v", res, err)
	}
	h, _ := hs.Get(ctx, "h")
	akv, _ := ms.Get(ctx, instanceKey("p", "a"))
	if h.State != api.HostOnline || h.Revision > akv.Revision {
		t.Fatalf("host %s at %d, a RUNNING at %d: an instance was back on a host still OFFLINE", h.State, h.Revision, akv.Revision)
	}
}

// imagesFunc resolves image names the test's way.
type imagesFunc func(ref string) (api.Image, error)

func (f imagesFunc) Resolve(_ context.Context, _, ref string) (api.Image, error) { return f(ref) }

// TestManyPlacementsOnOneHost: packing puts a whole round on one host;
// its placements fit the store's transactions (etcd takes 128 operations).
func TestManyPlacementsOnOneHost(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	s, err := etcdstore.OpenEmbedded(ctx, etcdstore.EmbedOptions{Dir: t.TempDir(), NoFsync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.Txn(ctx, nil, append(flavor.SeedOps(ctx), quota.InitOp("p", api.ResourceCounts{Instances: -1, VCPUs: -1, MemoryMiB: -1, DiskGiB: -1}))); err != nil {
		t.Fatal(err)
	}
	hs := hosts.New(s, strings.Repeat("a", 64), 0)
	jt, _ := hs.CreateJoinToken(ctx, api.JoinTokensPost{})
	if _, err := hs.Join(ctx, api.AgentsPost{JoinToken: jt.Token, Name: "a", Driver: "sim", Hosts: []api.HostSpec{{Name: "h", Kinds: []string{"vm"}, Capacity: api.Size{VCPUs: 64, MemoryMiB: 1 << 20, DiskGiB: 10000}}}}); err != nil {
		t.Fatal(err)
	}
	svc := New(s, hs, "", slog.New(slog.DiscardHandler), Deps{})
	go svc.cache.run(ctx, s, svc.log)
	svc.Ready(ctx)
	for i := 0; i < 150; i++ {
		if _, err := svc.Create(ctx, "p", api.InstancesPost{Name: fmt.Sprintf("i%03d", i), Type: "vm", Flavor: "tiny", Image: "x"}); err != nil {
			t.Fatal(err)
		}
	}
	placed := 0
	for round := 0; round < 10 && placed < 150; round++ {
		rev, _ := s.Revision(ctx)
		svc.cache.waitRev(ctx, rev)
		n, _, _ := svc.scheduleOnce(ctx)
		placed += n
	}
	if placed != 150 {
		t.Fatalf("placed %d of 150 on one host in 10 rounds", placed)
	}
}

// TestCacheSumsFollowInstances: the cache's per-host sums, kept as
// instances change, equal a recount after any churn (a sum that drifted
// would overcommit hosts or strand capacity).
func TestCacheSumsFollowInstances(t *testing.T) {
	c := newCache()
	rng := rand.New(rand.NewSource(1))
	states := []api.State{api.StatePending, api.StateProlog, api.StateRunning, api.StateStopped, api.StateUnknown, api.StateDone}
	rev := int64(0)
	for i := 0; i < 5000; i++ {
		rev++
		key := instanceKey("p", fmt.Sprintf("i%d", rng.Intn(200)))
		var ev store.WatchEvent
		if rng.Intn(10) == 0 {
			ev = store.WatchEvent{Type: store.EventDelete, KV: store.KV{Key: key, Revision: rev}, RevisionEnd: true}
		} else {
			r := record{Instance: api.Instance{Meta: api.Meta{ID: key}, Project: "p", State: states[rng.Intn(len(states))],
				Host: fmt.Sprintf("h%d", rng.Intn(5)), ServerGroup: []string{"", "g"}[rng.Intn(2)], Size: api.Size{VCPUs: 1 + rng.Int63n(3), MemoryMiB: 512}}}
			ev = store.WatchEvent{Type: store.EventPut, KV: store.KV{Key: key, Value: store.MustJSON(r), Revision: rev}, RevisionEnd: true}
		}
		(&instanceView{cacheView{c: c, listed: &sync.WaitGroup{}}}).Apply(ev)
	}
	want, wantN, wantG := map[string]api.Size{}, map[string]int{}, map[string]map[string]int{}
	for _, e := range c.instances {
		if e.rec.Host != "" && onHost(e.rec.State) {
			a := want[e.rec.Host]
			a.VCPUs += e.rec.Size.VCPUs
			a.MemoryMiB += e.rec.Size.MemoryMiB
			want[e.rec.Host] = a
			wantN[e.rec.Host]++
			if e.rec.ServerGroup != "" {
				if wantG["p/g"] == nil {
					wantG["p/g"] = map[string]int{}
				}
				wantG["p/g"][e.rec.Host]++
			}
		}
	}
	if got := c.allocations(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("sums %v, recount %v", got, want)
	}
	if got := c.counts(); fmt.Sprint(got) != fmt.Sprint(wantN) {
		t.Fatalf("counts %v, recount %v", got, wantN)
	}
	if got := c.groupHosts(); fmt.Sprint(got) != fmt.Sprint(wantG) {
		t.Fatalf("groups %v, recount %v", got, wantG)
	}
	// The assignments index: each instance under the host whose agent
	// has it, and nothing else.
	wantA := map[string]map[string]bool{}
	for k, e := range c.instances {
		for _, h := range assignedHosts(&e.rec) {
			if wantA[h] == nil {
				wantA[h] = map[string]bool{}
			}
			wantA[h][k] = true
		}
	}
	gotA := map[string]map[string]bool{}
	for h, es := range c.assigned {
		gotA[h] = map[string]bool{}
		for k, e := range es {
			gotA[h][k] = c.instances[k] == e
		}
	}
	if fmt.Sprint(gotA) != fmt.Sprint(wantA) {
		t.Fatalf("assignments index %v, recount %v", gotA, wantA)
	}
}

// failingStore fails every transaction while failing is set, as a store
// that lost its disk or its quorum does.
type failingStore struct {
	store.Store
	failing atomic.Bool
}

func (f *failingStore) Txn(ctx context.Context, conds []store.Cond, ops []store.Op) (int64, error) {
	if f.failing.Load() {
		return 0, errors.New("disk I/O error")
	}
	return f.Store.Txn(ctx, conds, ops)
}

// TestReportNotLostWhenTheStoreFails: a report the store could not write
// is answered with an error (the agent sends it again), never dropped as
// "rejected" - that left an instance PROLOG for ever on a host running it.
func TestReportNotLostWhenTheStoreFails(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	ms := &failingStore{Store: seeded(t, 5)}
	svc, hs, principal := oneHostCloud(ctx, t, ms, time.Minute)
	if _, err := svc.Create(ctx, "p", api.InstancesPost{Name: "a", Type: "vm", Flavor: "small", Image: "x"}); err != nil {
		t.Fatal(err)
	}
	hs.Heartbeat([]string{"h"}, api.Heartbeat{})
	var in api.Instance
	for in.State != api.StateProlog {
		rev, _ := ms.Revision(ctx)
		svc.cache.waitRev(ctx, rev)
		svc.scheduleOnce(ctx)
		in, _, _ = svc.Get(ctx, "p", "a")
		if ctx.Err() != nil {
			t.Fatalf("never placed: %+v", in)
		}
	}
	boot := []api.InstanceReport{{ID: in.ID, Host: "h", From: api.StateProlog, To: api.StateBoot}}
	ms.failing.Store(true)
	res, err := svc.Report(ctx, principal, boot)
	if !errors.Is(err, errs.ErrUnavailable) || res.Applied != 0 {
		t.Fatalf("report while the store fails: %+v %v, want unavailable", res, err)
	}
	ms.failing.Store(false)
	if res, err := svc.Report(ctx, principal, boot); err != nil || res.Applied != 1 {
		t.Fatalf("the report sent again: %+v %v", res, err)
	}
	if in, _, _ := svc.Get(ctx, "p", "a"); in.State != api.StateBoot {
		t.Fatalf("after the report: %s", in.State)
	}
}

// oneHostCloud is a compute service on ms, its cache running, with one
// agent "a" bringing host "h" (8 vCPUs, 8 GiB) that is silent after
// grace; it returns the agent's principal too.
func oneHostCloud(ctx context.Context, t *testing.T, ms store.Store, grace time.Duration) (*Service, *hosts.Service, *hosts.AgentPrincipal) {
	t.Helper()
	hs := hosts.New(ms, strings.Repeat("a", 64), grace)
	jt, _ := hs.CreateJoinToken(ctx, api.JoinTokensPost{})
	ag, err := hs.Join(ctx, api.AgentsPost{JoinToken: jt.Token, Name: "a", Driver: "sim", Hosts: []api.HostSpec{{Name: "h", Kinds: []string{"vm"}, Capacity: api.Size{VCPUs: 8, MemoryMiB: 8192, DiskGiB: 100}}}})
	if err != nil {
		t.Fatal(err)
	}
	principal, err := hs.Authenticate(ctx, ag.Credential)
	if err != nil {
		t.Fatal(err)
	}
	svc := New(ms, hs, "", slog.New(slog.DiscardHandler), Deps{})
	go svc.cache.run(ctx, ms, svc.log)
	svc.Ready(ctx)
	return svc, hs, principal
}
