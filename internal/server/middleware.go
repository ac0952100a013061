package server

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/kumocloud/kumo/internal/errs"
	"github.com/kumocloud/kumo/internal/hosts"
	"github.com/kumocloud/kumo/internal/identity"
	"github.com/kumocloud/kumo/internal/reqctx"
	"github.com/kumocloud/kumo/internal/server/response"
)

type metrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	logins   *prometheus.CounterVec
}

func newMetrics(reg *prometheus.Registry) *metrics {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kumo_http_requests_total", Help: "API requests by route, method and status code.",
		}, []string{"route", "method", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "kumo_http_request_duration_seconds", Help: "API request latency by route.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"route", "method"}),
		logins: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kumo_logins_total", Help: "Password logins by result.",
		}, []string{"result"}),
	}
	reg.MustRegister(m.requests, m.duration, m.logins)
	return m
}

// statusWriter remembers the status code written.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// Hijack lets the console take the connection over.
func (w *statusWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	hj, ok := w.ResponseWriter.(http.Hijacker)
	if !ok {
		return nil, nil, fmt.Errorf("connection cannot be hijacked")
	}
	w.status = http.StatusSwitchingProtocols
	return hj.Hijack()
}

// Flush lets streaming handlers (events) flush through the wrapper.
func (w *statusWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (s *Server) buildHandler() http.Handler {
	mux := http.NewServeMux()
	for _, ep := range Endpoints() {
		mux.Handle(ep.Method+" "+ep.Path, s.wrap(ep))
	}
	mux.Handle("/", withWebConsole(s.wrap(Endpoint{Path: "unknown", Perm: PermPublic, handler: func(_ *Server, r *request) response.Response {
		return response.Error(errs.NotFound("no such endpoint: %s %s (see /v1/openapi.yaml)", r.Method, r.URL.Path))
	}})))
	return mux
}

func requestID() string {
	b := make([]byte, 8)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// wrap applies, in order: request id and logger, panic recovery, metrics,
// authentication, the endpoint's permission, idempotency, the handler.
func (s *Server) wrap(ep Endpoint) http.Handler {
	route := ep.Path
	return http.HandlerFunc(func(rw http.ResponseWriter, hr *http.Request) {
		start := time.Now()
		w := &statusWriter{ResponseWriter: rw}
		id := requestID()
		w.Header().Set("X-Request-Id", id)
		// API answers are data, never a page: a browser must not sniff
		// one (a tenant's image bytes, an error echoing a name) into
		// HTML, nor run or frame anything from it.
		w.Header().Set("X-Content-Type-Options", "nosniff")
		w.Header().Set("Content-Security-Policy", "sandbox; default-src 'none'; frame-ancestors 'none'")
		log := s.log.With("request", id, "method", hr.Method, "path", hr.URL.Path)
		ctx := reqctx.WithLogger(hr.Context(), log)
		hr = hr.WithContext(ctx)
		user := ""
		defer func() {
			if v := recover(); v != nil {
				log.Error("panic in handler", "panic", v, "stack", string(debug.Stack()))
				if w.status == 0 {
					response.Error(fmt.Errorf("panic: %v", v)).Render(w, hr)
				}
			}
			code := strconv.Itoa(w.status)
			s.metrics.requests.WithLabelValues(route, hr.Method, code).Inc()
			s.metrics.duration.WithLabelValues(route, hr.Method).Observe(time.Since(start).Seconds())
			// Agents' routine calls (long polls, heartbeats, the network
			// view every 2 s) would drown the log: they are debug unless
			// they fail.
			level := slog.LevelInfo
			if ep.Perm == PermAgent && w.status < 400 {
				level = slog.LevelDebug
			}
			if route != "/healthz" && route != "/readyz" && route != "/metrics" {
				log.Log(hr.Context(), level, "request", "status", w.status, "user", user, "duration_ms", time.Since(start).Milliseconds())
			}
		}()
		var p *identity.Principal
		var agent *hosts.AgentPrincipal
		var err error
		if tok, isAgent := strings.CutPrefix(hr.Header.Get("Authorization"), "Bearer "+hosts.CredentialPrefix); isAgent {
			agent, err = s.hosts.Authenticate(hr.Context(), hosts.CredentialPrefix+tok)
			if agent != nil {
				p = &identity.Principal{User: "agent:" + agent.Name, Via: "agent"}
			}
		} else {
			p, err = s.authenticate(hr)
		}
		if err != nil && ep.Perm != PermPublic {
			response.Error(err).Render(w, hr)
			return
		}
		if p != nil {
			user = p.User
			hr = hr.WithContext(reqctx.WithActor(hr.Context(), p.User))
		}
		if err := authorize(ep.Perm, p, agent, hr); err != nil {
			response.Error(err).Render(w, hr)
			return
		}
		if err := s.rateLimit(w, hr, p); err != nil {
			response.Error(err).Render(w, hr)
			return
		}
		if ep.Method != http.MethodGet && strings.Contains(ep.Path, "{project}") {
			// Nothing changes in a project being deleted.
			leave, err := s.fence.enter(hr.PathValue("project"))
			if err != nil {
				response.Error(err).Render(w, hr)
				return
			}
			defer leave()
		}
		req := &request{Request: hr, p: p, agent: agent, perm: ep.Perm}
		if ep.raw != nil {
			ep.raw(s, req, w)
			return
		}
		if ep.create && hr.Header.Get("Idempotency-Key") != "" {
			s.idempotent(w, req, ep)
			return
		}
		ep.handler(s, req).Render(w, hr)
	})
}

// authenticate returns the caller: root on the socket, the token's user
// over the network, or nil (with the reason) when there are no valid
// credentials.
func (s *Server) authenticate(r *http.Request) (*identity.Principal, error) {
	if v, _ := r.Context().Value(viaSocketKey{}).(bool); v {
		return identity.LocalRoot(), nil
	}
	h := r.Header.Get("Authorization")
	if c, err := r.Cookie(sessionCookie); h == "" && err == nil && c.Value != "" {
		return s.authenticateCookie(r, c.Value)
	}
	if h == "" {
		return nil, errs.Unauthorized("this needs credentials: log in with 'kumo login' or send 'Authorization: Bearer TOKEN'")
	}
	tok, ok := strings.CutPrefix(h, "Bearer ")
	if !ok {
		return nil, errs.Unauthorized("the Authorization header must be 'Bearer TOKEN'")
	}
	ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
	defer cancel()
	return s.ids.Authenticate(ctx, strings.TrimSpace(tok))
}

// authorize enforces an endpoint's permission.
func authorize(perm Permission, p *identity.Principal, agent *hosts.AgentPrincipal, r *http.Request) error {
	if perm == PermUnset {
		return errs.Forbidden("this endpoint declares no permission; it is refused to everyone")
	}
	if agent != nil && perm != PermPublic && perm != PermAgent {
		return errs.Forbidden("agent credentials only work on /v1/agents endpoints")
	}
	switch perm {
	case PermPublic:
		return nil
	case PermAgent:
		if agent == nil || agent.ID != r.PathValue("id") {
			return errs.NotFound("agent %q not found", r.PathValue("id"))
		}
		return nil
	case PermAuthenticated:
		return nil
	case PermSelf:
		if u := r.PathValue("user"); !p.CloudAdmin && p.User != u {
			return errs.NotFound("user %q not found", u)
		}
		return nil
	case PermCloudAdmin:
		if !p.CloudAdmin {
			return errs.Forbidden("only a cloud admin may do this")
		}
		return nil
	}
	need, ok := map[Permission]string{PermProjectReader: "reader", PermProjectMember: "member", PermProjectAdmin: "admin"}[perm]
	if !ok {
		return errs.Forbidden("this endpoint's permission (%d) is unknown; it is refused to everyone", perm)
	}
	project := r.PathValue("project")
	if !p.CanSee(project) {
		return errs.NotFound("project %q not found", project)
	}
	if !p.Has(project, need) {
		return errs.Forbidden("your role in project %q is %s; this needs %s", project, p.Role(project), need)
	}
	return nil
}
