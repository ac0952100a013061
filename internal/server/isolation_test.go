package server

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kumocloud/kumo/api"
	"github.com/kumocloud/kumo/internal/operations"
)

// The tenant isolation matrix: every endpoint, every kind of caller, and
// the exact status the policy gives. Callers:
//
//	cA   cloud admin          pA  admin of project p   pM  member of p
//	pR   reader of p          qA  admin of project q (a stranger to p)
//	anon no token             exp expired token        rev revoked token
//	ag   an agent's credential (good only on its own /v1/agents/{id} endpoints)
var principals = []string{"cA", "pA", "pM", "pR", "qA", "anon", "exp", "rev", "ag"}

type matrixCase struct {
	method, path string
	body         any
	want         string // "cA:200 pA:403 ..." for every principal
}

func matrixCases() []matrixCase {
	const bad = " anon:401 exp:401 rev:401 ag:403"
	const pub = "cA:200 pA:200 pM:200 pR:200 qA:200 anon:200 exp:200 rev:200 ag:200"
	const members = "cA:201 pA:201 pM:201 pR:403 qA:404" + bad
	const admins = "cA:200 pA:403 pM:403 pR:403 qA:403" + bad
	const agentOnly = "cA:404 pA:404 pM:404 pR:404 qA:404 anon:401 exp:401 rev:401"
	const anyValid = "cA:200 pA:200 pM:200 pR:200 qA:200" + bad
	const readersOfP = "cA:200 pA:200 pM:200 pR:200 qA:404" + bad
	return []matrixCase{
		{"GET", "/healthz", nil, pub},
		{"GET", "/readyz", nil, pub},
		{"GET", "/metrics", nil, pub},
		{"GET", "/v1", nil, pub},
		{"GET", "/v1/openapi.yaml", nil, pub},

		{"POST", "/v1/tokens", map[string]any{}, "cA:201 pA:201 pM:201 pR:201 qA:201 anon:400 exp:400 rev:400 ag:400"},
		{"GET", "/v1/tokens", nil, anyValid},
		{"GET", "/v1/tokens/{token}", nil, "cA:200 pA:404 pM:200 pR:404 qA:404" + bad},
		{"DELETE", "/v1/tokens/{token}", nil, "cA:200 pA:404 pM:200 pR:404 qA:404" + bad},
		{"GET", "/v1/whoami", nil, anyValid},
		{"POST", "/v1/session", map[string]any{}, "cA:400 pA:400 pM:400 pR:400 qA:400 anon:400 exp:400 rev:400 ag:400"},
		{"GET", "/v1/session", nil, anyValid},
		{"DELETE", "/v1/session", nil, "cA:204 pA:204 pM:204 pR:204 qA:204" + bad},

		{"GET", "/v1/projects", nil, anyValid},
		{"POST", "/v1/projects", map[string]any{"name": "new"}, "cA:201 pA:403 pM:403 pR:403 qA:403" + bad},
		{"GET", "/v1/projects/p", nil, readersOfP},
		{"PATCH", "/v1/projects/p", map[string]any{"description": "x"}, "cA:200 pA:200 pM:403 pR:403 qA:404" + bad},
		{"DELETE", "/v1/projects/p", nil, "cA:409 pA:403 pM:403 pR:403 qA:403" + bad},
		{"PUT", "/v1/projects/p/quota", map[string]any{"quota": map[string]int{"instances": 5}}, "cA:200 pA:403 pM:403 pR:403 qA:403" + bad},
		{"GET", "/v1/projects/p/members", nil, readersOfP},
		{"PUT", "/v1/projects/p/members/qadmin", map[string]any{"role": "reader"}, "cA:200 pA:200 pM:403 pR:403 qA:404" + bad},
		{"DELETE", "/v1/projects/p/members/preader", nil, "cA:204 pA:204 pM:403 pR:403 qA:404" + bad},
		{"GET", "/v1/projects/p/operations", nil, readersOfP},

		{"GET", "/v1/operations", nil, anyValid},
		{"GET", "/v1/operations/{op}", nil, readersOfP},
		{"GET", "/v1/events?follow=false", nil, anyValid},
		{"GET", "/v1/events?follow=false&project=p", nil, readersOfP},

		{"GET", "/v1/users", nil, "cA:200 pA:403 pM:403 pR:403 qA:403" + bad},
		{"POST", "/v1/users", map[string]any{"name": "newu", "password": "password123"}, "cA:201 pA:403 pM:403 pR:403 qA:403" + bad},
		{"GET", "/v1/users/pmember", nil, "cA:200 pA:404 pM:200 pR:404 qA:404" + bad},
		{"DELETE", "/v1/users/preader", nil, "cA:204 pA:403 pM:403 pR:403 qA:403" + bad},
		{"PUT", "/v1/users/pmember/password", map[string]any{"password": "another-password", "current_password": "password-pmember"}, "cA:204 pA:404 pM:204 pR:404 qA:404" + bad},

		{"GET", "/v1/projects/p/instances", nil, readersOfP},
		{"POST", "/v1/projects/p/instances", map[string]any{"name": "new", "type": "container", "flavor": "tiny", "image": "x"}, members},
		{"GET", "/v1/projects/p/instances/i1", nil, readersOfP},
		{"POST", "/v1/projects/p/instances/i1/actions", map[string]any{"action": "hold"}, "cA:200 pA:200 pM:200 pR:403 qA:404" + bad},
		{"GET", "/v1/projects/p/instances/i1/history", nil, readersOfP},
		{"GET", "/v1/projects/p/instances/i1/explain", nil, readersOfP},
		{"GET", "/v1/projects/p/instances/i1/explain?migrate=true", nil, readersOfP},
		{"POST", "/v1/projects/p/instances/i1/migrate", map[string]any{}, "cA:409 pA:409 pM:409 pR:403 qA:404" + bad},
		{"POST", "/v1/projects/p/instances/i1/exec", map[string]any{"command": []string{"true"}}, "cA:409 pA:409 pM:409 pR:403 qA:404" + bad},
		{"GET", "/v1/projects/p/instances/i1/console", nil, "cA:400 pA:400 pM:400 pR:403 qA:404" + bad},
		{"GET", "/v1/projects/p/networks", nil, readersOfP},
		{"POST", "/v1/projects/p/networks", map[string]any{"name": "net3", "cidr": "10.30.0.0/24"}, members},
		{"POST", "/v1/projects/p/networks?shared", map[string]any{"name": "net3", "cidr": "10.30.0.0/24", "shared": true}, "cA:201 pA:403 pM:403 pR:403 qA:404" + bad},
		{"GET", "/v1/projects/p/networks/net1", nil, readersOfP},
		{"DELETE", "/v1/projects/p/networks/net2", nil, "cA:204 pA:204 pM:204 pR:403 qA:404" + bad},
		{"DELETE", "/v1/projects/p/networks/net1", nil, "cA:409 pA:409 pM:409 pR:403 qA:404" + bad},
		{"GET", "/v1/projects/p/ports", nil, readersOfP},
		{"POST", "/v1/projects/p/ports", map[string]any{"name": "port2", "network": "net1"}, members},
		{"GET", "/v1/projects/p/ports/port1", nil, readersOfP},
		{"DELETE", "/v1/projects/p/ports/port1", nil, "cA:204 pA:204 pM:204 pR:403 qA:404" + bad},
		{"GET", "/v1/projects/p/floating-ips", nil, readersOfP},
		{"POST", "/v1/projects/p/floating-ips", map[string]any{"network": "pub"}, members},
		{"GET", "/v1/projects/p/floating-ips/203.0.113.10", nil, readersOfP},
		{"POST", "/v1/projects/p/floating-ips/203.0.113.10/attach", map[string]any{"instance": "i1"}, "cA:409 pA:409 pM:409 pR:403 qA:404" + bad},
		{"POST", "/v1/projects/p/floating-ips/203.0.113.10/detach", nil, "cA:200 pA:200 pM:200 pR:403 qA:404" + bad},
		{"DELETE", "/v1/projects/p/floating-ips/203.0.113.10", nil, "cA:204 pA:204 pM:204 pR:403 qA:404" + bad},
		{"GET", "/v1/projects/p/security-groups", nil, readersOfP},
		{"POST", "/v1/projects/p/security-groups", map[string]any{"name": "sg2"}, members},
		{"GET", "/v1/projects/p/security-groups/sg1", nil, readersOfP},
		{"POST", "/v1/projects/p/security-groups/sg1/rules", map[string]any{"direction": "ingress", "protocol": "tcp", "port_min": 23}, members},
		{"DELETE", "/v1/projects/p/security-groups/sg1/rules/nosuchrule", nil, "cA:404 pA:404 pM:404 pR:403 qA:404" + bad},
		{"DELETE", "/v1/projects/p/security-groups/sg1", nil, "cA:204 pA:204 pM:204 pR:403 qA:404" + bad},
		{"POST", "/v1/projects/p/instances/i1/snapshot", map[string]any{"name": "snap"}, "cA:409 pA:409 pM:409 pR:403 qA:404" + bad},
		{"POST", "/v1/projects/p/instances/i1/snapshot?public", map[string]any{"name": "snap", "visibility": "public"}, "cA:409 pA:403 pM:403 pR:403 qA:404" + bad},
		{"GET", "/v1/projects/p/instances/i1/logs", nil, "cA:409 pA:409 pM:409 pR:409 qA:404" + bad},
		{"GET", "/v1/projects/p/server-groups", nil, readersOfP},
		{"POST", "/v1/projects/p/server-groups", map[string]any{"name": "g2", "policy": "anti-affinity"}, members},
		{"GET", "/v1/projects/p/server-groups/g1", nil, readersOfP},
		{"DELETE", "/v1/projects/p/server-groups/g1", nil, "cA:204 pA:204 pM:204 pR:403 qA:404" + bad},

		{"GET", "/v1/projects/p/volumes", nil, readersOfP},
		{"POST", "/v1/projects/p/volumes", map[string]any{"name": "v2", "size_gib": 1}, members},
		{"POST", "/v1/projects/p/volumes?host", map[string]any{"name": "v2", "size_gib": 1, "host": "h1"}, "cA:201 pA:403 pM:403 pR:403 qA:404" + bad},
		{"GET", "/v1/projects/p/volumes/v1", nil, readersOfP},
		{"PATCH", "/v1/projects/p/volumes/v1", map[string]any{"size_gib": 2}, "cA:200 pA:200 pM:200 pR:403 qA:404" + bad},
		{"DELETE", "/v1/projects/p/volumes/v1", nil, "cA:200 pA:200 pM:200 pR:403 qA:404" + bad},
		{"POST", "/v1/projects/p/volumes/v1/attach", map[string]any{"instance": "i1"}, "cA:409 pA:409 pM:409 pR:403 qA:404" + bad},
		{"POST", "/v1/projects/p/volumes/v1/detach", nil, "cA:409 pA:409 pM:409 pR:403 qA:404" + bad},
		{"GET", "/v1/projects/p/volumes/v3/snapshots", nil, readersOfP},
		{"POST", "/v1/projects/p/volumes/v3/snapshots", map[string]any{"name": "s2"}, members},
		{"POST", "/v1/projects/p/volumes/v1/snapshots", map[string]any{"name": "s2"}, "cA:409 pA:409 pM:409 pR:403 qA:404" + bad},
		{"GET", "/v1/projects/p/volumes/v3/snapshots/s1", nil, readersOfP},
		{"DELETE", "/v1/projects/p/volumes/v3/snapshots/s1", nil, "cA:200 pA:200 pM:200 pR:403 qA:404" + bad},
		{"POST", "/v1/projects/p/volumes/v3/revert", map[string]any{"snapshot": "s1"}, "cA:200 pA:200 pM:200 pR:403 qA:404" + bad},
		{"POST", "/v1/projects/p/volumes/v3/backups", map[string]any{"name": "b2"}, members},
		{"POST", "/v1/projects/p/volumes/v1/move", map[string]any{"near": "i1"}, "cA:409 pA:409 pM:409 pR:403 qA:404" + bad},
		{"POST", "/v1/projects/p/volumes/v1/move?host", map[string]any{"host": "h1"}, "cA:409 pA:403 pM:403 pR:403 qA:404" + bad},
		{"GET", "/v1/projects/p/volume-backups", nil, readersOfP},
		{"GET", "/v1/projects/p/volume-backups/b1", nil, readersOfP},
		{"DELETE", "/v1/projects/p/volume-backups/b1", nil, "cA:204 pA:204 pM:204 pR:403 qA:404" + bad},
		{"PUT", "/v1/agents/{agent}/backups/{b1}/chunks/0000000000000000000000000000000000000000000000000000000000000000", "raw:xx", agentOnly + " ag:400"},
		{"POST", "/v1/agents/{agent}/backups/{b1}", map[string]any{"chunks": []string{}}, agentOnly + " ag:400"},
		{"GET", "/v1/agents/{agent}/backups/{b1}", nil, agentOnly + " ag:404"},
		{"GET", "/v1/agents/{agent}/backups/{b1}/chunks/00", nil, agentOnly + " ag:404"},
		{"POST", "/v1/projects/p/instances/i1/backups", map[string]any{"name": "ib2", "skip_root_disk": true}, members},
		{"GET", "/v1/projects/p/instance-backups", nil, readersOfP},
		{"GET", "/v1/projects/p/instance-backups/ib1", nil, readersOfP},
		{"DELETE", "/v1/projects/p/instance-backups/ib1", nil, "cA:204 pA:204 pM:204 pR:403 qA:404" + bad},
		{"POST", "/v1/projects/p/instance-backups/ib1/restore", map[string]any{"name": "i2"}, members},
		{"GET", "/v1/storage-pools", nil, anyValid},
		{"POST", "/v1/storage-pools", map[string]any{"name": "nfs", "type": "shared-dir", "path": "/mnt/nfs"}, "cA:201 pA:403 pM:403 pR:403 qA:403" + bad},
		{"GET", "/v1/storage-pools/local", nil, anyValid},
		{"DELETE", "/v1/storage-pools/sp1", nil, "cA:204 pA:403 pM:403 pR:403 qA:403" + bad},
		{"GET", "/v1/agents/{agent}/volumes", nil, agentOnly + " ag:200"},
		{"POST", "/v1/agents/{agent}/volumes", map[string]any{"volumes": []any{}}, agentOnly + " ag:204"},

		{"GET", "/v1/projects/p/images", nil, readersOfP},
		{"POST", "/v1/projects/p/images", map[string]any{"name": "img2", "kind": "container-rootfs"}, members},
		{"POST", "/v1/projects/p/images?public", map[string]any{"name": "img2", "kind": "container-rootfs", "visibility": "public"}, "cA:201 pA:403 pM:403 pR:403 qA:404" + bad},
		{"GET", "/v1/projects/p/images/img1", nil, readersOfP},
		{"PATCH", "/v1/projects/p/images/img1", map[string]any{"visibility": "shared", "shared_with": []string{"q"}}, "cA:200 pA:200 pM:200 pR:403 qA:404" + bad},
		{"PATCH", "/v1/projects/p/images/img1?public", map[string]any{"visibility": "public"}, "cA:200 pA:403 pM:403 pR:403 qA:404" + bad},
		{"GET", "/v1/projects/p/image-shares", nil, readersOfP},
		{"PUT", "/v1/projects/p/image-shares/q/qimg", map[string]any{"status": "accepted"}, "cA:200 pA:200 pM:200 pR:403 qA:404" + bad},
		{"DELETE", "/v1/projects/p/images/img1", nil, "cA:204 pA:204 pM:204 pR:403 qA:404" + bad},
		{"PUT", "/v1/projects/p/images/img1/file", "raw:not a tarball", "cA:400 pA:400 pM:400 pR:403 qA:404" + bad},
		{"GET", "/v1/projects/p/images/img1/file", nil, "cA:409 pA:409 pM:409 pR:409 qA:404" + bad},
		{"GET", "/v1/agents/{agent}/images/0000", nil, agentOnly + " ag:404"},
		{"GET", "/v1/agents/{agent}/sessions?wait=0", nil, agentOnly + " ag:200"},
		{"GET", "/v1/agents/{agent}/sessions/nope/stream", nil, agentOnly + " ag:404"},
		{"POST", "/v1/agents/{agent}/sessions/nope", map[string]any{"output": "", "exit_code": 0}, agentOnly + " ag:404"},
		{"POST", "/v1/agents/{agent}/migrations/nope", map[string]any{"instance": "nope", "host": "h1", "event": "progress"}, agentOnly + " ag:404"},
		{"GET", "/v1/agents/{agent}/migrations/nope/tunnel/mem?host=h1", nil, agentOnly + " ag:404"},

		{"GET", "/v1/hosts", nil, admins},
		{"GET", "/v1/consolidation", nil, admins},
		{"POST", "/v1/consolidation", nil, "cA:200 pA:403 pM:403 pR:403 qA:403" + bad},
		{"GET", "/v1/hosts/h1", nil, admins},
		{"PATCH", "/v1/hosts/h1", map[string]any{"enabled": false}, admins},
		{"POST", "/v1/hosts/h1/evacuate", map[string]any{"dry_run": true}, admins},
		{"DELETE", "/v1/hosts/h1", nil, "cA:204 pA:403 pM:403 pR:403 qA:403" + bad},
		{"POST", "/v1/join-tokens", map[string]any{}, "cA:201 pA:403 pM:403 pR:403 qA:403" + bad},
		{"GET", "/v1/join-tokens", nil, admins},
		{"DELETE", "/v1/join-tokens/{jt}", nil, "cA:204 pA:403 pM:403 pR:403 qA:403" + bad},
		{"POST", "/v1/agents", `{"join_token":"{jtsecret}","name":"a2","driver":"sim","hosts":[{"name":"h2","kinds":["vm"],"capacity":{"vcpus":2,"memory_mib":2048,"disk_gib":10}}]}`, "cA:201 pA:201 pM:201 pR:201 qA:201 anon:201 exp:201 rev:201 ag:201"},
		{"PUT", "/v1/agents/{agent}/hosts", map[string]any{"hosts": []map[string]any{{"name": "h1", "kinds": []string{"container"}, "capacity": map[string]int{"vcpus": 4, "memory_mib": 4096, "disk_gib": 10}}}}, agentOnly + " ag:200"},
		{"POST", "/v1/agents/{agent}/heartbeat", map[string]any{}, agentOnly + " ag:204"},
		{"POST", "/v1/agents/{agent}/usage", map[string]any{"usage": []any{}}, agentOnly + " ag:204"},
		{"GET", "/v1/agents/{agent}/assignments?wait=0", nil, agentOnly + " ag:200"},
		{"GET", "/v1/agents/{agent}/networks", nil, agentOnly + " ag:200"},
		{"POST", "/v1/agents/{agent}/reports", map[string]any{"instances": []any{}}, agentOnly + " ag:200"},

		{"GET", "/v1/projects/p/usage?from=2020-01-01&to=2020-02-01", nil, readersOfP},
		{"GET", "/v1/usage?from=2020-01-01&to=2020-02-01", nil, admins},
		{"GET", "/v1/prices", nil, anyValid},
		{"PUT", "/v1/prices/storage", map[string]any{"micro_per_hour": 100}, admins},
		{"PUT", "/v1/prices/storage/volumes", map[string]any{"micro_per_hour": 100}, admins},
		{"PUT", "/v1/prices/rules", map[string]any{"compute_states": []string{"RUNNING"}, "storage_states": []string{"STOPPED"}}, admins},
		{"PUT", "/v1/flavors/small/price", map[string]any{"micro_per_hour": 12000}, admins},

		{"GET", "/v1/flavors", nil, anyValid},
		{"POST", "/v1/flavors", map[string]any{"name": "f1", "vcpus": 1, "memory_mib": 512}, "cA:201 pA:403 pM:403 pR:403 qA:403" + bad},
		{"GET", "/v1/flavors/small", nil, anyValid},
		{"DELETE", "/v1/flavors/small", nil, "cA:204 pA:403 pM:403 pR:403 qA:403" + bad},
	}
}

