package e2e

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kumocloud/kumo/api"
	"github.com/kumocloud/kumo/client"
)

// TestFirstStart: secrets are private, the admin password is printed once,
// the default quota is configurable, and a restart keeps everything.
func TestFirstStart(t *testing.T) {
	s := startServer(t, "--default-quota", "instances=3,memory=4GiB")
	if s.AdminPassword == "" || s.Fingerprint == "" {
		t.Fatalf("first start did not print the admin password and CA fingerprint:\n%s", s.out.String())
	}
	for _, f := range []string{"admin-credentials", "tls/ca.key", "tls/server.key", "kumo.sock"} {
		st, err := os.Stat(filepath.Join(s.dir, f))
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != 0o600 {
			t.Errorf("%s has mode %v, want 0600", f, st.Mode().Perm())
		}
	}
	cred, _ := os.ReadFile(filepath.Join(s.dir, "admin-credentials"))
	if !strings.Contains(string(cred), s.AdminPassword) {
		t.Errorf("admin-credentials does not hold the printed password")
	}
	ctx := context.Background()
	root := client.Socket(s.socket)
	p, err := root.CreateProject(ctx, api.ProjectsPost{Name: "small"})
	if err != nil {
		t.Fatal(err)
	}
	if p.Quota.Instances != 3 || p.Quota.MemoryMiB != 4096 || p.Quota.Networks != 10 {
		t.Errorf("default quota from --default-quota: %+v", p.Quota)
	}
	w, err := root.Whoami(ctx)
	if err != nil || !w.CloudAdmin || w.Via != "socket" {
		t.Errorf("socket caller: %+v %v", w, err)
	}

	s.stop() // SIGTERM: a clean exit (checked by stop)
	s.start()
	if strings.Contains(s.out.String(), "password") {
		t.Errorf("the admin password was printed again on restart:\n%s", s.out.String())
	}
	if _, err := client.Socket(s.socket).Project(ctx, "small"); err != nil {
		t.Errorf("project lost across a restart: %v", err)
	}
	if _, err := s.remote(t, "").Login(ctx, api.TokensPost{Username: "admin", Password: s.AdminPassword}); err != nil {
		t.Errorf("admin login after restart: %v", err)
	}
}
