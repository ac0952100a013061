package server

import (
	"context"
	"errors"
	"fmt"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/kumocloud/kumo/api"
	"github.com/kumocloud/kumo/internal/errs"
	"github.com/kumocloud/kumo/internal/identity"
	"github.com/kumocloud/kumo/internal/quota"
)

func TestBadInputNamesTheField(t *testing.T) {
	ts := validated(t)
	admin := ts.user("root2", true)
	long := strings.Repeat("a", 64)
	tests := []struct {
		name, method, path string
		body               any
		status             int
		field              string
	}{
		{"malformed JSON", "POST", "/v1/projects", `{"name": "x"`, 400, "body"},
		{"not an object", "POST", "/v1/projects", `[1,2]`, 400, "body"},
		{"empty body", "POST", "/v1/projects", ``, 400, "body"},
		{"two values", "POST", "/v1/projects", `{"name":"a"} {"name":"b"}`, 400, "body"},
		{"unknown field", "POST", "/v1/projects", `{"name":"a","colour":"red"}`, 400, "colour"},
		{"wrong type", "POST", "/v1/projects", `{"name":42}`, 400, "name"},
		{"name too long", "POST", "/v1/projects", map[string]any{"name": long}, 400, "name"},
		{"name not DNS-like", "POST", "/v1/projects", map[string]any{"name": "Web_1"}, 400, "name"},
		{"name missing", "POST", "/v1/projects", map[string]any{"description": "x"}, 400, "name"},
		{"negative quota", "POST", "/v1/projects", map[string]any{"name": "a", "quota": map[string]int{"instances": -3}}, 400, "quota.instances"},
		{"unknown quota", "POST", "/v1/projects", map[string]any{"name": "a", "quota": map[string]int{"gpus": 1}}, 400, "quota.gpus"},
		{"bad label key", "POST", "/v1/projects", map[string]any{"name": "a", "labels": map[string]string{"bad key": "v"}}, 400, "labels.bad key"},
		{"escape in a description", "POST", "/v1/projects", map[string]any{"name": "a", "description": "x\x1b[2Jy"}, 400, "description"},
		{"newline in a description", "POST", "/v1/projects", map[string]any{"name": "a", "description": "one\ntwo"}, 400, "description"},
		{"bidi control in a label", "POST", "/v1/projects", map[string]any{"name": "a", "labels": map[string]string{"k": "abc\u202efdp.exe"}}, 400, "labels.k"},
		{"NUL in a flavor description", "POST", "/v1/flavors", map[string]any{"name": "f", "vcpus": 1, "memory_mib": 512, "description": "a\x00b"}, 400, "description"},
		{"NUL in user-data", "POST", "/v1/projects/default/instances", map[string]any{"name": "i", "type": "vm", "flavor": "tiny", "image": "x", "user_data": "#!/bin/sh\x00"}, 400, "user_data"},
		{"short password", "POST", "/v1/users", map[string]any{"name": "bob", "password": "short"}, 400, "password"},
		{"bad role", "PUT", "/v1/projects/default/members/root2", map[string]any{"role": "owner"}, 400, "role"},
		{"bad flavor", "POST", "/v1/flavors", map[string]any{"name": "f", "vcpus": 0, "memory_mib": 512}, 400, "vcpus"},
		{"bad limit", "GET", "/v1/projects?limit=0", nil, 400, "limit"},
		{"bad label filter", "GET", "/v1/projects?label=novalue", nil, 400, "label"},
		{"bad wait", "GET", "/v1/operations/x?wait=soon", nil, 404, ""},
		{"unknown project", "GET", "/v1/projects/nope", nil, 404, ""},
		{"unknown flavor", "GET", "/v1/flavors/nope", nil, 404, ""},
		{"unknown endpoint", "GET", "/v1/nothing-here", nil, 404, ""},
		{"name taken", "POST", "/v1/projects", map[string]any{"name": "default"}, 409, ""},
		{"default project undeletable", "DELETE", "/v1/projects/default", nil, 409, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := ts.do(tc.method, tc.path, admin, tc.body)
			if r.Status != tc.status {
				t.Fatalf("status %d, want %d: %s", r.Status, tc.status, r.Body)
			}
			e := r.errBody(t)
			if e.Field != tc.field || e.Message == "" {
				t.Fatalf("error %+v, want field %q", e, tc.field)
			}
		})
	}
	// Nothing half-made: none of the refused projects exists.
	var l api.List[api.Project]
	ts.do("GET", "/v1/projects", admin, nil).decode(t, &l)
	if len(l.Items) != 1 || l.Items[0].Name != "default" {
		t.Fatalf("projects after bad input: %+v", l.Items)
	}
}

