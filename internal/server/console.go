package server

import (
	"context"
	"net/http"
	"slices"
	"strings"

	"github.com/coder/websocket"

	"github.com/kumocloud/kumo/api"
	"github.com/kumocloud/kumo/internal/console"
	"github.com/kumocloud/kumo/internal/errs"
	"github.com/kumocloud/kumo/internal/server/response"
)

// getInstanceConsole joins the user to a console of a RUNNING instance
// over a WebSocket (internal/console says the protocol): everything that
// can be refused is, with the usual error answer, before the upgrade; the
// host's agent is then asked to open its end of the session, and the two
// are relayed message by message.
func (s *Server) getInstanceConsole(r *request, w http.ResponseWriter) {
	fail := func(err error) { response.Error(err).Render(w, r.Request) }
	if !console.IsUpgrade(r.Request) {
		fail(errs.Invalid("Upgrade", "the console is a WebSocket: send 'Connection: Upgrade' and 'Upgrade: websocket' (RFC 6455)"))
		return
	}
	if err := console.CheckOrigin(r.Request); err != nil {
		fail(err)
		return
	}
	in, _, err := s.compute.Get(r.Context(), r.PathValue("project"), r.PathValue("name"))
	if err != nil {
		fail(err)
		return
	}
	kinds := api.ConsoleKinds[in.Type]
	kind := r.URL.Query().Get("kind")
	if kind == "" && len(kinds) > 0 {
		kind = kinds[0]
	}
	if !slices.Contains(kinds, kind) {
		fail(errs.Invalid("kind", "a %s's consoles are %s, not %q", in.Type, strings.Join(kinds, ", "), kind))
		return
	}
	if in.State != api.StateRunning {
		fail(errs.Conflict("instance %q is %s; the console needs it RUNNING", in.Name, in.State))
		return
	}
	h, err := s.hosts.Get(r.Context(), in.Host)
	if err != nil {
		fail(err)
		return
	}
	agent, err := awaitStream(r.Context(), s.sessions, s.sessions.consoles, h.Agent, api.Session{Kind: "console", InstanceID: in.ID, Console: kind})
	if err != nil {
		if r.Context().Err() == nil {
			fail(err)
		}
		return
	}
	user, err := console.Accept(w, r.Request)
	if err != nil {
		agent.Close(websocket.StatusNormalClosure, "the user left")
		return
	}
	// The request's context ends with the handler (the connection is
	// hijacked): the relay lives on its own until either side ends.
	console.Relay(context.WithoutCancel(r.Context()), user, agent)
}

// agentConsole is the agent's end of a console session.
func (s *Server) agentConsole(r *request, w http.ResponseWriter) {
	ch, ok := waiter(s.sessions, s.sessions.consoles, r.agent.ID, r.PathValue("sid"))
	if !ok {
		response.Error(errs.NotFound("console session %q is not waiting", r.PathValue("sid"))).Render(w, r.Request)
		return
	}
	c, err := console.Accept(w, r.Request)
	if err != nil {
		return
	}
	select {
	case ch <- c:
	default:
		c.CloseNow()
	}
}