type fixture struct {
	ts            *testServer
	tokens        map[string]string
	memberTokenID string
	opID          string
	agentID       string
	joinID        string
	joinSecret    string
	backupID      string
}

func newFixture(t *testing.T) *fixture { return newFixtureOn(t, newTestServer(t)) }

// newFixtureOn fills a test server with the matrix's cloud.
func newFixtureOn(t *testing.T, ts *testServer) *fixture {
	ctx := context.Background()
	ts.project("p")
	ts.project("q")
	f := &fixture{ts: ts, tokens: map[string]string{}}
	f.tokens["cA"] = ts.user("cadmin", true)
	f.tokens["pA"] = ts.user("padmin", false, "p", "admin")
	f.tokens["pM"] = ts.user("pmember", false, "p", "member")
	f.tokens["pR"] = ts.user("preader", false, "p", "reader")
	f.tokens["qA"] = ts.user("qadmin", false, "q", "admin")
	extra, _ := ts.s.ids.IssueToken(ctx, "pmember", "extra", time.Hour)
	f.memberTokenID = extra.ID
	exp, _ := ts.s.ids.IssueToken(ctx, "pmember", "short", time.Millisecond)
	f.tokens["exp"] = exp.Secret
	rev, _ := ts.s.ids.IssueToken(ctx, "pmember", "revoked", time.Hour)
	ts.s.ids.RevokeToken(ctx, rev.ID)
	f.tokens["rev"] = rev.Secret
	ts.s.ops.Register("test.noop", func(context.Context, *operations.Op) error { return nil })
	op, err := ts.s.ops.Start(ctx, "p", "test.noop", "nothing", "/v1/projects/p", nil)
	if err != nil {
		t.Fatal(err)
	}
	f.opID = op.ID
	ctxA := context.Background()
	if _, err := ts.s.compute.Create(ctxA, "p", api.InstancesPost{Name: "i1", Type: "container", Flavor: "tiny", Image: "x", Requirements: `RACK = "nowhere"`}); err != nil {
		t.Fatal(err)
	}
	if _, err := ts.s.compute.CreateGroup(ctxA, "p", api.ServerGroupsPost{Name: "g1", Policy: "affinity"}); err != nil {
		t.Fatal(err)
	}
	jt, err := ts.s.hosts.CreateJoinToken(ctxA, api.JoinTokensPost{})
	if err != nil {
		t.Fatal(err)
	}
	f.joinID, f.joinSecret = jt.ID, jt.Token
	ag, err := ts.s.hosts.Join(ctxA, api.AgentsPost{JoinToken: jt.Token, Name: "a1", Driver: "sim", Hosts: []api.HostSpec{{Name: "h1", Kinds: []string{"container"}, Capacity: api.Size{VCPUs: 4, MemoryMiB: 4096, DiskGiB: 10}}}})
	if err != nil {
		t.Fatal(err)
	}
	f.agentID, f.tokens["ag"] = ag.ID, ag.Credential
	if _, err := ts.s.images.Create(ctxA, "p", api.ImagesPost{Name: "img1", Kind: "container-rootfs"}); err != nil {
		t.Fatal(err)
	}
	if _, err := ts.s.images.Create(ctxA, "q", api.ImagesPost{Name: "qimg", Kind: "container-rootfs", Visibility: "shared", SharedWith: []string{"p"}}); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"net1", "net2"} {
		if _, err := ts.s.networks.CreateNetwork(ctxA, "p", api.NetworksPost{Name: n, CIDR: "10.20.0.0/24"}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := ts.s.networks.CreatePort(ctxA, "p", api.PortsPost{Name: "port1", Network: "net1"}); err != nil {
		t.Fatal(err)
	}
	if _, err := ts.s.networks.CreateSecurityGroup(ctxA, "p", api.SecurityGroupsPost{Name: "sg1"}); err != nil {
		t.Fatal(err)
	}
	if _, err := ts.s.networks.CreateNetwork(ctxA, "p", api.NetworksPost{Name: "pub", CIDR: "203.0.113.0/24", External: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := ts.s.networks.CreateFloatingIP(ctxA, "p", api.FloatingIPsPost{Network: "pub", IP: "203.0.113.10"}); err != nil {
		t.Fatal(err)
	}
	if _, err := ts.s.volumes.Create(ctxA, "p", api.VolumesPost{Name: "v1", SizeGiB: 1, Host: "h1"}, true); err != nil {
		t.Fatal(err)
	}
	// v3 is made on its host, with a snapshot s1 made too.
	v3, err := ts.s.volumes.Create(ctxA, "p", api.VolumesPost{Name: "v3", SizeGiB: 1, Host: "h1"}, true)
	if err != nil {
		t.Fatal(err)
	}
	live := liveInstances{ts.s.compute}
	if err := ts.s.volumes.Report(ctxA, map[string]bool{"h1": true}, live, []api.VolumeReport{{ID: v3.ID, Status: "ready", SizeGiB: 1}}); err != nil {
		t.Fatal(err)
	}
	s1, err := ts.s.volumes.CreateSnapshot(ctxA, "p", "v3", api.VolumeSnapshotsPost{Name: "s1"})
	if err != nil {
		t.Fatal(err)
	}
	if err := ts.s.volumes.Report(ctxA, map[string]bool{"h1": true}, live, []api.VolumeReport{{ID: v3.ID, Status: "ready", SizeGiB: 1, Snapshots: []api.SnapshotReport{{ID: s1.ID, Status: "ready"}}}}); err != nil {
		t.Fatal(err)
	}
	b1, err := ts.s.volumes.CreateBackup(ctxA, "p", "v3", api.VolumeBackupsPost{Name: "b1"})
	if err != nil {
		t.Fatal(err)
	}
	f.backupID = b1.ID
	i1, _, err := ts.s.compute.Get(ctxA, "p", "i1")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ts.s.volumes.CreateInstanceBackup(ctxA, "p", i1, api.InstanceBackupsPost{Name: "ib1", SkipRootDisk: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := ts.s.volumes.CreatePool(ctxA, api.StoragePoolsPost{Name: "sp1", Type: "shared-dir", Path: "/srv/sp1"}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Millisecond) // let the short token expire
	return f
}

func parseWant(t *testing.T, s string) map[string]int {
	out := map[string]int{}
	for _, part := range strings.Fields(s) {
		k, v, _ := strings.Cut(part, ":")
		n, err := strconv.Atoi(v)
		if err != nil {
			t.Fatalf("bad want %q", s)
		}
		out[k] = n
	}
	for _, p := range principals {
		if _, ok := out[p]; !ok {
			t.Fatalf("want %q does not say what %s gets", s, p)
		}
	}
	return out
}

func TestIsolationMatrix(t *testing.T) {
	cases := matrixCases()
	// Every endpoint of the table must be in the matrix.
	covered := map[string]bool{}
	for _, c := range cases {
		covered[c.method+" "+c.path] = true
	}
	for _, ep := range Endpoints() {
		found := false
		for k := range covered {
			m, path, _ := strings.Cut(k, " ")
			path, _, _ = strings.Cut(path, "?")
			if m == ep.Method && patternMatches(ep.Path, path) {
				found = true
			}
		}
		if !found {
			t.Errorf("endpoint %s %s has no row in the isolation matrix", ep.Method, ep.Path)
		}
	}
	for _, c := range cases {
		want := parseWant(t, c.want)
		for _, mode := range []string{"bearer", "cookie"} {
			for _, who := range principals {
				if mode == "cookie" && (who == "ag" || who == "anon" || who == "exp") {
					// Agents hold no browser sessions; no cookie and an
					// expired one take the path a revoked one does.
					continue
				}
				t.Run(fmt.Sprintf("%s %s as %s by %s", c.method, c.path, who, mode), func(t *testing.T) {
					t.Parallel()
					// A fresh cloud per call: calls change state.
					f := newFixture(t)
					rep := strings.NewReplacer("{token}", f.memberTokenID, "{op}", f.opID, "{agent}", f.agentID, "{jt}", f.joinID, "{jtsecret}", f.joinSecret, "{b1}", f.backupID)
					path := rep.Replace(c.path)
					body := c.body
					var hdr []string
					if b, ok := body.(string); ok {
						body = rep.Replace(b)
						if raw, isRaw := strings.CutPrefix(b, "raw:"); isRaw {
							body, hdr = raw, []string{"Content-Type", "application/octet-stream"}
						}
					}
					token := f.tokens[who]
					if mode == "cookie" && token != "" {
						// A browser session: the same token in the cookie,
						// with its CSRF token.
						hdr = append(hdr, "Cookie", sessionCookie+"="+token, csrfHeader, csrfFor(token))
						token = ""
					}
					got := f.ts.do(c.method, path, token, body, hdr...)
					if got.Status != want[who] {
						t.Fatalf("status %d, want %d: %s", got.Status, want[who], got.Body)
					}
					if got.Status == 404 && who == "qA" && strings.Contains(c.path, "/projects/p") {
						// Indistinguishable from a project that does not exist.
						ghost := f.ts.do(c.method, strings.Replace(path, "/projects/p", "/projects/nope", 1), token, c.body, hdr...)
						if ghost.Status != 404 || !strings.Contains(string(ghost.Body), `"code":"not_found"`) {
							t.Fatalf("a missing project answers %d %s", ghost.Status, ghost.Body)
						}
					}
				})
			}
		}
	}
}

// patternMatches reports whether a concrete path fits a {wildcard} pattern.
func patternMatches(pattern, path string) bool {
	ps, xs := strings.Split(pattern, "/"), strings.Split(path, "/")
	if len(ps) != len(xs) {
		return false
	}
	for i := range ps {
		if strings.HasPrefix(ps[i], "{") {
			continue
		}
		if ps[i] != xs[i] {
			return false
		}
	}
	return true
}

// Strangers see neither the operations nor the events of other projects.
func TestListsHideOtherProjects(t *testing.T) {
	f := newFixture(t)
	ops := f.ts.do("GET", "/v1/operations", f.tokens["qA"], nil)
	if strings.Contains(string(ops.Body), f.opID) {
		t.Fatalf("q's admin sees p's operation: %s", ops.Body)
	}
	evs := f.ts.do("GET", "/v1/events?follow=false", f.tokens["qA"], nil)
	// An event's own project (q's image may name p as a project it is
	// offered to: that is q's data).
	if strings.Contains(string(evs.Body), `"project":"p","resource"`) {
		t.Fatalf("q's admin sees p's events: %s", evs.Body)
	}
	projects := f.ts.do("GET", "/v1/projects", f.tokens["qA"], nil)
	if strings.Contains(string(projects.Body), `"name":"p"`) || !strings.Contains(string(projects.Body), `"name":"q"`) {
		t.Fatalf("q's admin's project list: %s", projects.Body)
	}
	if evs := f.ts.do("GET", "/v1/events?follow=false", f.tokens["pR"], nil); !strings.Contains(string(evs.Body), `"project":"p"`) {
		t.Fatalf("p's reader does not see p's events: %s", evs.Body)
	}
}
