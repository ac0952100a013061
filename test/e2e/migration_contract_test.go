package e2e

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kumocloud/kumo/api"
	"github.com/kumocloud/kumo/client"
	"github.com/kumocloud/kumo/internal/agent"
	"github.com/kumocloud/kumo/internal/apitest"
	"github.com/kumocloud/kumo/internal/driver"
	"github.com/kumocloud/kumo/internal/driver/sim"
)

// migrationPath: the endpoints TestMigrationContract drives.
func migrationPath(p string) bool { return containsAny(p, "/migrations", "/migrate", "/evacuate") }

// containsAny says whether p contains one of parts.
func containsAny(p string, parts ...string) bool {
	return slices.ContainsFunc(parts, func(s string) bool { return strings.Contains(p, s) })
}

// TestMigrationContract drives migration and evacuation over HTTPS on a
// real server with a sim agent of three hosts - the agent's own calls
// (its migration reports, the tunnel it moves the instance through)
// included - validating every exchange against api/openapi.yaml: a live
// migration of a VM, a refused live one of a container, a cancel with
// nothing to cancel, an evacuation's plan and the evacuation itself.
func TestMigrationContract(t *testing.T) {
	s, v, admin, ctx, check := contractSetup(t, 3*time.Minute)
	jt, err := admin.CreateJoinToken(ctx, api.JoinTokensPost{Description: "migration contract"})
	check("join token", err)
	actx, acancel := context.WithCancel(ctx)
	defer acancel()
	_, cfg := simAgent(t, ctx, s, v, jt.Token, "migration-contract", time.Hour)
	ag, err := agent.New(actx, cfg)
	check("agent joins", err)
	go ag.Run(actx)

	running := func(name string) api.Instance {
		var in api.Instance
		eventually(t, 30*time.Second, name+" RUNNING", func() (bool, string) {
			in, err = admin.Instance(ctx, "default", name)
			return err == nil && in.State == api.StateRunning && in.Migration == nil, string(in.State)
		})
		return in
	}
	_, err = admin.CreateInstance(ctx, "default", api.InstancesPost{Name: "m1", Type: api.TypeVM, Flavor: "small", Image: "x"})
	check("create m1", err)
	_, err = admin.CreateInstance(ctx, "default", api.InstancesPost{Name: "m2", Type: api.TypeContainer, Flavor: "tiny", Image: "x"})
	check("create m2", err)
	m1 := running("m1")
	running("m2")

	// The host says what its driver can do; explain --migrate says where.
	h, err := admin.Host(ctx, m1.Host)
	check("host", err)
	if strings.Join(h.Capabilities[api.TypeContainer], ",") != "logs,host-health,migrate" {
		t.Errorf("%s says its containers can %v", h.Name, h.Capabilities[api.TypeContainer])
	}
	ex, err := admin.ExplainMigration(ctx, "default", "m1")
	check("explain migrate", err)
	if !strings.Contains(ex.Summary, "(live)") {
		t.Errorf("explain --migrate: %q", ex.Summary)
	}
	// Refusals the contract promises: a live container, nothing to cancel.
	if _, err := admin.MigrateInstance(ctx, "default", "m2", api.InstanceMigrate{Mode: api.MigrateLive}); client.StatusOf(err) != 400 || !strings.Contains(err.Error(), "CRIU") {
		t.Errorf("live container migration: %v", err)
	}
	if _, err := admin.CancelMigration(ctx, "default", "m1"); client.StatusOf(err) != 409 {
		t.Errorf("cancel with no migration: %v", err)
	}
	// A live migration through the agent's tunnel, to its end.
	op, err := admin.MigrateInstance(ctx, "default", "m1", api.InstanceMigrate{})
	check("migrate m1", err)
	op, err = admin.WaitOperation(ctx, op.ID)
	check("migration", err)
	if op.Status != api.OpSucceeded {
		t.Fatalf("migration: %+v", op)
	}
	if in := running("m1"); in.Host == m1.Host {
		t.Errorf("m1 is still on %s", in.Host)
	}

	// Evacuation: the plan, then the move.
	m1 = running("m1")
	plan, err := admin.EvacuationPlan(ctx, m1.Host)
	check("evacuation plan", err)
	if len(plan.Moves) == 0 || plan.Moves[0].Target == "" {
		t.Errorf("evacuation plan of %s: %+v", m1.Host, plan)
	}
	op, err = admin.EvacuateHost(ctx, m1.Host, 1)
	check("evacuate", err)
	op, err = admin.WaitOperation(ctx, op.ID)
	check("evacuation", err)
	if op.Status != api.OpSucceeded {
		t.Fatalf("evacuation: %+v", op)
	}
	if in := running("m1"); in.Host == m1.Host {
		t.Errorf("m1 is still on the evacuated %s", in.Host)
	}
	acancel()
	assertContract(t, v, migrationPath)
}

// contractSetup starts a server (with args) and gives an admin client
// whose every exchange v validates against api/openapi.yaml, a context
// of the test's timeout and a check that ends the test on an error.
func contractSetup(t *testing.T, timeout time.Duration, args ...string) (*server, *apitest.Validator, *client.Client, context.Context, func(string, error)) {
	s := startServer(t, args...)
	v, err := apitest.New()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	t.Cleanup(cancel)
	admin := s.remote(t, s.adminToken(t))
	admin.WrapTransport(v.Transport)
	check := func(what string, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	return s, v, admin, ctx, check
}

// simAgent is the configuration of an agent of a three-host sim driver
// that joins s with token, its every exchange validated by v.
func simAgent(t *testing.T, ctx context.Context, s *server, v *apitest.Validator, token, name string, usageEvery time.Duration) (agent.ConnConfig, agent.Config) {
	d, err := sim.New(ctx, driver.Common{StateDir: t.TempDir()}, sim.Config{Hosts: 3})
	if err != nil {
		t.Fatal(err)
	}
	cc := agent.ConnConfig{Server: s.url(), JoinToken: token, Name: name, StateDir: t.TempDir(), WrapTransport: v.Transport}
	return cc, agent.Config{Conn: agent.NewConn(cc), Driver: d, HeartbeatEvery: 500 * time.Millisecond, UsageEvery: usageEvery}
}