func TestQuotaAndUsageShown(t *testing.T) {
	ts := validated(t)
	admin := ts.user("boss", true)
	r := ts.do("POST", "/v1/projects", admin, map[string]any{"name": "web", "quota": map[string]int64{"instances": 10, "vcpus": 20, "memory_mib": 20480}})
	if r.Status != 201 {
		t.Fatalf("create: %d %s", r.Status, r.Body)
	}
	var p api.Project
	r.decode(t, &p)
	def := quota.Defaults()
	if p.Quota.Instances != 10 || p.Quota.MemoryMiB != 20480 || p.Quota.Networks != def.Networks {
		t.Fatalf("quota = %+v", p.Quota)
	}
	// Usage reserved by a resource shows up live.
	if _, err := quota.Reserve(context.Background(), ts.s.store, "web", api.ResourceCounts{Instances: 2, VCPUs: 4}, nil, nil); err != nil {
		t.Fatal(err)
	}
	ts.do("GET", "/v1/projects/web", admin, nil).decode(t, &p)
	if p.Usage.Instances != 2 || p.Usage.VCPUs != 4 {
		t.Fatalf("usage = %+v", p.Usage)
	}
	// Over quota names resource, limit and usage.
	ts.do("PUT", "/v1/projects/web/quota", admin, map[string]any{"quota": map[string]int{"instances": 2}})
	_, err := quota.Reserve(context.Background(), ts.s.store, "web", api.ResourceCounts{Instances: 1}, nil, nil)
	status, body := errorOf(err)
	if status != 403 || body.Code != api.CodeQuotaExceeded || body.Field != "instances" || !strings.Contains(body.Message, "limit 2, in use 2") {
		t.Fatalf("over quota: %d %+v", status, body)
	}
	// A project holding resources cannot be deleted.
	if r := ts.do("DELETE", "/v1/projects/web", admin, nil); r.Status != 409 || !strings.Contains(string(r.Body), "2 instances") {
		t.Fatalf("delete of a busy project: %d %s", r.Status, r.Body)
	}
}

func TestIdempotencyKey(t *testing.T) {
	ts := validated(t)
	admin := ts.user("boss", true)
	body := map[string]any{"name": "once"}
	r1 := ts.do("POST", "/v1/projects", admin, body, "Idempotency-Key", "k1")
	r2 := ts.do("POST", "/v1/projects", admin, body, "Idempotency-Key", "k1")
	if r1.Status != 201 || r2.Status != 201 || string(r1.Body) != string(r2.Body) || r2.Header.Get("Idempotent-Replayed") != "true" {
		t.Fatalf("retry: %d %s / %d %s", r1.Status, r1.Body, r2.Status, r2.Body)
	}
	// Without the key, the same create is a conflict.
	if r := ts.do("POST", "/v1/projects", admin, body); r.Status != 409 {
		t.Fatalf("plain retry: %d", r.Status)
	}
	// The same key with another body is refused.
	if r := ts.do("POST", "/v1/projects", admin, map[string]any{"name": "other"}, "Idempotency-Key", "k1"); r.Status != 409 {
		t.Fatalf("key reuse: %d %s", r.Status, r.Body)
	}
	// A 4xx is remembered too: the retry gets the same answer.
	bad := map[string]any{"name": "BAD"}
	a := ts.do("POST", "/v1/projects", admin, bad, "Idempotency-Key", "k2")
	b := ts.do("POST", "/v1/projects", admin, bad, "Idempotency-Key", "k2")
	if a.Status != 400 || b.Status != 400 || string(a.Body) != string(b.Body) {
		t.Fatalf("bad create retried: %d / %d", a.Status, b.Status)
	}
}

