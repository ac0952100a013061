package server

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/kumocloud/kumo/internal/identity"
	"github.com/kumocloud/kumo/internal/store/memstore"
	"golang.org/x/crypto/bcrypt"
)

// TestStreamsEndWithTheirCredential: an event stream opened with a token
// ends, saying why, once the token is revoked or its user leaves the
// project it follows - as a request made then would be refused. (A
// console stayed open as root after logout and removal from the project.)
func TestStreamsEndWithTheirCredential(t *testing.T) {
	opts := identity.DefaultOptions()
	opts.BcryptCost = bcrypt.MinCost
	s, err := NewWithStore(context.Background(), Config{DataDir: t.TempDir(), Identity: opts, StreamRecheck: 20 * time.Millisecond}, memstore.New())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	ts := &testServer{t: t, s: s, net: s.Handler()}
	ts.project("p")
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		cut  func(user, secret string)
	}{
		{"token revoked", func(user, secret string) {
			p, err := s.ids.Authenticate(ctx, secret)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := s.ids.RevokeToken(ctx, p.TokenID); err != nil {
				t.Fatal(err)
			}
		}},
		{"removed from the project", func(user, _ string) {
			if err := s.ids.RemoveMember(ctx, "p", user); err != nil {
				t.Fatal(err)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			user := strings.ReplaceAll(tc.name, " ", "-")
			secret := ts.user(user, false, "p", "member")
			done := make(chan resp, 1)
			go func() { done <- ts.do("GET", "/v1/events?project=p&follow=true", secret, nil) }()
			// Still open while the credential holds.
			select {
			case r := <-done:
				t.Fatalf("the stream ended with its credential valid: %d %s", r.Status, r.Body)
			case <-time.After(200 * time.Millisecond):
			}
			tc.cut(user, secret)
			select {
			case r := <-done:
				if r.Status != 200 || !strings.Contains(string(r.Body), "event: error") || !strings.Contains(string(r.Body), "no longer allows it") {
					t.Fatalf("the stream ended without saying why: %d %s", r.Status, r.Body)
				}
			case <-time.After(30 * time.Second):
				t.Fatal("the stream went on after its credential stopped allowing it")
			}
		})
	}
}
