package server

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/kumocloud/kumo/api"
)

// login opens a browser session and returns its cookies by name.
func (ts *testServer) login(user, password string) (map[string]*http.Cookie, api.WebSession) {
	ts.t.Helper()
	r := ts.do("POST", "/v1/session", "", map[string]any{"username": user, "password": password})
	if r.Status != 201 {
		ts.t.Fatalf("login: %d %s", r.Status, r.Body)
	}
	var sess api.WebSession
	r.decode(ts.t, &sess)
	cookies := map[string]*http.Cookie{}
	for _, c := range (&http.Response{Header: r.Header}).Cookies() {
		cookies[c.Name] = c
	}
	return cookies, sess
}

func TestWebSessionCookieAndCSRF(t *testing.T) {
	ts := newTestServer(t)
	ts.project("p")
	ts.user("alice", false, "p", "member")
	cookies, sess := ts.login("alice", "password-alice")

	sc, cc := cookies[sessionCookie], cookies[csrfCookie]
	if sc == nil || cc == nil {
		t.Fatalf("cookies: %v", cookies)
	}
	if !sc.HttpOnly || !sc.Secure || sc.SameSite != http.SameSiteStrictMode || sc.Path != "/" || sc.Domain != "" || sc.Expires.IsZero() {
		t.Fatalf("session cookie flags: %+v", sc)
	}
	if cc.HttpOnly || !cc.Secure || cc.SameSite != http.SameSiteStrictMode || cc.Value != sess.CSRFToken || sess.CSRFToken == "" {
		t.Fatalf("csrf cookie %+v, session %+v", cc, sess)
	}
	if sess.User != "alice" || sess.Via != "cookie" {
		t.Fatalf("session: %+v", sess)
	}
	cookie := sessionCookie + "=" + sc.Value
	// The token itself is never in the body: scripts cannot read it.
	if r := ts.do("GET", "/v1/session", "", nil, "Cookie", cookie); r.Status != 200 || strings.Contains(string(r.Body), sc.Value) || !strings.Contains(string(r.Body), sess.CSRFToken) {
		t.Fatalf("GET session: %d %s", r.Status, r.Body)
	}

	// Reads need no CSRF token.
	if r := ts.do("GET", "/v1/projects/p/networks", "", nil, "Cookie", cookie); r.Status != 200 {
		t.Fatalf("read by cookie: %d %s", r.Status, r.Body)
	}
	net := map[string]any{"name": "n1", "cidr": "10.1.0.0/24"}
	// Writes without it, with a wrong one, or from another site are refused.
	for name, hdr := range map[string][]string{
		"no csrf":      {"Cookie", cookie},
		"wrong csrf":   {"Cookie", cookie, csrfHeader, strings.Repeat("0", 32)},
		"other token":  {"Cookie", cookie, csrfHeader, csrfFor("kumo_0000000000000000_x")},
		"cross origin": {"Cookie", cookie, csrfHeader, sess.CSRFToken, "Origin", "https://evil.example"},
		"other scheme": {"Cookie", cookie, csrfHeader, sess.CSRFToken, "Origin", "http://example.com"},
	} {
		r := ts.do("POST", "/v1/projects/p/networks", "", net, hdr...)
		if r.Status != 403 || !strings.Contains(string(r.Body), csrfHeader) && name != "cross origin" && name != "other scheme" {
			t.Fatalf("%s: %d %s", name, r.Status, r.Body)
		}
	}
	if r := ts.do("GET", "/v1/projects/p/networks/n1", "", nil, "Cookie", cookie); r.Status != 404 {
		t.Fatalf("a refused write made the network: %d %s", r.Status, r.Body)
	}
	if r := ts.do("POST", "/v1/projects/p/networks", "", net, "Cookie", cookie, csrfHeader, sess.CSRFToken, "Origin", "https://example.com"); r.Status != 201 {
		t.Fatalf("write with csrf: %d %s", r.Status, r.Body)
	}

	// Logout is a write too; then the cookie is worthless.
	if r := ts.do("DELETE", "/v1/session", "", nil, "Cookie", cookie); r.Status != 403 {
		t.Fatalf("logout without csrf: %d %s", r.Status, r.Body)
	}
	r := ts.do("DELETE", "/v1/session", "", nil, "Cookie", cookie, csrfHeader, sess.CSRFToken)
	if r.Status != 204 {
		t.Fatalf("logout: %d %s", r.Status, r.Body)
	}
	cleared := 0
	for _, c := range (&http.Response{Header: r.Header}).Cookies() {
		if c.MaxAge < 0 && (c.Name == sessionCookie || c.Name == csrfCookie) {
			cleared++
		}
	}
	if cleared != 2 {
		t.Fatalf("logout did not clear the cookies: %v", r.Header)
	}
	if r := ts.do("GET", "/v1/projects/p/networks", "", nil, "Cookie", cookie); r.Status != 401 {
		t.Fatalf("after logout: %d %s", r.Status, r.Body)
	}
}

