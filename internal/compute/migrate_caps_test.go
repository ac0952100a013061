package compute

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/kumocloud/kumo/api"
	"github.com/kumocloud/kumo/internal/errs"
	"github.com/kumocloud/kumo/internal/hosts"
	"github.com/kumocloud/kumo/internal/scheduler"
	"github.com/kumocloud/kumo/internal/store"
)

// capsEnv is an haEnv whose hosts declare the capabilities given
// (hosts stay alive for a minute after a beat).
func newCapsEnv(t *testing.T, ctx context.Context, caps map[string][]string) *haEnv {
	ms := seeded(t, 10)
	env := &haEnv{t: t, ctx: ctx, ms: ms, hs: hosts.New(ms, strings.Repeat("a", 64), time.Minute),
		agents: map[string]*hosts.AgentPrincipal{}, clock: time.Now().UTC()}
	for _, h := range []string{"h1", "h2", "h3"} {
		jt, _ := env.hs.CreateJoinToken(ctx, api.JoinTokensPost{})
		ag, err := env.hs.Join(ctx, api.AgentsPost{JoinToken: jt.Token, Name: "agent-" + h, Driver: "sim", Hosts: []api.HostSpec{{Name: h, Kinds: []string{"vm"},
			Capacity: api.Size{VCPUs: 8, MemoryMiB: 8192, DiskGiB: 100}, Capabilities: map[string][]string{"vm": caps[h]}}}})
		if err != nil {
			t.Fatal(err)
		}
		if env.agents[h], err = env.hs.Authenticate(ctx, ag.Credential); err != nil {
			t.Fatal(err)
		}
	}
	env.hs.Heartbeat([]string{"h1", "h2", "h3"}, api.Heartbeat{})
	return env
}

// placeOn creates a RUNNING vm on host, the others disabled meanwhile.
func (env *haEnv) placeOn(svc *Service, name, host string) {
	for _, h := range []string{"h1", "h2", "h3"} {
		on := h == host
		if _, err := env.hs.Patch(env.ctx, h, api.HostPatch{Enabled: &on}); err != nil {
			env.t.Fatal(err)
		}
	}
	env.syncHosts(svc)
	if _, err := svc.Create(env.ctx, "p", api.InstancesPost{Name: name, Type: "vm", Flavor: "small", Image: "img"}); err != nil {
		env.t.Fatal(name, err)
	}
	env.sync(svc)
	if n, _, _ := svc.scheduleOnce(env.ctx); n != 1 {
		env.t.Fatalf("placed %d", n)
	}
	env.sync(svc)
	env.run(svc, name)
	on := true
	for _, h := range []string{"h1", "h2", "h3"} {
		if _, err := env.hs.Patch(env.ctx, h, api.HostPatch{Enabled: &on}); err != nil {
			env.t.Fatal(err)
		}
	}
	env.syncHosts(svc)
}

// syncHosts waits until the service's cache has the hosts as stored.
func (env *haEnv) syncHosts(svc *Service) {
	for env.ctx.Err() == nil {
		kvs, _ := store.ListAll(env.ctx, env.ms, hosts.Prefix)
		svc.cache.mu.RLock()
		same := len(kvs) == len(svc.cache.hosts)
		for _, kv := range kvs {
			same = same && svc.cache.hosts[kv.Key[len(hosts.Prefix):]].Revision == kv.Revision
		}
		svc.cache.mu.RUnlock()
		if same {
			return
		}
		time.Sleep(time.Millisecond)
	}
	env.t.Fatalf("the instance cache never caught up with the hosts in the store: %v", env.ctx.Err())
}

