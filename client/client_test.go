package client

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	"github.com/kumocloud/kumo/api"
)

// TestRetriesWhenTooMany: a 429 with a short Retry-After is waited out
// and the same request (body and idempotency key) sent again; a long one
// is the caller's error at once.
func TestRetriesWhenTooMany(t *testing.T) {
	var mu sync.Mutex
	var bodies, keys []string
	refuse, wait := 2, "1"
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		defer mu.Unlock()
		bodies, keys = append(bodies, string(b)), append(keys, r.Header.Get("Idempotency-Key"))
		if refuse > 0 {
			refuse--
			w.Header().Set("Retry-After", wait)
			w.WriteHeader(http.StatusTooManyRequests)
			io.WriteString(w, `{"error":{"code":"too_many","message":"slow down"}}`)
			return
		}
		io.WriteString(w, `{"name":"p1"}`)
	}))
	defer srv.Close()
	c := &Client{base: srv.URL, hc: srv.Client()}
	ctx := WithIdempotencyKey(context.Background(), "k1")
	p, err := c.CreateProject(ctx, api.ProjectsPost{Name: "p1"})
	if err != nil || p.Name != "p1" {
		t.Fatalf("after two 429s: %+v %v", p, err)
	}
	if len(bodies) != 3 || bodies[2] != bodies[0] || bodies[0] == "" || keys[2] != "k1" {
		t.Fatalf("the retries did not resend the same request: bodies %q keys %q", bodies, keys)
	}

	refuse, wait, bodies = 1, "60", nil
	if _, err := c.CreateProject(ctx, api.ProjectsPost{Name: "p1"}); StatusOf(err) != http.StatusTooManyRequests {
		t.Fatalf("a 429 asking for a minute: %v, want it returned", err)
	}
	if len(bodies) != 1 {
		t.Fatalf("%d requests for a 429 asking for a minute, want 1", len(bodies))
	}
}
