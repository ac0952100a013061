package server

import (
	"fmt"
	"testing"
	"time"

	"github.com/kumocloud/kumo/api"
)

// TestAgentNetworkViewIsPushed: an agent's long poll of its network view
// (?version= of the view it has, ?wait=) waits while nothing changes and
// is answered by the change itself when a port moves to another host: a
// migration's commit, the one event that moves it, answers the poll of a
// third host with the port's new VXLAN endpoint - not the end of the
// wait. Answers are whole views; a bad wait is a 400.
func TestAgentNetworkViewIsPushed(t *testing.T) {
	ts := validated(t)
	admin := ts.user("boss", true)
	ts.project("p")
	var jt api.JoinToken
	ts.do("POST", "/v1/join-tokens", admin, map[string]any{}).decode(t, &jt)
	agents := map[string]api.Agent{}
	for i, h := range []string{"h1", "h2", "h3"} {
		var a api.Agent
		r := ts.do("POST", "/v1/agents", "", api.AgentsPost{JoinToken: jt.Token, Name: "agent-" + h, Driver: "sim",
			Hosts: []api.HostSpec{{Name: h, Kinds: []string{"container"}, Address: fmt.Sprintf("192.0.2.%d", i+1), Capacity: api.Size{VCPUs: 8, MemoryMiB: 8192, DiskGiB: 100}}}})
		if r.Status != 201 {
			t.Fatalf("join %s: %d %s", h, r.Status, r.Body)
		}
		r.decode(t, &a)
		agents[h] = a
	}
	agentGet := func(h, query string) resp {
		return ts.do("GET", "/v1/agents/"+agents[h].ID+"/networks"+query, agents[h].Credential, nil)
	}
	view := func(r resp) api.AgentNetworks {
		t.Helper()
		if r.Status != 200 {
			t.Fatalf("view: %d %s", r.Status, r.Body)
		}
		var v api.AgentNetworks
		r.decode(t, &v)
		return v
	}
	img := rootfs(t)
	ts.do("POST", "/v1/projects/p/images", admin, map[string]any{"name": "img", "kind": "container-rootfs"})
	if r := ts.do("PUT", "/v1/projects/p/images/img/file", admin, string(img), "Content-Type", "application/octet-stream"); r.Status != 200 {
		t.Fatalf("upload: %d %s", r.Status, r.Body)
	}
	if r := ts.do("POST", "/v1/projects/p/networks", admin, map[string]any{"name": "app", "cidr": "10.50.0.0/24"}); r.Status != 201 {
		t.Fatalf("network: %d %s", r.Status, r.Body)
	}
	// c1 runs on h1, c3 on h3 (the other hosts disabled meanwhile).
	place := func(name, host string) api.Instance {
		t.Helper()
		for _, h := range []string{"h1", "h2", "h3"} {
			ts.do("PATCH", "/v1/hosts/"+h, admin, map[string]any{"enabled": h == host})
		}
		if r := ts.do("POST", "/v1/projects/p/instances", admin, api.InstancesPost{Name: name, Type: "container", Flavor: "tiny", Image: "img", Networks: []string{"app"}}); r.Status != 201 {
			t.Fatalf("create %s: %d %s", name, r.Status, r.Body)
		}
		var in api.Instance
		waitFor(t, name+" placed on "+host, func() bool {
			ts.do("GET", "/v1/projects/p/instances/"+name, admin, nil).decode(t, &in)
			return in.Host == host
		})
		for _, step := range [][2]api.State{{api.StateProlog, api.StateBoot}, {api.StateBoot, api.StateRunning}} {
			var res api.AgentReportResult
			ts.do("POST", "/v1/agents/"+agents[host].ID+"/reports", agents[host].Credential,
				api.AgentReport{Instances: []api.InstanceReport{{ID: in.ID, Host: host, From: step[0], To: step[1]}}}).decode(t, &res)
			if res.Applied != 1 {
				t.Fatalf("%s %v: %+v", name, step, res)
			}
		}
		return in
	}
	c1 := place("c1", "h1")
	place("c3", "h3")
	for _, h := range []string{"h1", "h2", "h3"} {
		ts.do("PATCH", "/v1/hosts/"+h, admin, map[string]any{"enabled": true})
	}
	mac := c1.NICs[0].MAC
	// peerOf is the host whose VTEP a view sends c1's MAC to.
	peerOf := func(v api.AgentNetworks) string {
		for _, n := range v.Networks {
			for _, p := range n.Peers {
				for _, m := range p.MACs {
					if m == mac {
						return p.Host + "@" + p.VTEP
					}
				}
			}
		}
		return ""
	}
	v0 := view(agentGet("h3", ""))
	if v0.Version == "" || peerOf(v0) != "h1@192.0.2.1" {
		t.Fatalf("h3's view before the move: version %q, c1's MAC to %q: %+v", v0.Version, peerOf(v0), v0)
	}
	if again := view(agentGet("h3", "?names_version="+v0.NamesVersion)); again.Version != v0.Version {
		t.Fatalf("the same view, names left out, has another version: %s, %s", again.Version, v0.Version)
	}
	if r := agentGet("h3", "?wait=-1"); r.Status != 400 {
		t.Fatalf("wait=-1: %d %s", r.Status, r.Body)
	}
	// Nothing changes: a short wait ends with the same view.
	if v := view(agentGet("h3", "?wait=0.1&version="+v0.Version)); v.Version != v0.Version || peerOf(v) != "h1@192.0.2.1" {
		t.Fatalf("an unchanged view after a wait: %+v", v)
	}

	// h3's agent waits (a minute at most) for its view to change.
	answer := make(chan resp, 1)
	go func() { answer <- agentGet("h3", "?wait=60&version="+v0.Version) }()
	waitFor(t, "h3's long poll to wait", func() bool { return ts.s.viewPolls.Load() == 1 })

	// c1 moves cold to h2: its port is on h1 until the target says it
	// has it.
	var in api.Instance
	if r := ts.do("POST", "/v1/projects/p/instances/c1/migrate", admin, api.InstanceMigrate{Host: "h2"}); r.Status != 202 {
		t.Fatalf("migrate: %d %s", r.Status, r.Body)
	}
	ts.do("GET", "/v1/projects/p/instances/c1", admin, nil).decode(t, &in)
	if in.Migration == nil {
		t.Fatalf("c1 is not migrating: %+v", in)
	}
	mig := in.Migration.ID
	report := func(h, event string) {
		t.Helper()
		r := ts.do("POST", "/v1/agents/"+agents[h].ID+"/migrations/"+mig, agents[h].Credential,
			api.MigrationReport{Instance: c1.ID, Host: h, Event: event, Stats: &api.MigrationStats{Transferred: 1}})
		if r.Status != 200 {
			t.Fatalf("%s reports %s: %d %s", h, event, r.Status, r.Body)
		}
	}
	report("h1", api.MigrationSent)
	select {
	case r := <-answer:
		t.Fatalf("h3's poll was answered before c1's port moved: %s", r.Body)
	default:
	}
	report("h2", api.MigrationReceived) // the commit: c1 is on h2
	var got api.AgentNetworks
	select {
	case r := <-answer:
		got = view(r)
	case <-time.After(30 * time.Second): // half the poll's wait: only the move can answer it
		t.Fatal("h3's long poll was not answered when c1's port moved to h2")
	}
	if got.Version == v0.Version || peerOf(got) != "h2@192.0.2.2" {
		t.Fatalf("h3's view after the move: version %q (before %q), c1's MAC to %q: %+v", got.Version, v0.Version, peerOf(got), got)
	}
	if n := ts.s.viewPolls.Load(); n != 0 {
		t.Fatalf("%d polls still waiting", n)
	}
}