func TestWebSessionLogin(t *testing.T) {
	ts := newTestServer(t)
	ts.project("p")
	tok := ts.user("bob", false, "p", "reader")
	// A form of another site cannot log a browser in (login CSRF).
	if r := ts.do("POST", "/v1/session", "", "username=bob&password=password-bob", "Content-Type", "application/x-www-form-urlencoded"); r.Status != 400 {
		t.Fatalf("form login: %d %s", r.Status, r.Body)
	}
	if r := ts.do("POST", "/v1/session", "", map[string]any{"username": "bob", "password": "wrong"}); r.Status != 401 || r.Header.Get("Set-Cookie") != "" {
		t.Fatalf("wrong password: %d %s %v", r.Status, r.Body, r.Header)
	}
	if r := ts.do("POST", "/v1/session", "", map[string]any{"token": tok, "username": "bob"}); r.Status != 400 {
		t.Fatalf("token and username: %d %s", r.Status, r.Body)
	}
	// With a token: the session is a child token; logging out ends the
	// session, not the token it came from.
	r := ts.do("POST", "/v1/session", "", map[string]any{"token": tok})
	if r.Status != 201 {
		t.Fatalf("token login: %d %s", r.Status, r.Body)
	}
	var sess api.WebSession
	r.decode(t, &sess)
	var cookie string
	for _, c := range (&http.Response{Header: r.Header}).Cookies() {
		if c.Name == sessionCookie {
			cookie = c.Name + "=" + c.Value
		}
	}
	if r := ts.do("DELETE", "/v1/session", "", nil, "Cookie", cookie, csrfHeader, sess.CSRFToken); r.Status != 204 {
		t.Fatalf("logout: %d %s", r.Status, r.Body)
	}
	if r := ts.do("GET", "/v1/whoami", "", nil, "Cookie", cookie); r.Status != 401 {
		t.Fatalf("session after logout: %d", r.Status)
	}
	if r := ts.do("GET", "/v1/whoami", tok, nil); r.Status != 200 {
		t.Fatalf("the parent token after logout: %d %s", r.Status, r.Body)
	}
	// A bearer token beside a cookie wins, and needs no CSRF token.
	if r := ts.do("POST", "/v1/tokens", tok, map[string]any{"description": "x"}, "Cookie", cookie); r.Status != 201 {
		t.Fatalf("bearer with a stale cookie: %d %s", r.Status, r.Body)
	}
}

// TestWebSessionIdle: a browser session idle past --session-idle is
// refused and its token revoked (it stays refused after a restart, which
// forgets the clocks); an active one goes on; bearer tokens have no idle
// clock.
func TestWebSessionIdle(t *testing.T) {
	ts := newTestServer(t)
	ts.s.idleSessions = newIdleSessions(time.Hour, 7*24*time.Hour)
	ts.project("p")
	tok := ts.user("alice", false, "p", "member")
	cookies, _ := ts.login("alice", "password-alice")
	cookie := sessionCookie + "=" + cookies[sessionCookie].Value
	if r := ts.do("GET", "/v1/whoami", "", nil, "Cookie", cookie); r.Status != 200 {
		t.Fatalf("a fresh session: %d %s", r.Status, r.Body)
	}
	backdate := func(d time.Duration) {
		is := ts.s.idleSessions
		is.mu.Lock()
		defer is.mu.Unlock()
		if len(is.last) != 1 {
			t.Fatalf("%d session clocks, want 1", len(is.last))
		}
		for k := range is.last {
			is.last[k] = is.last[k].Add(-d)
		}
	}
	backdate(50 * time.Minute)
	if r := ts.do("GET", "/v1/whoami", "", nil, "Cookie", cookie); r.Status != 200 {
		t.Fatalf("a session idle 50 min of 60: %d %s", r.Status, r.Body)
	}
	backdate(61 * time.Minute)
	r := ts.do("GET", "/v1/whoami", "", nil, "Cookie", cookie)
	if r.Status != 401 || !strings.Contains(r.errBody(t).Message, "log in again") {
		t.Fatalf("a session idle 61 min: %d %s", r.Status, r.Body)
	}
	// Revoked, not just forgotten: a server with no clocks refuses it too.
	ts.s.idleSessions = newIdleSessions(time.Hour, 7*24*time.Hour)
	if r := ts.do("GET", "/v1/whoami", "", nil, "Cookie", cookie); r.Status != 401 {
		t.Fatalf("the idle session after a restart: %d", r.Status)
	}
	if r := ts.do("GET", "/v1/whoami", tok, nil); r.Status != 200 {
		t.Fatalf("alice's bearer token: %d", r.Status)
	}
}
