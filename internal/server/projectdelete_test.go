package server

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/kumocloud/kumo/api"
	"github.com/kumocloud/kumo/internal/events"
	"github.com/kumocloud/kumo/internal/metering"
	"github.com/kumocloud/kumo/internal/store"
)

// deleteProjectAndWait deletes a project through the API and waits for
// the operation's end.
func (ts *testServer) deleteProjectAndWait(admin, name string) api.Operation {
	ts.t.Helper()
	r := ts.do("DELETE", "/v1/projects/"+name, admin, nil)
	if r.Status != 202 {
		ts.t.Fatalf("delete %s: %d %s", name, r.Status, r.Body)
	}
	var op api.Operation
	ts.do("GET", r.Header.Get("Location")+"?wait=30", admin, nil).decode(ts.t, &op)
	return op
}

// fillProject gives project web everything that lives under a project's
// name without counting in its quota, and history that does.
// Names of users and images end in round (one fill per round).
func fillProject(t *testing.T, ts *testServer, admin, round string) {
	ctx := context.Background()
	ts.project("web")
	ts.user("dev"+round, false, "web", "admin")
	for _, req := range []struct {
		path string
		body any
	}{
		{"/v1/projects/web/security-groups", map[string]any{"name": "sg1"}},
		{"/v1/projects/web/security-groups/sg1/rules", map[string]any{"direction": "ingress", "protocol": "tcp", "port_min": 22}},
		{"/v1/projects/web/server-groups", map[string]any{"name": "g1", "policy": "anti-affinity"}},
		{"/v1/users", map[string]any{"name": "carol" + round, "password": "password-carol", "default_project": "web"}},
		{"/v1/projects/web/images", map[string]any{"name": "gone", "kind": "container-rootfs"}},
		{"/v1/projects/other/images", map[string]any{"name": "shared" + round, "kind": "container-rootfs", "visibility": "shared", "shared_with": []string{"web"}}},
	} {
		if r := ts.do("POST", req.path, admin, req.body); r.Status != 201 {
			t.Fatalf("POST %s: %d %s", req.path, r.Status, r.Body)
		}
	}
	if err := ts.s.networks.EnsureDefaultGroup(ctx, "web"); err != nil {
		t.Fatal(err)
	}
	img := rootfs(t)
	for _, path := range []string{"/v1/projects/web/images/gone/file", "/v1/projects/other/images/shared" + round + "/file"} {
		if r := ts.do("PUT", path, admin, string(img), "Content-Type", "application/octet-stream"); r.Status != 200 {
			t.Fatalf("upload: %d %s", r.Status, r.Body)
		}
	}
	if r := ts.do("POST", "/v1/projects/web/instances", admin, api.InstancesPost{Name: "old", Type: "container", Flavor: "tiny", Image: "shared" + round, Requirements: `RACK = "nowhere"`}); r.Status != 201 {
		t.Fatalf("instance: %d %s", r.Status, r.Body)
	}
	for _, req := range []struct{ method, path string }{{"DELETE", "/v1/projects/web/images/gone"}} {
		if r := ts.do(req.method, req.path, admin, nil); r.Status != 204 {
			t.Fatalf("%s %s: %d %s", req.method, req.path, r.Status, r.Body)
		}
	}
	if r := ts.do("POST", "/v1/projects/web/instances/old/actions", admin, map[string]any{"action": "terminate"}); r.Status != 200 {
		t.Fatalf("terminate: %d %s", r.Status, r.Body)
	}
	if _, err := metering.MarkAlert(ctx, ts.s.store, "web", "2026-12", 80, events.Op(ctx, "budget", "threshold-80", "web", "/v1/projects/web", nil)); err != nil {
		t.Fatal(err)
	}
}

// checkNothingInherited checks a project web, just made, for what the
// deleted project of that name had.
func checkNothingInherited(t *testing.T, ts *testServer, admin, round string) {
	t.Helper()
	for _, path := range []string{
		"/v1/projects/web/security-groups", "/v1/projects/web/server-groups", "/v1/projects/web/members",
		"/v1/projects/web/instances?all=true",
	} {
		var l api.List[map[string]any]
		if r := ts.do("GET", path, admin, nil); r.Status != 200 {
			t.Fatalf("GET %s: %d %s", path, r.Status, r.Body)
		} else if r.decode(t, &l); len(l.Items) != 0 {
			t.Errorf("the new project inherited from %s: %+v", path, l.Items)
		}
	}
	var imgs api.List[api.Image]
	ts.do("GET", "/v1/projects/web/images", admin, nil).decode(t, &imgs)
	for _, im := range imgs.Items {
		if strings.HasPrefix(im.Name, "shared") {
			t.Errorf("the new project inherited a share: %+v", im)
		}
	}
	var u api.User
	ts.do("GET", "/v1/users/carol"+round, admin, nil).decode(t, &u)
	if u.DefaultProject == "web" {
		t.Errorf("carol's default project still points at web")
	}
	var d api.User
	ts.do("GET", "/v1/users/dev"+round, admin, nil).decode(t, &d)
	if len(d.Roles) != 0 {
		t.Errorf("dev inherited a role: %+v", d.Roles)
	}
	var rep api.UsageReport
	ts.do("GET", "/v1/projects/web/usage?from=2020-01-01&to="+ts.s.now().Format("2006-01-02T15:04:05Z"), admin, nil).decode(t, &rep)
	if len(rep.Groups) != 0 {
		t.Errorf("the new project's usage has the old one's: %+v", rep.Groups)
	}
	for _, prefix := range []string{"/metering/alerts/web/", "/archive/instances/web/", "/archive/images/web/"} {
		if n := keysUnder(t, ts, prefix); n != 0 {
			t.Errorf("the old project's records under %s: %d", prefix, n)
		}
	}
}

