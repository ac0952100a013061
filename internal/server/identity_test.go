package server

import (
	"strings"
	"testing"

	"github.com/kumocloud/kumo/api"
)

// A deleted user's name, given to a new user, inherits nothing of the old
// user: not their tokens (the new user here is a cloud admin, so an old
// token would be worth much more), nor the answers remembered for their
// Idempotency-Keys.
func TestReusedUserNameInheritsNothing(t *testing.T) {
	ts := validated(t)
	admin := ts.user("boss", true)
	ts.project("p")
	old := ts.user("alice", false, "p", "member")
	body := map[string]any{"name": "g1", "policy": "affinity"}
	if r := ts.do("POST", "/v1/projects/p/server-groups", old, body, "Idempotency-Key", "k1"); r.Status != 201 {
		t.Fatalf("create: %d %s", r.Status, r.Body)
	}
	if r := ts.do("DELETE", "/v1/projects/p/server-groups/g1", old, nil); r.Status != 204 {
		t.Fatalf("delete: %d %s", r.Status, r.Body)
	}
	if r := ts.do("DELETE", "/v1/users/alice", admin, nil); r.Status != 204 {
		t.Fatalf("delete user: %d %s", r.Status, r.Body)
	}
	if r := ts.do("POST", "/v1/users", admin, map[string]any{"name": "alice", "password": "password-alice", "cloud_admin": true}); r.Status != 201 {
		t.Fatalf("new alice: %d %s", r.Status, r.Body)
	}
	if r := ts.do("GET", "/v1/whoami", old, nil); r.Status != 401 {
		t.Fatalf("the old alice's token as the new alice: %d %s", r.Status, r.Body)
	}
	var tok api.Token
	ts.do("POST", "/v1/tokens", "", map[string]any{"username": "alice", "password": "password-alice"}).decode(t, &tok)
	r := ts.do("POST", "/v1/projects/p/server-groups", tok.Secret, body, "Idempotency-Key", "k1")
	if r.Status != 201 || r.Header.Get("Idempotent-Replayed") == "true" {
		t.Fatalf("the new alice got the old one's answer: %d %v %s", r.Status, r.Header, r.Body)
	}
	var l api.List[api.Token]
	ts.do("GET", "/v1/tokens", tok.Secret, nil).decode(t, &l)
	if len(l.Items) != 1 || l.Items[0].ID != tok.ID {
		t.Fatalf("the new alice's tokens: %+v", l.Items)
	}
}

// Over HTTP: a token made with a token is capped at its parent's expiry
// and dies with it; a password change asks for the current password and
// ends the user's other tokens.
func TestTokenFamiliesAndPasswordChange(t *testing.T) {
	ts := validated(t)
	ts.user("bob", false)
	var login api.Token
	ts.do("POST", "/v1/tokens", "", map[string]any{"username": "bob", "password": "password-bob", "ttl_seconds": 3600}).decode(t, &login)
	var child api.Token
	r := ts.do("POST", "/v1/tokens", login.Secret, map[string]any{"description": "ci", "ttl_seconds": 300 * 24 * 3600})
	r.decode(t, &child)
	if r.Status != 201 || !child.ExpiresAt.Equal(login.ExpiresAt) || child.Parent != login.ID {
		t.Fatalf("child: %d %s (parent expires %s)", r.Status, r.Body, login.ExpiresAt)
	}
	var second api.Token
	ts.do("POST", "/v1/tokens", "", map[string]any{"username": "bob", "password": "password-bob"}).decode(t, &second)
	ts.do("DELETE", "/v1/tokens/"+login.ID, second.Secret, nil)
	if r := ts.do("GET", "/v1/whoami", child.Secret, nil); r.Status != 401 {
		t.Fatalf("child after its parent's revocation: %d %s", r.Status, r.Body)
	}

	var third api.Token
	ts.do("POST", "/v1/tokens", "", map[string]any{"username": "bob", "password": "password-bob", "ttl_seconds": 3600}).decode(t, &third)
	if r := ts.do("PUT", "/v1/users/bob/password", second.Secret, map[string]any{"password": "new-password-1"}); r.Status != 400 || r.errBody(t).Field != "current_password" {
		t.Fatalf("without the current password: %d %s", r.Status, r.Body)
	}
	if r := ts.do("PUT", "/v1/users/bob/password", second.Secret, map[string]any{"password": "new-password-1", "current_password": "password-bob"}); r.Status != 204 {
		t.Fatalf("change: %d %s", r.Status, r.Body)
	}
	if r := ts.do("GET", "/v1/whoami", second.Secret, nil); r.Status != 200 {
		t.Fatalf("the token that made the change: %d %s", r.Status, r.Body)
	}
	if r := ts.do("GET", "/v1/whoami", third.Secret, nil); r.Status != 401 || !strings.Contains(string(r.Body), "password") {
		t.Fatalf("another token after the change: %d %s", r.Status, r.Body)
	}
}
