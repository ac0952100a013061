package server

import (
	"context"
	"strconv"
	"sync"
	"time"

	"github.com/kumocloud/kumo/api"
	"github.com/kumocloud/kumo/internal/errs"
	"github.com/kumocloud/kumo/internal/secret"
	"github.com/kumocloud/kumo/internal/server/response"
)

// sessions hands user requests that only an instance's host can serve
// (exec, logs) to its agent, which fetches them with a long poll and posts
// the answer: the server never calls agents. In memory: a session lives
// as long as the user's request waits for it.
type sessions struct {
	mu      sync.Mutex
	pending map[string][]api.Session          // agent -> sessions not yet fetched
	wake    map[string]chan struct{}          // agent -> closed when one is queued
	results map[string]chan api.SessionResult // session -> answer
}

func newSessions() *sessions {
	return &sessions{pending: map[string][]api.Session{}, wake: map[string]chan struct{}{}, results: map[string]chan api.SessionResult{}}
}

func (ss *sessions) wakeChan(agent string) chan struct{} {
	ch, ok := ss.wake[agent]
	if !ok {
		ch = make(chan struct{})
		ss.wake[agent] = ch
	}
	return ch
}

// run queues a session for an agent and waits for its result.
func (ss *sessions) run(ctx context.Context, agent string, s api.Session, wait time.Duration) (api.SessionResult, error) {
	s.ID = secret.Hex(8)
	res := make(chan api.SessionResult, 1)
	ss.mu.Lock()
	ss.pending[agent] = append(ss.pending[agent], s)
	ss.results[s.ID] = res
	close(ss.wakeChan(agent))
	delete(ss.wake, agent)
	ss.mu.Unlock()
	defer func() {
		ss.mu.Lock()
		delete(ss.results, s.ID)
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

// answer delivers a result; false if nobody waits any more.
func (ss *sessions) answer(id string, r api.SessionResult) bool {
	ss.mu.Lock()
	ch, ok := ss.results[id]
	ss.mu.Unlock()
	if ok {
		ch <- r
	}
	return ok
}

// onHost runs a session on the agent of the instance's host.
func (s *Server) onHost(r *request, kind string, sess api.Session, wait time.Duration) (api.SessionResult, error) {
	in, _, err := s.compute.Get(r.Context(), r.PathValue("project"), r.PathValue("name"))
	if err != nil {
		return api.SessionResult{}, err
	}
	if in.State != api.StateRunning && (kind == "exec" || in.Host == "") {
		return api.SessionResult{}, errs.Conflict("instance %q is %s; %s needs it RUNNING", in.Name, in.State, kind)
	}
	h, err := s.hosts.Get(r.Context(), in.Host)
	if err != nil {
		return api.SessionResult{}, err
	}
	sess.Kind, sess.InstanceID = kind, in.ID
	res, err := s.sessions.run(r.Context(), h.Agent, sess, wait)
	if err == nil && res.Error != "" {
		err = errs.Conflict("%s", res.Error)
	}
	return res, err
}

func (s *Server) postInstanceExec(r *request) response.Response {
	var req api.InstanceExecPost
	if err := decodeBody(r.Request, &req); err != nil {
		return response.Error(err)
	}
	if len(req.Command) == 0 {
		return response.Error(errs.Invalid("command", "command is required"))
	}
	if req.TimeoutSeconds < 0 || req.TimeoutSeconds > 600 {
		return response.Error(errs.Invalid("timeout_seconds", "timeout_seconds must be 0 to 600"))
	}
	if req.TimeoutSeconds == 0 {
		req.TimeoutSeconds = 60
	}
	res, err := s.onHost(r, "exec", api.Session{Command: req.Command, Timeout: req.TimeoutSeconds}, time.Duration(req.TimeoutSeconds+10)*time.Second)
	if err != nil {
		return response.Error(err)
	}
	return response.OK(api.InstanceExecResult{Output: res.Output, ExitCode: res.ExitCode})
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
	if !s.sessions.answer(r.PathValue("sid"), res) {
		return response.Error(errs.NotFound("session %q is not waiting (the user gave up?)", r.PathValue("sid")))
	}
	return response.NoContent()
}
