package server

import (
	"strings"
	"testing"

	"github.com/kumocloud/kumo/api"
)

// An agent takes part only in the migrations of its own hosts: a third
// agent cannot report a migration between two others' hosts received
// (the commit), failed or progressing - under its own host's name or
// theirs - nor open a channel of its tunnel: each a 404 that names
// nothing (the repeat of a report answered the instance, user data and
// all, to any agent); the migration goes on as if it had said nothing.
func TestAgentTouchesOnlyItsOwnMigrations(t *testing.T) {
	ts, admin, _, intruder, target, in := migratingInstance(t)
	m := in.Migration
	at := func(a api.Agent, rest string) string { return "/v1/agents/" + a.ID + rest }
	for _, host := range []string{"ht", "hv", "hi"} {
		for _, ev := range []string{api.MigrationReceived, api.MigrationFailed, api.MigrationProgress} {
			r := ts.do("POST", at(intruder, "/migrations/"+m.ID), intruder.Credential, api.MigrationReport{Instance: in.ID, Host: host, Event: ev, Reason: "forged", Progress: 50})
			if r.Status != 404 || strings.Contains(string(r.Body), "the-victims-secret") || strings.Contains(string(r.Body), `"i1"`) {
				t.Errorf("the intruder's %s as %s: %d %s", ev, host, r.Status, r.Body)
			}
		}
		if r := ts.do("GET", at(intruder, "/migrations/"+m.ID+"/tunnel/cold?host="+host), intruder.Credential, nil); r.Status != 404 {
			t.Errorf("the intruder opened the tunnel as %s: %d %s", host, r.Status, r.Body)
		}
	}
	var after api.Instance
	ts.do("GET", "/v1/projects/p/instances/i1", admin, nil).decode(t, &after)
	if after.State != api.StateMigrate || after.Migration == nil || after.Migration.Phase != api.MigrationTransfer || after.Migration.Progress != m.Progress || after.Host != "hv" {
		t.Fatalf("the migration after the intruder: %s %+v on %s", after.State, after.Migration, after.Host)
	}
	if r := ts.do("GET", "/v1/projects/p/instances/i1/history", admin, nil); strings.Contains(string(r.Body), "forged") {
		t.Errorf("the intruder's reason is in the history: %s", r.Body)
	}
	// The target's own word is taken.
	if r := ts.do("POST", at(target, "/migrations/"+m.ID), target.Credential, api.MigrationReport{Instance: in.ID, Host: "ht", Event: api.MigrationReceived}); r.Status != 200 {
		t.Fatalf("the target's report: %d %s", r.Status, r.Body)
	}
}

// migratingInstance is victimsInstance i1 migrating (cold: a container)
// from hv (victim's host) to ht (target's), in its transfer phase; hi is
// the intruder's host.
func migratingInstance(t *testing.T) (ts *testServer, admin string, victim, intruder, target api.Agent, in api.Instance) {
	ts, admin, jt, victim, intruder := victimAndIntruder(t)
	target = ts.joinAgent(jt.Token, "local", "ht")
	for _, h := range []string{"hi", "ht"} {
		ts.do("PATCH", "/v1/hosts/"+h, admin, map[string]any{"enabled": false}) // place on hv
	}
	in = ts.victimsInstance(admin, rootfs(t))
	at := func(a api.Agent, rest string) string { return "/v1/agents/" + a.ID + rest }
	for _, step := range [][2]api.State{{api.StateProlog, api.StateBoot}, {api.StateBoot, api.StateRunning}} {
		var res api.AgentReportResult
		ts.do("POST", at(victim, "/reports"), victim.Credential, api.AgentReport{Instances: []api.InstanceReport{{ID: in.ID, Host: "hv", From: step[0], To: step[1]}}}).decode(t, &res)
		if res.Applied != 1 {
			t.Fatalf("victim's report %v: %+v", step, res)
		}
	}
	ts.do("PATCH", "/v1/hosts/ht", admin, map[string]any{"enabled": true})
	waitFor(t, "ht enabled for the scheduler: the migration started", func() bool {
		r := ts.do("POST", "/v1/projects/p/instances/i1/migrate", admin, api.InstanceMigrate{Host: "ht"})
		return r.Status == 202
	})
	ts.do("GET", "/v1/projects/p/instances/i1", admin, nil).decode(t, &in)
	m := in.Migration
	if m == nil || m.Phase != api.MigrationTransfer {
		t.Fatalf("the migration: %+v", m)
	}
	return ts, admin, victim, intruder, target, in
}