func keysUnder(t *testing.T, ts *testServer, prefix string) int {
	kvs, err := store.ListAll(context.Background(), ts.s.store, prefix)
	if err != nil {
		t.Fatal(err)
	}
	return len(kvs)
}

// A deleted project leaves nothing behind: a new project of the same name
// inherits none of its security groups (the default one included),
// server groups, role bindings, default-project pointers, shares of other
// projects' images, instance and image history, or budget alerts. The
// history itself stays for showback, under a name no project can have.
func TestDeletedProjectLeavesNothingBehind(t *testing.T) {
	ts := validated(t)
	admin := ts.user("boss", true)
	ts.project("other")
	fillProject(t, ts, admin, "1")
	if op := ts.deleteProjectAndWait(admin, "web"); op.Status != api.OpSucceeded {
		t.Fatalf("delete: %+v", op)
	}
	if r := ts.do("POST", "/v1/projects", admin, map[string]any{"name": "web"}); r.Status != 201 {
		t.Fatalf("re-create: %d %s", r.Status, r.Body)
	}
	checkNothingInherited(t, ts, admin, "1")
	// The history is kept, under a name no project can have.
	for _, prefix := range []string{"/archive/instances/web.deleted-", "/archive/images/web.deleted-"} {
		if n := keysUnder(t, ts, prefix); n != 1 {
			t.Errorf("history under %s: %d records", prefix, n)
		}
	}
}

// A project being deleted takes nothing new: the deletion waits for the
// requests already in it, refuses new ones, and a deletion cut short
// (here by a failing step) is finished by running it again.
func TestProjectDeletionFencesAndResumes(t *testing.T) {
	ts := validated(t)
	admin := ts.user("boss", true)
	ts.project("other")
	fillProject(t, ts, admin, "1")
	ctx := context.Background()

	leave, err := ts.s.fence.enter("web") // a request still at work in web
	if err != nil {
		t.Fatal(err)
	}
	r := ts.do("DELETE", "/v1/projects/web", admin, nil)
	if r.Status != 202 {
		t.Fatalf("delete: %d %s", r.Status, r.Body)
	}
	waitFor(t, "the fence to close", func() bool {
		in, err := ts.s.fence.enter("web")
		if err == nil {
			in()
		}
		return err != nil
	})
	for _, req := range []struct {
		method, path string
		body         any
	}{
		{"POST", "/v1/projects/web/security-groups", map[string]any{"name": "late"}},
		{"POST", "/v1/projects/web/server-groups", map[string]any{"name": "late", "policy": "affinity"}},
		{"PUT", "/v1/projects/web/members/boss", map[string]any{"role": "reader"}},
		{"DELETE", "/v1/projects/web", nil},
	} {
		if r := ts.do(req.method, req.path, admin, req.body); r.Status != 409 || !strings.Contains(string(r.Body), "being deleted") {
			t.Fatalf("%s %s during the deletion: %d %s", req.method, req.path, r.Status, r.Body)
		}
	}
	var op api.Operation
	ts.do("GET", r.Header.Get("Location"), admin, nil).decode(t, &op)
	if op.Status != api.OpRunning {
		t.Fatalf("the deletion did not wait for the request in the project: %+v", op)
	}
	leave()
	ts.do("GET", r.Header.Get("Location")+"?wait=30", admin, nil).decode(t, &op)
	if op.Status != api.OpSucceeded {
		t.Fatalf("delete: %+v", op)
	}

	// Cut short after the first cleanup step: marked, half cleaned.
	fillProject(t, ts, admin, "2")
	var p api.Project
	ts.do("GET", "/v1/projects/web", admin, nil).decode(t, &p)
	crash := errors.New("crash")
	err = ts.s.ids.DeleteProject(ctx, "web", p.ID, func(ctx context.Context, id string) error {
		if err := ts.s.networks.DeleteProjectGroups(ctx, "web"); err != nil {
			return err
		}
		return crash
	}, nil)
	if !errors.Is(err, crash) {
		t.Fatalf("cut-short deletion: %v", err)
	}
	ts.do("GET", "/v1/projects/web", admin, nil).decode(t, &p)
	if !p.Deleting {
		t.Fatalf("a project whose deletion began is not marked: %+v", p)
	}
	if r := ts.do("POST", "/v1/users", admin, map[string]any{"name": "late", "password": "password-late", "default_project": "web"}); r.Status != 400 {
		t.Fatalf("a new user's default project being deleted: %d %s", r.Status, r.Body)
	}
	// The resumed operation finishes; a re-run after the end is a no-op
	// that never touches a new project of the same name.
	rerun(t, ts, "web", p.ID)
	if r := ts.do("POST", "/v1/projects", admin, map[string]any{"name": "web"}); r.Status != 201 {
		t.Fatalf("re-create: %d %s", r.Status, r.Body)
	}
	checkNothingInherited(t, ts, admin, "2")
	rerun(t, ts, "web", p.ID)
	if r := ts.do("GET", "/v1/projects/web", admin, nil); r.Status != 200 {
		t.Fatalf("a stale deletion touched the new project: %d %s", r.Status, r.Body)
	}
}

// rerun runs the deletion of project (of id) as a resumed operation does.
func rerun(t *testing.T, ts *testServer, name, id string) {
	t.Helper()
	ctx := context.Background()
	op, err := ts.s.ops.Start(ctx, name, opDeleteProject, "resumed", "/v1/projects/"+name, map[string]string{"project": name, "project_id": id})
	if err != nil {
		t.Fatal(err)
	}
	if op, err = ts.s.ops.Wait(ctx, op.ID, 30*time.Second); err != nil || op.Status != api.OpSucceeded {
		t.Fatalf("the deletion run again: %+v %v", op, err)
	}
}
