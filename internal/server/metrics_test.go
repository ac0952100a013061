package server

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/kumocloud/kumo/api"
	"github.com/kumocloud/kumo/internal/identity"
	"github.com/kumocloud/kumo/internal/store/memstore"
)

// /metrics shows per-project series (project names, usage, cost) only to
// cloud admins and to scrapers holding the metrics token; anyone else gets
// the process and HTTP series.
func TestMetricsHidePerProjectSeries(t *testing.T) {
	dir := t.TempDir()
	tokFile := filepath.Join(dir, "metrics-token")
	const scraper = "scraper-token-0123456789"
	if err := os.WriteFile(tokFile, []byte(scraper+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	opts := identity.DefaultOptions()
	opts.BcryptCost = bcrypt.MinCost
	clk := &fakeClock{t: day}
	s, err := NewWithStore(context.Background(), Config{DataDir: dir, Identity: opts, MetricsTokenFile: tokFile, Clock: clk.Now}, memstore.New())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	ts := &testServer{t: t, s: s, net: s.Handler()}
	ts.project("secret-project")
	admin := ts.user("boss", true)
	member := ts.user("m", false, "secret-project", "admin")
	// An image stored in the project for an hour puts it in metering's
	// series.
	if r := ts.do("POST", "/v1/projects/secret-project/images", member, api.ImagesPost{Name: "img", Kind: api.KindContainerRootfs}); r.Status != 201 {
		t.Fatalf("image: %d %s", r.Status, r.Body)
	}
	if r := ts.do("PUT", "/v1/projects/secret-project/images/img/file", member, rootfsTarball(t), "Content-Type", "application/octet-stream"); r.Status != 200 {
		t.Fatalf("upload: %d %s", r.Status, r.Body)
	}
	clk.Add(time.Hour)
	if err := s.meter.CheckBudgets(context.Background()); err != nil {
		t.Fatal(err)
	}
	ts.do("GET", "/healthz", "", nil) // an HTTP series to see
	tests := []struct {
		name, bearer string
		projects     bool
	}{
		{"no credentials", "", false},
		{"a project admin's token", member, false},
		{"a wrong scraper token", "scraper-token-0123456788", false},
		{"a cloud admin's token", admin, true},
		{"the metrics token", scraper, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := ts.do("GET", "/metrics", tc.bearer, nil)
			body := string(r.Body)
			if r.Status != 200 || !strings.Contains(body, "kumo_http_requests_total") || !strings.Contains(body, "go_goroutines") {
				t.Fatalf("status %d, public series missing:\n%.400s", r.Status, body)
			}
			if got := strings.Contains(body, "secret-project"); got != tc.projects {
				t.Fatalf("per-project series shown: %v, want %v", got, tc.projects)
			}
		})
	}
	// A token file others can read is refused at start.
	os.Chmod(tokFile, 0o644)
	if _, err := NewWithStore(context.Background(), Config{DataDir: t.TempDir(), Identity: opts, MetricsTokenFile: tokFile}, memstore.New()); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Fatalf("a world-readable token file: %v", err)
	}
}
