package server

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/kumocloud/kumo/api"
	"github.com/kumocloud/kumo/internal/console"
	"github.com/kumocloud/kumo/internal/errs"
	"github.com/kumocloud/kumo/internal/identity"
	"github.com/kumocloud/kumo/internal/server/response"
)

// Browser sessions. A browser logs in with POST /v1/session and gets an
// ordinary API token (the same machinery as `kumo login`) that travels
// only in an HttpOnly, Secure, SameSite=Strict cookie: page scripts never
// see it. Writes the cookie authenticates must also carry the session's
// CSRF token in the X-CSRF-Token header (derived from the token's secret,
// so a page of another site can neither read nor guess it); the CSRF token
// is also in a readable cookie, so the page finds it again after a reload
// (double submit). Bearer requests need no CSRF token: a browser never
// adds an Authorization header on its own. Logout revokes the token.
const (
	// The __Host- prefix makes browsers refuse the cookies unless they
	// are Secure, for the whole site (Path=/) and bound to this host.
	sessionCookie = "__Host-kumo_session"
	csrfCookie    = "__Host-kumo_csrf"
	csrfHeader    = "X-CSRF-Token"
	// sessionDescription names the tokens sessions are, in token lists.
	sessionDescription = "web session"
)

// csrfFor is the CSRF token of a session token.
func csrfFor(secret string) string {
	sum := sha256.Sum256([]byte("kumo-csrf\x00" + secret))
	return hex.EncodeToString(sum[:16])
}

// safeMethod reports whether a method only reads.
func safeMethod(m string) bool {
	return m == http.MethodGet || m == http.MethodHead || m == http.MethodOptions
}

// authenticateCookie authenticates a request by its session cookie. A
// write must carry the CSRF token and, if it says where it comes from,
// come from this site.
func (s *Server) authenticateCookie(r *http.Request, secret string) (*identity.Principal, error) {
	if !safeMethod(r.Method) {
		got := r.Header.Get(csrfHeader)
		if got == "" || subtle.ConstantTimeCompare([]byte(got), []byte(csrfFor(secret))) != 1 {
			return nil, errs.Forbidden("a write authenticated by the session cookie needs the session's CSRF token in the %s header", csrfHeader)
		}
		// The same origin check as a console's: scheme and host.
		if console.CheckOrigin(r) != nil {
			return nil, errs.Forbidden("a write authenticated by the session cookie must come from this site, not %q", r.Header.Get("Origin"))
		}
	}
	ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
	defer cancel()
	p, err := s.ids.Authenticate(ctx, secret)
	if err != nil {
		return nil, err
	}
	if !s.idleSessions.touch(p.TokenID, time.Now()) {
		// Ended for good: the token cannot come back after a restart.
		if _, err := s.ids.RevokeToken(ctx, p.TokenID); err != nil {
			return nil, err
		}
		return nil, errs.Unauthorized("the session ended after %s without a request: log in again", s.idleSessions.idle)
	}
	p.Via = "cookie"
	return p, nil
}

// sessionCookies are the cookies that carry a session (expiring at exp),
// or that end one (secret "").
func sessionCookies(secret string, exp time.Time) []*http.Cookie {
	session := &http.Cookie{Name: sessionCookie, Value: secret, Path: "/", Secure: true, HttpOnly: true, SameSite: http.SameSiteStrictMode}
	csrf := &http.Cookie{Name: csrfCookie, Path: "/", Secure: true, SameSite: http.SameSiteStrictMode}
	if secret == "" {
		session.MaxAge, csrf.MaxAge = -1, -1
	} else {
		csrf.Value = csrfFor(secret)
		session.Expires, csrf.Expires = exp, exp
	}
	return []*http.Cookie{session, csrf}
}

// withCookies sets cookies on a response.
type withCookies struct {
	response.Response
	cookies []*http.Cookie
}

func (c withCookies) Render(w http.ResponseWriter, r *http.Request) {
	for _, ck := range c.cookies {
		http.SetCookie(w, ck)
	}
	w.Header().Set("Cache-Control", "no-store")
	c.Response.Render(w, r)
}

// postSession logs a browser in with a password or a token.
func (s *Server) postSession(r *request) response.Response {
	// A page of another site can post a form or a "simple" request, but
	// not JSON (that takes a CORS preflight nobody answers): no login CSRF.
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		return response.Error(errs.Invalid("Content-Type", "send the login as application/json"))
	}
	var req api.WebSessionPost
	if err := decodeBody(r.Request, &req); err != nil {
		return response.Error(err)
	}
	ctx := r.Context()
	var tok api.Token
	var err error
	switch {
	case req.Token != "":
		if req.Username != "" || req.Password != "" {
			return response.Error(errs.Invalid("token", "give a token or a username and password, not both"))
		}
		var p *identity.Principal
		if p, err = s.ids.Authenticate(ctx, req.Token); err != nil {
			return response.Error(err)
		}
		tok, err = s.ids.IssueChildToken(ctx, p.TokenID, sessionDescription, 0)
	case req.Username != "":
		client, _, _ := net.SplitHostPort(r.RemoteAddr)
		tok, err = s.ids.Login(ctx, req.Username, req.Password, client, sessionDescription, 0)
		result := "ok"
		if err != nil {
			result = "failed"
			if errs.KindOf(err) == errs.KindTooMany {
				result = "throttled"
			}
		}
		s.metrics.logins.WithLabelValues(result).Inc()
	default:
		return response.Error(errs.Invalid("username", "username and password (or token) are required"))
	}
	if err != nil {
		return response.Error(err)
	}
	p, err := s.ids.Authenticate(ctx, tok.Secret)
	if err != nil {
		return response.Error(err)
	}
	sess := api.WebSession{Whoami: p.Whoami(), CSRFToken: csrfFor(tok.Secret), ExpiresAt: tok.ExpiresAt}
	sess.Via = "cookie"
	return withCookies{response.Created(sess), sessionCookies(tok.Secret, tok.ExpiresAt)}
}

// getSession tells a page who it is logged in as and its CSRF token.
func (s *Server) getSession(r *request) response.Response {
	sess := api.WebSession{Whoami: r.p.Whoami()}
	if r.p.Via == "cookie" {
		c, _ := r.Cookie(sessionCookie)
		sess.CSRFToken = csrfFor(c.Value)
	}
	if r.p.TokenID != "" {
		tok, err := s.ids.GetToken(r.Context(), r.p.TokenID)
		if err != nil {
			return response.Error(err)
		}
		sess.ExpiresAt = tok.ExpiresAt
	}
	return withCookies{response.OK(sess), nil}
}

// deleteSession logs out: the session's token is revoked (a bearer
// caller's token likewise) and the cookies are cleared.
func (s *Server) deleteSession(r *request) response.Response {
	if r.p.TokenID != "" {
		if _, err := s.ids.RevokeToken(r.Context(), r.p.TokenID); err != nil {
			return response.Error(err)
		}
	}
	return withCookies{response.NoContent(), sessionCookies("", time.Time{})}
}
