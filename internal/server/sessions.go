package server

import (
	"bufio"
	"context"
	"errors"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/coder/websocket"

	"github.com/kumocloud/kumo/api"
	"github.com/kumocloud/kumo/internal/console"
	"github.com/kumocloud/kumo/internal/errs"
	"github.com/kumocloud/kumo/internal/execframe"
	"github.com/kumocloud/kumo/internal/secret"
	"github.com/kumocloud/kumo/internal/server/response"
)

// sessions hands work that only an instance's host can do (exec, logs,
// the console, a snapshot's disk) to its agent, which fetches it with a
// long poll and posts the answer or opens a stream: the server never calls
// agents. In memory: a session lives as long as whoever asked (a user's
// request, a snapshot operation) waits for it.
type sessions struct {
	mu      sync.Mutex
	pending map[string][]api.Session          // agent -> sessions not yet fetched
	wake    map[string]chan struct{}          // agent -> closed when one is queued
	results map[string]chan api.SessionResult // session -> answer
	streams map[string]chan net.Conn          // exec or snapshot session -> the agent's connection
	// consoles: console session -> the agent's end (console.go)
	consoles map[string]chan *websocket.Conn
	// owner is the agent each waiting session was handed to: only it may
	// answer or open its stream (a session names an instance of its hosts).
	owner map[string]string
}

func newSessions() *sessions {
	return &sessions{pending: map[string][]api.Session{}, wake: map[string]chan struct{}{}, results: map[string]chan api.SessionResult{}, streams: map[string]chan net.Conn{}, consoles: map[string]chan *websocket.Conn{}, owner: map[string]string{}}
}

func (ss *sessions) wakeChan(agent string) chan struct{} {
	ch, ok := ss.wake[agent]
	if !ok {
		ch = make(chan struct{})
		ss.wake[agent] = ch
	}
	return ch
}

// queue hands a session to an agent.
func (ss *sessions) queue(agent string, s api.Session) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	ss.pending[agent] = append(ss.pending[agent], s)
	close(ss.wakeChan(agent))
	delete(ss.wake, agent)
}

// run queues a session for an agent and waits for its result.
func (ss *sessions) run(ctx context.Context, agent string, s api.Session, wait time.Duration) (api.SessionResult, error) {
	s.ID = secret.Hex(8)
	res := make(chan api.SessionResult, 1)
	ss.mu.Lock()
	ss.results[s.ID], ss.owner[s.ID] = res, agent
	ss.mu.Unlock()
	ss.queue(agent, s)
	defer func() {
		ss.mu.Lock()
		delete(ss.results, s.ID)
		delete(ss.owner, s.ID)
		ss.mu.Unlock()
	}()
	select {
	case r := <-res:
		return r, nil
	case <-ctx.Done():
		return api.SessionResult{}, ctx.Err()
	case <-time.After(wait):
		return api.SessionResult{}, errs.Unavailable("the instance's host did not answer within %s; is its agent running?", wait)
	}
}

// fetch returns an agent's queued sessions, waiting up to wait for one.
func (ss *sessions) fetch(ctx context.Context, agent string, wait time.Duration) []api.Session {
	t := time.NewTimer(wait)
	defer t.Stop()
	for {
		ss.mu.Lock()
		got := ss.pending[agent]
		delete(ss.pending, agent)
		ch := ss.wakeChan(agent)
		ss.mu.Unlock()
		if len(got) > 0 {
			return got
		}
		select {
		case <-ch:
		case <-t.C:
			return []api.Session{}
		case <-ctx.Done():
			return []api.Session{}
		}
	}
}

// answer delivers agent's result of a session handed to it; false if
// nobody waits any more (or the session was another agent's).
func (ss *sessions) answer(agent, id string, r api.SessionResult) bool {
	ss.mu.Lock()
	ch, ok := ss.results[id]
	ok = ok && ss.owner[id] == agent
	ss.mu.Unlock()
	if ok {
		ch <- r
	}
	return ok
}

// hostAgent finds the agent of the host an instance is on; kind (exec,
// logs) says what for. Exec needs the instance RUNNING; logs, a host.
func (s *Server) hostAgent(r *request, kind string) (api.Instance, string, error) {
	in, _, err := s.compute.Get(r.Context(), r.PathValue("project"), r.PathValue("name"))
	if err != nil {
		return in, "", err
	}
	if in.State != api.StateRunning && (kind == "exec" || in.Host == "") {
		return in, "", errs.Conflict("instance %q is %s; %s needs it RUNNING", in.Name, in.State, kind)
	}
	h, err := s.hosts.Get(r.Context(), in.Host)
	return in, h.Agent, err
}

