package server

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/kumocloud/kumo/internal/identity"
	"github.com/kumocloud/kumo/internal/store"
	"github.com/kumocloud/kumo/internal/store/memstore"
)

// stalledCredentials is a store whose watches of tokens and users
// deliver nothing once stalled: the server's cached copy then knows only
// what the server itself writes.
type stalledCredentials struct {
	store.Store
	stalled atomic.Bool
	release chan struct{}
}

func (s *stalledCredentials) Watch(ctx context.Context, prefix string, from int64) <-chan store.WatchEvent {
	in := s.Store.Watch(ctx, prefix, from)
	if prefix != "/tokens/" && prefix != "/users/" {
		return in
	}
	out := make(chan store.WatchEvent)
	go func() {
		defer close(out)
		for ev := range in {
			if s.stalled.Load() {
				select {
				case <-s.release:
				case <-ctx.Done():
					return
				}
			}
			select {
			case out <- ev:
			case <-ctx.Done():
				return
			}
		}
	}()
	return out
}

// TestRevokedTokenRefusedAtOnce: credentials are read from memory, yet a
// token revoked through the API is refused on the very next request,
// even when the watch that keeps the copy has not brought the change.
func TestRevokedTokenRefusedAtOnce(t *testing.T) {
	st := &stalledCredentials{Store: memstore.New(), release: make(chan struct{})}
	ts := newTestServerOn(t, st)
	t.Cleanup(func() { close(st.release) })
	tok, err := ts.s.ids.IssueToken(context.Background(), identity.AdminUser, "doomed", 0)
	if err != nil {
		t.Fatal(err)
	}
	if r := ts.do("GET", "/v1/whoami", tok.Secret, nil); r.Status != 200 {
		t.Fatalf("whoami: %d %s", r.Status, r.Body)
	}
	st.stalled.Store(true)
	if r := ts.do("DELETE", "/v1/tokens/"+tok.ID, tok.Secret, nil); r.Status >= 300 {
		t.Fatalf("revoke: %d %s", r.Status, r.Body)
	}
	if r := ts.do("GET", "/v1/whoami", tok.Secret, nil); r.Status != 401 || !strings.Contains(string(r.Body), "revoked") {
		t.Fatalf("the request after the revocation: %d %s; want 401 revoked", r.Status, r.Body)
	}
}