func TestPaginationAndLabels(t *testing.T) {
	ts := validated(t)
	admin := ts.user("boss", true)
	for i := 0; i < 7; i++ {
		tier := "web"
		if i%2 == 1 {
			tier = "db"
		}
		r := ts.do("POST", "/v1/projects", admin, map[string]any{"name": fmt.Sprintf("p%d", i), "labels": map[string]string{"tier": tier}})
		if r.Status != 201 {
			t.Fatal(string(r.Body))
		}
	}
	var names []string
	after := ""
	for pages := 0; pages < 10; pages++ {
		var l api.List[api.Project]
		ts.do("GET", "/v1/projects?limit=3&after="+after, admin, nil).decode(t, &l)
		for _, p := range l.Items {
			names = append(names, p.Name)
		}
		if l.Next == "" {
			break
		}
		after = l.Next
	}
	if strings.Join(names, ",") != "default,p0,p1,p2,p3,p4,p5,p6" {
		t.Fatalf("paged: %v", names)
	}
	var l api.List[api.Project]
	ts.do("GET", "/v1/projects?label=tier=db", admin, nil).decode(t, &l)
	if len(l.Items) != 3 || l.Next != "" {
		t.Fatalf("label filter: %+v", l)
	}
	ts.do("GET", "/v1/projects?label=tier=db&limit=2", admin, nil).decode(t, &l)
	if len(l.Items) != 2 || l.Next == "" {
		t.Fatalf("label filter, paged: %d items, next %q", len(l.Items), l.Next)
	}
}

func TestLoginTokensAndRateLimit(t *testing.T) {
	ts := validated(t)
	ts.user("alice", false)
	ok := ts.do("POST", "/v1/tokens", "", map[string]any{"username": "alice", "password": "password-alice", "ttl_seconds": 3600})
	if ok.Status != 201 {
		t.Fatalf("login: %d %s", ok.Status, ok.Body)
	}
	var tok api.Token
	ok.decode(t, &tok)
	if !strings.HasPrefix(tok.Secret, "kumo_") || time.Until(tok.ExpiresAt) > time.Hour+time.Minute {
		t.Fatalf("token %+v", tok)
	}
	if r := ts.do("GET", "/v1/whoami", tok.Secret, nil); r.Status != 200 {
		t.Fatalf("whoami: %d", r.Status)
	}
	// Tokens are stored hashed: the secret is nowhere in the store.
	if r := ts.do("GET", "/v1/tokens", tok.Secret, nil); strings.Contains(string(r.Body), tok.Secret) {
		t.Fatal("token list shows the secret")
	}
	// Revoked: refused at once.
	ts.do("DELETE", "/v1/tokens/"+tok.ID, tok.Secret, nil)
	if r := ts.do("GET", "/v1/whoami", tok.Secret, nil); r.Status != 401 || !strings.Contains(string(r.Body), "revoked") {
		t.Fatalf("revoked token: %d %s", r.Status, r.Body)
	}
	// Five wrong passwords lock the name out from that address, even for
	// the right one...
	for i := 0; i < 5; i++ {
		if r := ts.do("POST", "/v1/tokens", "", map[string]any{"username": "alice", "password": "wrong-password"}); r.Status != 401 {
			t.Fatalf("wrong password %d: %d", i, r.Status)
		}
	}
	r := ts.do("POST", "/v1/tokens", "", map[string]any{"username": "alice", "password": "password-alice"})
	if r.Status != 429 {
		t.Fatalf("after 5 failures: %d %s", r.Status, r.Body)
	}
	// ...and from there only: alice at her own address is not locked out.
	if r := ts.do("POST", "/v1/tokens", "", map[string]any{"username": "alice", "password": "password-alice"}, "RemoteAddr", "198.51.100.9:4444"); r.Status != 201 {
		t.Fatalf("the right password from another address: %d %s", r.Status, r.Body)
	}
	// Unknown users and wrong passwords are told apart by nothing.
	a := ts.do("POST", "/v1/tokens", "", map[string]any{"username": "nobody", "password": "x"})
	if a.Status != 429 && (a.Status != 401 || !strings.Contains(string(a.Body), "wrong user name or password")) {
		t.Fatalf("unknown user: %d %s", a.Status, a.Body)
	}
}

func TestProjectDeleteIsAsync(t *testing.T) {
	ts := validated(t)
	admin := ts.user("boss", true)
	ts.project("gone")
	ts.user("member1", false, "gone", "member")
	r := ts.do("DELETE", "/v1/projects/gone", admin, nil)
	if r.Status != 202 || !strings.HasPrefix(r.Header.Get("Location"), "/v1/operations/") {
		t.Fatalf("delete: %d %v %s", r.Status, r.Header, r.Body)
	}
	var op api.Operation
	ts.do("GET", r.Header.Get("Location")+"?wait=10", admin, nil).decode(t, &op)
	if op.Status != api.OpSucceeded || op.Progress != 100 {
		t.Fatalf("operation %+v", op)
	}
	if r := ts.do("GET", "/v1/projects/gone", admin, nil); r.Status != 404 {
		t.Fatalf("project still there: %d", r.Status)
	}
	var u api.User
	ts.do("GET", "/v1/users/member1", admin, nil).decode(t, &u)
	if len(u.Roles) != 0 {
		t.Fatalf("role binding left behind: %+v", u.Roles)
	}
}

