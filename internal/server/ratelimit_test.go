package server

import (
	"context"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/kumocloud/kumo/internal/identity"
	"github.com/kumocloud/kumo/internal/store/memstore"
)

// TestAPIRateLimits: a project's members share one bucket for the
// project's endpoints, a user has one for the rest, an empty bucket
// answers 429 with Retry-After and names who is limited, other tenants
// and cloud admins go on.
func TestAPIRateLimits(t *testing.T) {
	opts := identity.DefaultOptions()
	opts.BcryptCost = bcrypt.MinCost
	s, err := NewWithStore(context.Background(), Config{DataDir: t.TempDir(), Identity: opts, APIRate: APIRate{Rate: 0.5, Burst: 3}}, memstore.New())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	ts := &testServer{t: t, s: s, net: s.Handler()}
	ts.project("a")
	ts.project("b")
	alice := ts.user("alice", false, "a", "member")
	carol := ts.user("carol", false, "a", "member")
	bob := ts.user("bob", false, "b", "member")
	admin := ts.user("root2", true)

	for i := 0; i < 3; i++ {
		if r := ts.do("GET", "/v1/projects/a/instances", alice, nil); r.Status != http.StatusOK {
			t.Fatalf("request %d within the burst: %d %s", i, r.Status, r.Body)
		}
	}
	// carol shares project a's bucket: it is empty.
	r := ts.do("GET", "/v1/projects/a/instances", carol, nil)
	if r.Status != http.StatusTooManyRequests {
		t.Fatalf("over project a's burst: %d %s, want 429", r.Status, r.Body)
	}
	if ra, err := strconv.Atoi(r.Header.Get("Retry-After")); err != nil || ra < 1 || ra > 3 {
		t.Errorf("Retry-After %q, want 1-3 s at 0.5 requests/s", r.Header.Get("Retry-After"))
	}
	if msg := r.errBody(t).Message; !strings.Contains(msg, `project "a"`) {
		t.Errorf("the refusal does not name the project: %q", msg)
	}
	// Others are not held back: another project, the user's own bucket
	// outside projects, a cloud admin on project a.
	if r := ts.do("GET", "/v1/projects/b/instances", bob, nil); r.Status != http.StatusOK {
		t.Errorf("project b held back by project a: %d", r.Status)
	}
	if r := ts.do("GET", "/v1/whoami", alice, nil); r.Status != http.StatusOK {
		t.Errorf("alice's own bucket held back by project a's: %d", r.Status)
	}
	for i := 0; i < 10; i++ {
		if r := ts.do("GET", "/v1/projects/a/instances", admin, nil); r.Status != http.StatusOK {
			t.Fatalf("a cloud admin was limited: %d %s", r.Status, r.Body)
		}
	}
}

// TestRateBucketsPruned: buckets idle long enough to be full again go.
func TestRateBucketsPruned(t *testing.T) {
	l := newRateLimits(APIRate{Rate: 10, Burst: 20})
	now := time.Now()
	for i := 0; i < 100; i++ {
		l.take("u:"+strconv.Itoa(i), now)
	}
	if ok, _ := l.take("u:0", now.Add(2*time.Second)); !ok || len(l.buckets) != 100 {
		t.Fatalf("%d buckets before they are idle", len(l.buckets))
	}
	l.take("u:new", now.Add(5*time.Minute))
	if len(l.buckets) != 1 {
		t.Fatalf("%d buckets kept after all were idle for minutes, want 1", len(l.buckets))
	}
}
