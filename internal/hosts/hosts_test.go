package hosts

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/kumocloud/kumo/api"
	"github.com/kumocloud/kumo/internal/errs"
	secretpkg "github.com/kumocloud/kumo/internal/secret"
	"github.com/kumocloud/kumo/internal/store"
	"github.com/kumocloud/kumo/internal/store/memstore"
)

func spec(name string) api.HostSpec {
	return api.HostSpec{Name: name, Kinds: []string{api.TypeContainer}, Capacity: api.Size{VCPUs: 4, MemoryMiB: 4096, DiskGiB: 10}}
}

func specs(names ...string) []api.HostSpec {
	out := make([]api.HostSpec, len(names))
	for i, n := range names {
		out[i] = spec(n)
	}
	return out
}

type fixture struct {
	t   *testing.T
	svc *Service
	st  store.Store
	tok string
}

func newFixture(t *testing.T) *fixture {
	st := memstore.New()
	svc := New(st, strings.Repeat("ab", 32), time.Minute)
	jt, err := svc.CreateJoinToken(context.Background(), api.JoinTokensPost{})
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{t: t, svc: svc, st: st, tok: jt.Token}
}

func (f *fixture) join(name, secret string, hosts ...string) (api.Agent, error) {
	return f.svc.Join(context.Background(), api.AgentsPost{JoinToken: f.tok, Name: name, Driver: "sim", Hosts: specs(hosts...), CredentialSecret: secret})
}

// principal is what the agent's credential authenticates as.
func (f *fixture) principal(a api.Agent) *AgentPrincipal {
	f.t.Helper()
	p, err := f.svc.Authenticate(context.Background(), a.Credential)
	if err != nil {
		f.t.Fatalf("agent %s: %v", a.ID, err)
	}
	return p
}

func (f *fixture) owner(host string) string {
	f.t.Helper()
	h, err := f.svc.Get(context.Background(), host)
	if err != nil {
		f.t.Fatal(err)
	}
	return h.Agent
}

// A host belongs to the agent identity that created it. No other agent
// gets it, whatever name it gives itself, by joining or re-registering;
// the owner keeps it untouched; and the refusal says what to do.
func TestNoAgentTakesAnotherAgentsHost(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	owner, err := f.join("local", "", "h1", "h2")
	if err != nil {
		t.Fatal(err)
	}
	intruder, err := f.join("other", "", "h9")
	if err != nil {
		t.Fatal(err)
	}
	attempts := []struct {
		name string
		try  func() error
	}{
		{"join under the owner's name", func() error { _, err := f.join("local", "", "h1"); return err }},
		{"join under another name", func() error { _, err := f.join("newcomer", "", "h2"); return err }},
		{"join with a free host and a taken one", func() error { _, err := f.join("local", "", "h3", "h1"); return err }},
		{"re-register with the owner's host", func() error {
			_, err := f.svc.PutAgentHosts(ctx, intruder.ID, specs("h9", "h1"))
			return err
		}},
	}
	for _, a := range attempts {
		err := a.try()
		if errs.KindOf(err) != errs.KindConflict || !strings.Contains(err.Error(), "kumo host delete") || !strings.Contains(err.Error(), owner.ID) {
			t.Fatalf("%s: %v, want a conflict naming the owner and what to do", a.name, err)
		}
		for _, h := range []string{"h1", "h2"} {
			if got := f.owner(h); got != owner.ID {
				t.Fatalf("%s: %s now belongs to %s", a.name, h, got)
			}
		}
		if p := f.principal(intruder); len(p.Hosts) != 1 || !p.Hosts["h9"] {
			t.Fatalf("%s: the intruder acts for %v", a.name, p.Hosts)
		}
		if p := f.principal(owner); len(p.Hosts) != 2 {
			t.Fatalf("%s: the owner acts for %v", a.name, p.Hosts)
		}
		// Nothing half-made: the free host of a refused join is not there.
		if _, err := f.svc.Get(ctx, "h3"); errs.KindOf(err) != errs.KindNotFound {
			t.Fatalf("%s: h3 exists: %v", a.name, err)
		}
	}
	// The owner re-registering keeps its hosts, even those it no longer
	// brings (they go OFFLINE, still its own).
	if _, err := f.svc.PutAgentHosts(ctx, owner.ID, specs("h1")); err != nil {
		t.Fatal(err)
	}
	if p := f.principal(owner); !p.Hosts["h1"] || !p.Hosts["h2"] {
		t.Fatalf("owner after re-registering h1 only: %v", p.Hosts)
	}
}