func TestEventsResume(t *testing.T) {
	ts := validated(t)
	admin := ts.user("boss", true)
	ts.do("POST", "/v1/projects", admin, map[string]any{"name": "e1"})
	all := parseSSE(t, ts.do("GET", "/v1/events?follow=false", admin, nil).Body)
	if len(all) < 2 {
		t.Fatalf("events: %+v", all)
	}
	last := all[len(all)-1]
	if last.Type != "project" || last.Action != "created" || last.Project != "e1" || last.Actor != "boss" {
		t.Fatalf("last event %+v", last)
	}
	ts.do("POST", "/v1/projects", admin, map[string]any{"name": "e2"})
	more := parseSSE(t, ts.do("GET", fmt.Sprintf("/v1/events?follow=false&since=%d", last.ID), admin, nil).Body)
	if len(more) != 1 || more[0].Project != "e2" || more[0].ID <= last.ID {
		t.Fatalf("resumed: %+v", more)
	}
	// An event's ID is its revision*4096 plus its place: the revision is
	// the object's, as a list shows it (the web console relies on this).
	var e2 api.Project
	ts.do("GET", "/v1/projects/e2", admin, nil).decode(t, &e2)
	if more[0].ID/4096 != e2.Revision {
		t.Fatalf("event %d is of revision %d; the project it made is at %d", more[0].ID, more[0].ID/4096, e2.Revision)
	}
	// A browser reconnecting sends its URL's since and, in Last-Event-ID,
	// the last event it got: the later one counts, either way round.
	for _, c := range []struct{ since, header int64 }{{1, last.ID}, {last.ID, 1}} {
		got := parseSSE(t, ts.do("GET", fmt.Sprintf("/v1/events?follow=false&since=%d", c.since), admin, nil, "Last-Event-ID", fmt.Sprint(c.header)).Body)
		if len(got) != 1 || got[0].ID != more[0].ID {
			t.Fatalf("since=%d with Last-Event-ID %d: %d events, want only %d", c.since, c.header, len(got), more[0].ID)
		}
	}
	if r := ts.do("GET", "/v1/events?follow=false", admin, nil, "Last-Event-ID", "x"); r.Status != 400 || !strings.Contains(string(r.Body), "Last-Event-ID") {
		t.Fatalf("a bad Last-Event-ID: %d %s", r.Status, r.Body)
	}
	typed := parseSSE(t, ts.do("GET", "/v1/events?follow=false&type=flavor", admin, nil).Body)
	for _, ev := range typed {
		if ev.Type != "flavor" {
			t.Fatalf("type filter let %q through", ev.Type)
		}
	}
}

// TestPermissionsFailClosed: every row of the endpoint table declares its
// permission, and one that did not (or declared one the middleware does
// not know) would be refused to everyone, cloud admins included - never
// public.
func TestPermissionsFailClosed(t *testing.T) {
	for _, ep := range Endpoints() {
		if ep.Perm == PermUnset {
			t.Errorf("%s %s declares no permission", ep.Method, ep.Path)
		}
	}
	admin := &identity.Principal{User: "root", CloudAdmin: true}
	for _, perm := range []Permission{PermUnset, PermAgent + 1} {
		r := httptest.NewRequest("GET", "/v1/projects/p/things", nil)
		r.SetPathValue("project", "p")
		for _, who := range []*identity.Principal{nil, admin} {
			if err := authorize(perm, who, nil, r); !errors.Is(err, errs.ErrForbidden) {
				t.Errorf("permission %d for %v: %v, want refused", perm, who, err)
			}
		}
	}
}

