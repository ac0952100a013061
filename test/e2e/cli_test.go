package e2e

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kumocloud/kumo/api"
)

// TestCLITour walks the README's tour as root on the local socket, then as
// a tenant over HTTPS after 'kumo login'.
func TestCLITour(t *testing.T) {
	s := startServer(t)
	root := []string{"KUMO_SOCKET=" + s.socket}

	if !strings.Contains(must(t, root, "", "version"), "server: ") {
		t.Error("kumo version does not show the server")
	}
	fl := must(t, root, "", "flavor", "list")
	for _, name := range []string{"tiny", "small", "medium", "large", "xlarge", "high-cpu", "high-mem"} {
		if !strings.Contains(fl, name) {
			t.Errorf("flavor list lacks %s:\n%s", name, fl)
		}
	}
	must(t, root, "", "project", "create", "web", "--quota", "instances=10,vcpus=20,memory=20GiB", "--wait")
	must(t, root, "alice-password\n", "user", "create", "alice", "--password-stdin")
	must(t, root, "", "user", "grant", "alice", "--project", "web", "--role", "member")
	y := must(t, root, "", "project", "show", "web", "-o", "yaml")
	for _, want := range []string{"name: web", "instances: 10", "vcpus: 20", "memory_mib: 20480"} {
		if !strings.Contains(y, want) {
			t.Errorf("project show -o yaml lacks %q:\n%s", want, y)
		}
	}
	var p api.Project
	if err := json.Unmarshal([]byte(must(t, root, "", "project", "show", "web", "-o", "json")), &p); err != nil || p.Quota.Instances != 10 {
		t.Fatalf("project show -o json: %+v %v", p, err)
	}
	members := must(t, root, "", "project", "members", "web")
	if !strings.Contains(members, "alice") || !strings.Contains(members, "member") {
		t.Errorf("members: %s", members)
	}

	// An asynchronous delete, followed to its end.
	must(t, root, "", "project", "create", "scratch")
	if out := must(t, root, "", "project", "delete", "scratch", "--wait"); !strings.Contains(out, "done") {
		t.Errorf("delete --wait: %s", out)
	}
	ops := must(t, root, "", "operation", "list", "--all-projects")
	if !strings.Contains(ops, "Deleting project scratch") || !strings.Contains(ops, "succeeded") {
		t.Errorf("operation list: %s", ops)
	}
	evs := lines(must(t, root, "", "event", "watch", "--all-projects", "--no-follow", "-o", "json"))
	var sawWeb bool
	for _, l := range evs {
		var ev api.Event
		if err := json.Unmarshal([]byte(l), &ev); err != nil {
			t.Fatalf("event line %q: %v", l, err)
		}
		if ev.Type == "project" && ev.Action == "created" && ev.Project == "web" && ev.Actor == "local" {
			sawWeb = true
		}
	}
	if !sawWeb {
		t.Errorf("no project-created event for web in %d events", len(evs))
	}

	// Errors: one line, naming what is wrong, non-zero exit.
	bad := []struct {
		args []string
		code int
		want string
	}{
		{[]string{"project", "show", "nope"}, 1, `project "nope" not found`},
		{[]string{"project", "create", "Bad_Name"}, 1, "not a valid name"},
		{[]string{"project", "create", "web"}, 1, "already exists"},
		{[]string{"project", "create", "x", "--quota", "gpus=1"}, 2, "unknown resource"},
		{[]string{"user", "grant", "alice", "--project", "web", "--role", "owner"}, 1, "not a role"},
		{[]string{"project", "list", "-o", "xml"}, 2, "--output"},
		{[]string{"frobnicate"}, 2, "unknown command"},
	}
	for _, b := range bad {
		r := kumo(t, root, "", b.args...)
		if r.code != b.code || !strings.Contains(r.err, b.want) || len(lines(r.err)) != 1 || !strings.HasPrefix(r.err, "Error: ") {
			t.Errorf("kumo %v: exit %d, stderr %q; want exit %d and one line with %q", b.args, r.code, r.err, b.code, b.want)
		}
	}

	// The tenant logs in over HTTPS, pinning the CA.
	cfg := []string{"KUMO_CONFIG=" + filepath.Join(t.TempDir(), "config.yaml")}
	r := kumo(t, cfg, "alice-password\n", "login", s.url(), "--user", "alice", "--password-stdin", "--accept-fingerprint", strings.Repeat("ab", 32))
	if r.code == 0 || !strings.Contains(r.err, "fingerprint") {
		t.Fatalf("login with a wrong fingerprint: exit %d %s", r.code, r.err)
	}
	must(t, cfg, "alice-password\n", "login", s.url(), "--user", "alice", "--password-stdin", "--accept-fingerprint", s.Fingerprint, "--name", "lab")
	if out := must(t, cfg, "", "remote", "list"); !strings.Contains(out, "lab (current)") {
		t.Errorf("remote list: %s", out)
	}
	who := must(t, cfg, "", "whoami")
	if !strings.Contains(who, "user: alice") || !strings.Contains(who, "default_project: web") {
		t.Errorf("whoami: %s", who)
	}
	list := must(t, cfg, "", "project", "list")
	if !strings.Contains(list, "web") || strings.Contains(list, "default") {
		t.Errorf("alice sees: %s", list)
	}
	if r := kumo(t, cfg, "", "project", "show", "default"); r.code != 1 || !strings.Contains(r.err, "not found") {
		t.Errorf("alice shows another project: exit %d %s", r.code, r.err)
	}
	if r := kumo(t, cfg, "", "project", "create", "mine"); r.code != 1 || !strings.Contains(r.err, "cloud admin") {
		t.Errorf("alice creates a project: exit %d %s", r.code, r.err)
	}
	if out := must(t, cfg, "", "flavor", "list"); !strings.Contains(out, "small") {
		t.Errorf("alice's flavor list: %s", out)
	}

	// Scripts: a token in the environment, no config file at all.
	tok := must(t, cfg, "", "token", "create", "--description", "ci", "-o", "json")
	var created api.Token
	if err := json.Unmarshal([]byte(tok), &created); err != nil || created.Secret == "" {
		t.Fatalf("token create: %s", tok)
	}
	env := []string{"KUMO_REMOTE=" + s.url(), "KUMO_TOKEN=" + created.Secret, "KUMO_CA_FINGERPRINT=" + s.Fingerprint, "KUMO_PROJECT=web"}
	if out := must(t, env, "", "project", "show"); !strings.Contains(out, "name: web") {
		t.Errorf("env-configured show: %s", out)
	}
	if r := kumo(t, []string{"KUMO_REMOTE=" + s.url(), "KUMO_TOKEN=" + created.Secret}, "", "whoami"); r.code != 2 || !strings.Contains(r.err, "KUMO_CA_FINGERPRINT") {
		t.Errorf("remote URL without fingerprint: exit %d %s", r.code, r.err)
	}
	must(t, cfg, "", "token", "revoke", created.ID)
	if r := kumo(t, env, "", "whoami"); r.code != 1 || !strings.Contains(r.err, "revoked") {
		t.Errorf("revoked token: exit %d %s", r.code, r.err)
	}
	// A password change asks for the current password and ends alice's
	// other tokens; the CLI's own session goes on.
	tok = must(t, cfg, "", "token", "create", "--description", "other", "-o", "json")
	if err := json.Unmarshal([]byte(tok), &created); err != nil {
		t.Fatal(err)
	}
	other := []string{"KUMO_REMOTE=" + s.url(), "KUMO_TOKEN=" + created.Secret, "KUMO_CA_FINGERPRINT=" + s.Fingerprint}
	if r := kumo(t, cfg, "wrong-password\nalice-password-2\n", "user", "passwd", "alice", "--password-stdin"); r.code != 1 || !strings.Contains(r.err, "current_password") {
		t.Errorf("passwd with a wrong current password: exit %d %s", r.code, r.err)
	}
	must(t, cfg, "alice-password\nalice-password-2\n", "user", "passwd", "alice", "--password-stdin")
	must(t, cfg, "", "whoami")
	if r := kumo(t, other, "", "whoami"); r.code != 1 || !strings.Contains(r.err, "password") {
		t.Errorf("another token after passwd: exit %d %s", r.code, r.err)
	}
	must(t, cfg, "", "logout")
	if r := kumo(t, cfg, "", "remote", "list"); strings.Contains(r.out, "lab") {
		t.Errorf("remote kept after logout: %s", r.out)
	}
	// Shell completion is generated.
	if out := must(t, nil, "", "completion", "bash"); !strings.Contains(out, "bash completion") {
		t.Error("no bash completion")
	}
}