// onHost runs a session on the agent of the instance's host.
func (s *Server) onHost(r *request, kind string, sess api.Session, wait time.Duration) (api.SessionResult, error) {
	in, agent, err := s.hostAgent(r, kind)
	if err != nil {
		return api.SessionResult{}, err
	}
	sess.Kind, sess.InstanceID = kind, in.ID
	res, err := s.sessions.run(r.Context(), agent, sess, wait)
	if err == nil && res.Error != "" {
		err = errs.Conflict("%s", res.Error)
	}
	return res, err
}

// maxExecOutput bounds the output a JSON exec answer carries; more is cut
// (truncated: true). ?stream=true has no bound: the output is passed on
// as it comes.
const maxExecOutput = 1 << 20

// postInstanceExec runs a command in a RUNNING instance through its
// host's agent, which streams the output back (execframe). The answer is
// JSON - the output's first MiB and the exit code - or, with
// ?stream=true, the output itself as it comes (application/octet-stream)
// with the exit code in the trailer Kumo-Exit-Code (Kumo-Exec-Error if the
// run broke off). Nothing is held whole: a command may print gigabytes.
func (s *Server) postInstanceExec(r *request, w http.ResponseWriter) {
	fail := func(err error) { response.Error(err).Render(w, r.Request) }
	var req api.InstanceExecPost
	if err := decodeBody(r.Request, &req); err != nil {
		fail(err)
		return
	}
	if len(req.Command) == 0 {
		fail(errs.Invalid("command", "command is required"))
		return
	}
	if req.TimeoutSeconds < 0 || req.TimeoutSeconds > 600 {
		fail(errs.Invalid("timeout_seconds", "timeout_seconds must be 0 to 600"))
		return
	}
	if req.TimeoutSeconds == 0 {
		req.TimeoutSeconds = 60
	}
	stream, err := parseBool(r.Request, "stream")
	if err != nil {
		fail(err)
		return
	}
	in, agent, err := s.hostAgent(r, "exec")
	if err != nil {
		fail(err)
		return
	}
	conn, err := s.sessions.openStream(r.Context(), agent, api.Session{Kind: "exec", InstanceID: in.ID, Command: req.Command, Timeout: req.TimeoutSeconds})
	if err != nil {
		fail(err)
		return
	}
	defer conn.Close()
	// The agent ends the command at its timeout; this bounds a host that
	// stops answering, and a user who goes away ends the stream.
	conn.SetDeadline(time.Now().Add(time.Duration(req.TimeoutSeconds+15) * time.Second))
	defer context.AfterFunc(r.Context(), func() { conn.Close() })()
	fr := execframe.NewReader(conn)
	if !stream {
		out := &execframe.Capped{Max: maxExecOutput}
		code, err := fr.Copy(out)
		if err != nil {
			fail(execError(err))
			return
		}
		response.OK(api.InstanceExecResult{Output: string(out.Buf), ExitCode: code, Truncated: out.Truncated}).Render(w, r.Request)
		return
	}
	// The first frame decides the status: a command that cannot run is an
	// error answer, not a 200 with an error trailer.
	buf := make([]byte, execframe.MaxFrame)
	kind, first, err := fr.Next(buf)
	if err == nil && kind == execframe.Error {
		err = &execframe.RunError{Msg: string(first)}
	}
	if err != nil {
		fail(execError(err))
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Trailer", "Kumo-Exit-Code, Kumo-Exec-Error")
	w.WriteHeader(http.StatusOK)
	out := flushWriter{w}
	var code int
	if kind == execframe.Exit {
		code, err = strconv.Atoi(string(first))
	} else if _, err = out.Write(first); err == nil {
		code, err = fr.Copy(out)
	}
	if err != nil {
		w.Header().Set("Kumo-Exec-Error", execError(err).Error())
		return
	}
	w.Header().Set("Kumo-Exit-Code", strconv.Itoa(code))
}

// execError is the answer to a run that failed: the host could not run it
// (a conflict naming why), or broke off (unavailable).
func execError(err error) error {
	var re *execframe.RunError
	if errors.As(err, &re) {
		return errs.Conflict("%s", re.Msg)
	}
	return errs.Unavailable("exec: %v", err)
}

// flushWriter passes each write on at once (a command's output is
// watched as it comes).
type flushWriter struct{ w http.ResponseWriter }

func (f flushWriter) Write(p []byte) (int, error) {
	n, err := f.w.Write(p)
	if fl, ok := f.w.(http.Flusher); ok {
		fl.Flush()
	}
	return n, err
}

func (s *Server) getInstanceLogs(r *request) response.Response {
	tail := 200
	if v := r.URL.Query().Get("tail"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 10000 {
			return response.Error(errs.Invalid("tail", "tail must be 1 to 10000 lines"))
		}
		tail = n
	}
	res, err := s.onHost(r, "logs", api.Session{Tail: tail}, 15*time.Second)
	if err != nil {
		return response.Error(err)
	}
	return response.OK(api.InstanceLogs{Output: res.Output})
}

func (s *Server) getSessions(r *request) response.Response {
	wait := 0.0
	if v := r.URL.Query().Get("wait"); v != "" {
		f, err := strconv.ParseFloat(v, 64)
		if err != nil || f < 0 {
			return response.Error(errs.Invalid("wait", "wait must be seconds >= 0"))
		}
		wait = min(f, maxPoll.Seconds())
	}
	return response.OK(api.List[api.Session]{Items: s.sessions.fetch(r.Context(), r.agent.ID, time.Duration(wait*float64(time.Second)))})
}

func (s *Server) postSessionResult(r *request) response.Response {
	var res api.SessionResult
	if err := decodeBody(r.Request, &res); err != nil {
		return response.Error(err)
	}
	if !s.sessions.answer(r.agent.ID, r.PathValue("sid"), res) {
		return response.Error(errs.NotFound("session %q is not waiting (the user gave up?)", r.PathValue("sid")))
	}
	return response.NoContent()
}

// hijack takes over an HTTP/1.1 connection after answering 101.
func hijack(w http.ResponseWriter) (net.Conn, error) {
	hj, ok := w.(http.Hijacker)
	if !ok {
		return nil, errs.Invalid("Upgrade", "this connection cannot be upgraded (HTTP/2?)")
	}
	conn, brw, err := hj.Hijack()
	if err != nil {
		return nil, err
	}
	brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: " + streamProto + "\r\nConnection: Upgrade\r\n\r\n")
	if err := brw.Flush(); err != nil {
		conn.Close()
		return nil, err
	}
	return &bufConn{Conn: conn, r: brw.Reader}, nil
}

// streamProto is the Upgrade token of exec and snapshot streams.
const streamProto = "kumo-stream"

// bufConn reads what the hijacked reader already buffered first.
type bufConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *bufConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// openStream asks an agent to open a byte stream for a session (exec, a
// snapshot) and returns the agent's end of it.
func (ss *sessions) openStream(ctx context.Context, agent string, sess api.Session) (net.Conn, error) {
	return awaitStream(ctx, ss, ss.streams, agent, sess)
}

// awaitStream queues a session for an agent and waits for the agent to
// open its end, which arrives on the session's channel in waiting.
func awaitStream[T any](ctx context.Context, ss *sessions, waiting map[string]chan T, agent string, sess api.Session) (T, error) {
	var none T
	sess.ID = secret.Hex(8)
	ch := make(chan T, 1)
	ss.mu.Lock()
	waiting[sess.ID], ss.owner[sess.ID] = ch, agent
	ss.mu.Unlock()
	defer func() {
		ss.mu.Lock()
		delete(waiting, sess.ID)
		delete(ss.owner, sess.ID)
		ss.mu.Unlock()
	}()
	ss.queue(agent, sess)
	select {
	case c := <-ch:
		return c, nil
	case <-time.After(15 * time.Second):
		return none, errs.Unavailable("the instance's host did not open the %s within 15 s; is its agent running?", sess.Kind)
	case <-ctx.Done():
		return none, ctx.Err()
	}
}

// waiter is the channel on which a session waits for the agent's end
// (from waiting; ok false unless agent is the session's).
func waiter[T any](ss *sessions, waiting map[string]chan T, agent, sid string) (chan T, bool) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	ch, ok := waiting[sid]
	return ch, ok && ss.owner[sid] == agent
}

// getSessionStream is the agent's end of a console (a WebSocket:
// console.go), exec or snapshot session.
func (s *Server) getSessionStream(r *request, w http.ResponseWriter) {
	if console.IsUpgrade(r.Request) {
		s.agentConsole(r, w)
		return
	}
	ch, ok := waiter(s.sessions, s.sessions.streams, r.agent.ID, r.PathValue("sid"))
	if !ok {
		response.Error(errs.NotFound("stream session %q is not waiting", r.PathValue("sid"))).Render(w, r.Request)
		return
	}
	conn, err := hijack(w)
	if err != nil {
		return
	}
	select {
	case ch <- conn:
	default:
		conn.Close()
	}
}