// TestMigrateGoesByHostCapabilities: what a host's agent says its driver
// can do decides up front: a live move from a host whose driver cannot
// is refused (400 naming the mode and the driver) and the default there
// is cold; a host that cannot receive live is no live target (explain
// --migrate says so per host, a --host naming it is a 409), nothing is
// reserved by a refusal; a host that cannot migrate at all refuses.
func TestMigrateGoesByHostCapabilities(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	env := newCapsEnv(t, ctx, map[string][]string{
		"h1": {api.CapMigrate, api.CapLiveMigrate, "exec"},
		"h2": {api.CapMigrate},
		"h3": {api.CapMigrate, api.CapLiveMigrate},
	})
	svc := env.service(time.Hour)
	env.placeOn(svc, "a", "h1")
	env.placeOn(svc, "b", "h2")

	if h, _ := env.hs.Get(ctx, "h2"); strings.Join(h.Capabilities["vm"], ",") != api.CapMigrate {
		t.Fatalf("h2 keeps capabilities %v", h.Capabilities)
	}
	ex, err := svc.ExplainMigrate(ctx, "p", "a")
	if err != nil {
		t.Fatal(err)
	}
	verdict := map[string]api.ExplainHost{}
	for _, h := range ex.Hosts {
		verdict[h.Host] = h
	}
	if v := verdict["h2"]; v.Feasible || !strings.Contains(v.Reason, "cannot receive vm instances live") {
		t.Errorf("explain h2: %+v", v)
	}
	if v := verdict["h3"]; !v.Feasible {
		t.Errorf("explain h3: %+v", v)
	}
	if !strings.Contains(ex.Summary, "live") {
		t.Errorf("explain summary %q does not say the mode", ex.Summary)
	}
	_, err = svc.Migrate(ctx, "p", "a", api.InstanceMigrate{Host: "h2"})
	if !errors.Is(err, errs.ErrConflict) || !strings.Contains(err.Error(), "cannot receive vm instances live") {
		t.Fatalf("live to h2: %v", err)
	}
	// Cold, h2 will do.
	if v, _, _ := svc.migrationVerdicts(ctx, mustRec(t, svc, "a"), "h1", api.MigrateCold); !feasibleOn(v, "h2") {
		t.Errorf("cold verdicts refuse h2: %+v", v)
	}

	// b is on h2, which cannot send live.
	_, err = svc.Migrate(ctx, "p", "b", api.InstanceMigrate{Mode: api.MigrateLive})
	if !errors.Is(err, errs.ErrInvalid) || !strings.Contains(err.Error(), "h2's driver (sim) cannot migrate vm instances live") {
		t.Fatalf("live from h2: %v", err)
	}
	if in, _ := env.get(svc, "b"); in.State != api.StateRunning || in.Migration != nil {
		t.Fatalf("a refused migration changed b: %s %+v", in.State, in.Migration)
	}
	if ex, _ := svc.ExplainMigrate(ctx, "p", "b"); !strings.Contains(ex.Summary, "(cold)") {
		t.Errorf("explain b: %q, want the cold default", ex.Summary)
	}
	in, err := svc.Migrate(ctx, "p", "b", api.InstanceMigrate{})
	if err != nil || in.Migration == nil || in.Migration.Mode != api.MigrateCold {
		t.Fatalf("default from h2: %+v %v", in.Migration, err)
	}

	// A host whose driver does not migrate at all.
	env2 := newCapsEnv(t, ctx, map[string][]string{"h1": {"exec"}, "h2": {"exec"}, "h3": {}})
	svc2 := env2.service(time.Hour)
	env2.placeOn(svc2, "c", "h1")
	if _, err := svc2.Migrate(ctx, "p", "c", api.InstanceMigrate{Mode: api.MigrateCold}); !errors.Is(err, errs.ErrConflict) || !strings.Contains(err.Error(), "cannot migrate vm instances") {
		t.Fatalf("migrate from a driver without migration: %v", err)
	}
}

func mustRec(t *testing.T, svc *Service, name string) *record {
	r, _, err := svc.get(context.Background(), "p", name)
	if err != nil {
		t.Fatal(err)
	}
	return &r
}

func feasibleOn(res []scheduler.HostResult, host string) bool {
	for _, h := range res {
		if h.Host == host {
			return h.Feasible
		}
	}
	return false
}