// TestListsArePaged: a list asked without a limit answers a page, and the
// pages (DONE instances after the live ones) give every item once.
func TestListsArePaged(t *testing.T) {
	ts := validated(t)
	admin := ts.user("boss", true)
	ctx := context.Background()
	if _, err := ts.s.ids.SetQuota(ctx, "default", map[string]int64{"instances": -1, "vcpus": -1, "memory_mib": -1, "disk_gib": -1}); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 1200; i++ {
		if _, err := ts.s.compute.Create(ctx, "default", api.InstancesPost{Name: fmt.Sprintf("i%04d", i), Type: "vm", Flavor: "tiny", Image: "x"}); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < 30; i++ {
		if _, err := ts.s.compute.Action(ctx, "default", fmt.Sprintf("i%04d", i), "terminate"); err != nil {
			t.Fatal(err)
		}
	}
	var page api.List[api.Instance]
	ts.do("GET", "/v1/projects/default/instances", admin, nil).decode(t, &page)
	if len(page.Items) != 500 || page.Next == "" {
		t.Fatalf("a list without a limit: %d items, next %q", len(page.Items), page.Next)
	}
	seen := map[string]bool{}
	after, pages := "", 0
	for {
		path := "/v1/projects/default/instances?all=true&limit=1000"
		if after != "" {
			path += "&after=" + after
		}
		var p api.List[api.Instance]
		ts.do("GET", path, admin, nil).decode(t, &p)
		pages++
		for _, in := range p.Items {
			if seen[in.Name] {
				t.Fatalf("%s twice", in.Name)
			}
			seen[in.Name] = true
		}
		if p.Next == "" || pages > 5 {
			break
		}
		after = p.Next
	}
	if len(seen) != 1200 {
		t.Fatalf("the pages gave %d instances, want 1200 (1170 live, 30 DONE)", len(seen))
	}
}

// TestPagesAreOnePicture: an instance that goes DONE while a client pages
// through `--all` (from the live instances, which come first, to the
// archive) is listed once, as it was when the listing began; a cursor
// naming a revision the store has not reached is refused.
func TestPagesAreOnePicture(t *testing.T) {
	ts := validated(t)
	admin := ts.user("boss", true)
	ctx := context.Background()
	for i := range 6 {
		if _, err := ts.s.compute.Create(ctx, "default", api.InstancesPost{Name: fmt.Sprintf("i%d", i), Type: "vm", Flavor: "tiny", Image: "x"}); err != nil {
			t.Fatal(err)
		}
	}
	var first api.List[api.Instance]
	ts.do("GET", "/v1/projects/default/instances?all=true&limit=2", admin, nil).decode(t, &first)
	if len(first.Items) != 2 || first.Next == "" {
		t.Fatalf("first page: %d items, next %q", len(first.Items), first.Next)
	}
	// i0 was on the first page; i4 is on a later one. Both go DONE (a
	// PENDING instance terminated is archived at once).
	for _, name := range []string{"i0", "i4"} {
		if _, err := ts.s.compute.Action(ctx, "default", name, "terminate"); err != nil {
			t.Fatal(err)
		}
	}
	states := map[string][]api.State{}
	for _, in := range first.Items {
		states[in.Name] = append(states[in.Name], in.State)
	}
	for after, pages := first.Next, 0; after != "" && pages < 10; pages++ {
		var p api.List[api.Instance]
		ts.do("GET", "/v1/projects/default/instances?all=true&limit=2&after="+url.QueryEscape(after), admin, nil).decode(t, &p)
		for _, in := range p.Items {
			states[in.Name] = append(states[in.Name], in.State)
		}
		after = p.Next
	}
	for i := range 6 {
		name := fmt.Sprintf("i%d", i)
		if got := states[name]; len(got) != 1 || got[0] != api.StatePending {
			t.Errorf("%s listed as %v, want once, PENDING (as when the listing began)", name, got)
		}
	}
	// A listing begun now sees them DONE.
	var now api.List[api.Instance]
	ts.do("GET", "/v1/projects/default/instances?all=true", admin, nil).decode(t, &now)
	done := 0
	for _, in := range now.Items {
		if in.State == api.StateDone {
			done++
		}
	}
	if len(now.Items) != 6 || done != 2 {
		t.Fatalf("a new listing: %d items, %d DONE; want 6, 2", len(now.Items), done)
	}
	if r := ts.do("GET", "/v1/projects/default/instances?after="+url.QueryEscape("@999999999:i1"), admin, nil); r.Status != 400 || !strings.Contains(string(r.Body), "after") {
		t.Fatalf("a cursor from the future: %d %s", r.Status, r.Body)
	}
}