// Only a cloud admin's host delete frees a host: the old agent can no
// longer act for it, a new agent may then bring it, and an agent left
// without hosts loses its credential. The principals Authenticate keeps
// between requests follow every change at once, and a wrong secret never
// gets a kept one.
func TestHostDeleteIsTheOnlyWayAHostChangesAgents(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	old, err := f.join("local", "", "h1", "h2")
	if err != nil {
		t.Fatal(err)
	}
	if p := f.principal(old); !p.Hosts["h1"] || !p.Hosts["h2"] {
		t.Fatalf("old agent acts for %v", p.Hosts)
	}
	forged := old.Credential[:len(old.Credential)-4] + "0000"
	if forged == old.Credential {
		forged = old.Credential[:len(old.Credential)-4] + "1111"
	}
	if _, err := f.svc.Authenticate(ctx, forged); errs.KindOf(err) != errs.KindUnauthorized {
		t.Fatalf("a wrong secret for a known agent: %v", err)
	}
	if err := f.svc.Delete(ctx, "h1"); err != nil {
		t.Fatal(err)
	}
	if p := f.principal(old); p.Hosts["h1"] || !p.Hosts["h2"] {
		t.Fatalf("old agent after h1's delete acts for %v", p.Hosts)
	}
	fresh, err := f.join("local", "", "h1")
	if err != nil {
		t.Fatalf("joining a deleted host: %v", err)
	}
	if f.owner("h1") != fresh.ID || f.principal(old).Hosts["h1"] {
		t.Fatal("h1 did not pass to the new agent alone")
	}
	if err := f.svc.Delete(ctx, "h2"); err != nil {
		t.Fatal(err)
	}
	if _, err := f.svc.Authenticate(ctx, old.Credential); errs.KindOf(err) != errs.KindUnauthorized || !strings.Contains(err.Error(), "join again") {
		t.Fatalf("an agent without hosts: %v", err)
	}
	if err := f.svc.Delete(ctx, "h2"); errs.KindOf(err) != errs.KindNotFound {
		t.Fatalf("deleting twice: %v", err)
	}
}

// A join retried with the same credential secret (its answer was lost, or
// the server died between the transactions of a large join) is the same
// agent and finishes; a different secret is another agent and is refused.
func TestRetriedJoinIsTheSameAgent(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	secret := secretpkg.Hex(24)
	names := make([]string, 120) // three transactions
	for i := range names {
		names[i] = fmt.Sprintf("sim-%04d", i)
	}
	// What a join cut short after its first transaction leaves: hosts that
	// name the agent, and no agent record yet.
	id := secretpkg.Hash("kumo-agent:" + secret)[:16]
	rec := agentRecord{Agent: api.Agent{ID: id, Name: "sim", Driver: "sim"}, SecretHash: secretpkg.Hash(secret)}
	var conds []store.Cond
	var ops []store.Op
	for _, n := range names[:50] {
		conds = append(conds, store.Absent(hostsPrefix+n))
		ops = append(ops, store.PutJSON(hostsPrefix+n, hostRecord{api.Host{Meta: api.Meta{Name: n}, Agent: rec.ID, Enabled: true}}))
	}
	if _, err := f.st.Txn(ctx, conds, ops); err != nil {
		t.Fatal(err)
	}
	if _, err := f.join("thief", "", names[0]); errs.KindOf(err) != errs.KindConflict {
		t.Fatalf("another agent on a half-joined host: %v", err)
	}
	a, err := f.join("sim", secret, names...)
	if err != nil {
		t.Fatalf("the retried join: %v", err)
	}
	again, err := f.join("sim", secret, names...)
	if err != nil || again.ID != a.ID || a.ID != id {
		t.Fatalf("joined as %s then %s (%v), want %s", a.ID, again.ID, err, id)
	}
	if p := f.principal(again); len(p.Hosts) != len(names) {
		t.Fatalf("the agent acts for %d hosts, want %d", len(p.Hosts), len(names))
	}
	if _, err := f.join("sim", secretpkg.Hex(24), names[7]); errs.KindOf(err) != errs.KindConflict {
		t.Fatalf("another secret: %v", err)
	}
	if _, err := f.join("sim", "not-hex", "x1"); errs.KindOf(err) != errs.KindInvalid {
		t.Fatalf("a bad secret: %v", err)
	}
}

// TestAgentsSayPrintableThings: what an agent says of its hosts is shown
// to admins and read by requirement expressions: control characters and
// oversized attributes are refused, whoever sends them.
func TestAgentsSayPrintableThings(t *testing.T) {
	f := newFixture(t)
	for _, attrs := range []map[string]string{
		{"CPU_MODEL": "x\x1b]0;owned\x07"},
		{"NOTE": strings.Repeat("a", 256)},
		{"bad key!": "v"},
	} {
		h := spec("h1")
		h.Attributes = attrs
		_, err := f.svc.Join(context.Background(), api.AgentsPost{JoinToken: f.tok, Name: "a", Driver: "sim", Hosts: []api.HostSpec{h}})
		if !errors.Is(err, errs.ErrInvalid) {
			t.Errorf("attributes %q: %v, want refused", attrs, err)
		}
	}
}

// AliveEach answers as Alive does for each host: one that beat within
// the grace, one silent past it, one never heard of (alive for a grace
// from the server's start), and every host while the server stops.
func TestAliveEachIsAliveForEach(t *testing.T) {
	svc := New(memstore.New(), strings.Repeat("ab", 32), time.Minute)
	svc.started = time.Now().Add(-2 * time.Minute)
	svc.Heartbeat([]string{"beat"}, api.Heartbeat{})
	svc.mu.Lock()
	svc.lastSeen["silent"] = time.Now().Add(-90 * time.Second)
	svc.mu.Unlock()
	names := []string{"beat", "silent", "never"}
	check := func(want ...bool) {
		t.Helper()
		got := svc.AliveEach(names)
		for i, n := range names {
			if one, _ := svc.Alive(n); got[i] != one || got[i] != want[i] {
				t.Errorf("%s: AliveEach %v, Alive %v, want %v", n, got[i], one, want[i])
			}
		}
	}
	check(true, false, false)
	svc.Stopping()
	check(true, true, true)
}
