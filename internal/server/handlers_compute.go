package server

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/kumocloud/kumo/api"
	"github.com/kumocloud/kumo/internal/errs"
	"github.com/kumocloud/kumo/internal/hosts"
	"github.com/kumocloud/kumo/internal/server/response"
)

// --- instances ---

func (s *Server) getInstances(r *request) response.Response {
	lp, err := parseList(r.Request)
	if err != nil {
		return response.Error(err)
	}
	all, err := parseBool(r.Request, "all")
	if err != nil {
		return response.Error(err)
	}
	project := r.PathValue("project")
	if _, err := s.ids.GetProject(r.Context(), project); err != nil {
		return response.Error(err)
	}
	items, next, err := s.compute.List(r.Context(), project, lp.labels, all, lp.after, lp.limit)
	if err != nil {
		return response.Error(err)
	}
	return list(items, next)
}

func (s *Server) postInstances(r *request) response.Response {
	var req api.InstancesPost
	if err := decodeBody(r.Request, &req); err != nil {
		return response.Error(err)
	}
	project := r.PathValue("project")
	if _, err := s.ids.GetProject(r.Context(), project); err != nil {
		return response.Error(err)
	}
	in, err := s.compute.Create(r.Context(), project, req)
	if err != nil {
		return response.Error(err)
	}
	return response.Created(in)
}

func (s *Server) getInstance(r *request) response.Response {
	in, _, err := s.compute.Get(r.Context(), r.PathValue("project"), r.PathValue("name"))
	if err != nil {
		return response.Error(err)
	}
	return response.OK(in)
}

func (s *Server) postInstanceAction(r *request) response.Response {
	var req api.InstanceActionPost
	if err := decodeBody(r.Request, &req); err != nil {
		return response.Error(err)
	}
	in, err := s.compute.Action(r.Context(), r.PathValue("project"), r.PathValue("name"), req.Action)
	if err != nil {
		return response.Error(err)
	}
	return response.OK(in)
}

func (s *Server) getInstanceHistory(r *request) response.Response {
	_, h, err := s.compute.Get(r.Context(), r.PathValue("project"), r.PathValue("name"))
	if err != nil {
		return response.Error(err)
	}
	return list(h, "")
}

func (s *Server) getInstanceExplain(r *request) response.Response {
	ex, err := s.compute.Explain(r.Context(), r.PathValue("project"), r.PathValue("name"))
	if err != nil {
		return response.Error(err)
	}
	return response.OK(ex)
}

// --- server groups ---

func (s *Server) getServerGroups(r *request) response.Response {
	project := r.PathValue("project")
	if _, err := s.ids.GetProject(r.Context(), project); err != nil {
		return response.Error(err)
	}
	gs, err := s.compute.ListGroups(r.Context(), project)
	if err != nil {
		return response.Error(err)
	}
	return list(gs, "")
}

func (s *Server) postServerGroups(r *request) response.Response {
	var req api.ServerGroupsPost
	if err := decodeBody(r.Request, &req); err != nil {
		return response.Error(err)
	}
	project := r.PathValue("project")
	if _, err := s.ids.GetProject(r.Context(), project); err != nil {
		return response.Error(err)
	}
	g, err := s.compute.CreateGroup(r.Context(), project, req)
	if err != nil {
		return response.Error(err)
	}
	return response.Created(g)
}

func (s *Server) getServerGroup(r *request) response.Response {
	g, err := s.compute.GetGroup(r.Context(), r.PathValue("project"), r.PathValue("name"))
	if err != nil {
		return response.Error(err)
	}
	return response.OK(g)
}

func (s *Server) deleteServerGroup(r *request) response.Response {
	if err := s.compute.DeleteGroup(r.Context(), r.PathValue("project"), r.PathValue("name")); err != nil {
		return response.Error(err)
	}
	return response.NoContent()
}

// --- hosts ---

// withUsage fills in what a host's instances take and how alive it is.
func (s *Server) withUsage(hs []api.Host) []api.Host {
	alloc, counts := s.compute.HostUsage()
	for i := range hs {
		hs[i].Allocated, hs[i].Instances = alloc[hs[i].Name], counts[hs[i].Name]
	}
	return hs
}

func (s *Server) getHosts(r *request) response.Response {
	lp, err := parseList(r.Request)
	if err != nil {
		return response.Error(err)
	}
	hs, next, err := s.hosts.List(r.Context(), lp.after, lp.limit)
	if err != nil {
		return response.Error(err)
	}
	return list(s.withUsage(hs), next)
}

// deleteHost removes a host from the cloud; its agent can no longer act
// for it (and an agent left without hosts can no longer act at all). A
// host still holding live instances is refused: they are terminated first
// (those of an OFFLINE host are UNKNOWN, and terminate at once).
func (s *Server) deleteHost(r *request) response.Response {
	name := r.PathValue("host")
	if _, err := s.hosts.Get(r.Context(), name); err != nil {
		return response.Error(err)
	}
	live, err := s.placedOn(r.Context(), name)
	if err != nil {
		return response.Error(err)
	}
	if n := len(live); n > 0 {
		var names []string
		for _, in := range live[:min(n, 5)] {
			names = append(names, in.Project+"/"+in.Name+" ("+string(in.State)+")")
		}
		more := ""
		if n > 5 {
			more = fmt.Sprintf(" and %d more", n-5)
		}
		return response.Error(errs.Conflict("host %q still holds %d instances: %s%s; terminate them first (an OFFLINE host's instances are UNKNOWN and terminate at once)", name, n, strings.Join(names, ", "), more))
	}
	if err := s.hosts.Delete(r.Context(), name); err != nil {
		return response.Error(err)
	}
	return response.NoContent()
}

// placedOn lists the instances placed on host, read from the store (the
// compute cache may lag a moment behind the report that just ended one).
func (s *Server) placedOn(ctx context.Context, host string) ([]api.Instance, error) {
	projects, _, err := s.ids.ListProjects(ctx, allSeeing, nil, "", 0)
	if err != nil {
		return nil, err
	}
	var out []api.Instance
	for _, p := range projects {
		items, _, err := s.compute.List(ctx, p.Name, nil, false, "", 0)
		if err != nil {
			return nil, err
		}
		for _, in := range items {
			if in.Host == host { // STOPPED, PENDING and HOLD ones have none
				out = append(out, in)
			}
		}
	}
	return out, nil
}

func (s *Server) getHost(r *request) response.Response {
	h, err := s.hosts.Get(r.Context(), r.PathValue("host"))
	if err != nil {
		return response.Error(err)
	}
	return response.OK(s.withUsage([]api.Host{h})[0])
}

func (s *Server) patchHost(r *request) response.Response {
	var req api.HostPatch
	if err := decodeBody(r.Request, &req); err != nil {
		return response.Error(err)
	}
	h, err := s.hosts.Patch(r.Context(), r.PathValue("host"), req)
	if err != nil {
		return response.Error(err)
	}
	s.compute.Wake()
	return response.OK(s.withUsage([]api.Host{h})[0])
}

func (s *Server) postJoinTokens(r *request) response.Response {
	var req api.JoinTokensPost
	if r.ContentLength != 0 {
		if err := decodeBody(r.Request, &req); err != nil {
			return response.Error(err)
		}
	}
	t, err := s.hosts.CreateJoinToken(r.Context(), req)
	if err != nil {
		return response.Error(err)
	}
	return response.Created(t)
}

func (s *Server) getJoinTokens(r *request) response.Response {
	ts, err := s.hosts.ListJoinTokens(r.Context())
	if err != nil {
		return response.Error(err)
	}
	return list(ts, "")
}

func (s *Server) deleteJoinToken(r *request) response.Response {
	if err := s.hosts.DeleteJoinToken(r.Context(), r.PathValue("id")); err != nil {
		return response.Error(err)
	}
	return response.NoContent()
}

// --- agents ---

func (s *Server) postAgents(r *request) response.Response {
	var req api.AgentsPost
	if err := decodeBody(r.Request, &req); err != nil {
		return response.Error(err)
	}
	a, err := s.hosts.Join(r.Context(), req)
	if err != nil {
		return response.Error(err)
	}
	s.compute.Wake()
	return response.Created(a)
}

func (s *Server) putAgentHosts(r *request) response.Response {
	var req api.AgentHostsPut
	if err := decodeBody(r.Request, &req); err != nil {
		return response.Error(err)
	}
	a, err := s.hosts.PutAgentHosts(r.Context(), r.agent.ID, req.Hosts)
	if err != nil {
		return response.Error(err)
	}
	s.compute.Wake()
	return response.OK(a)
}

func (s *Server) postHeartbeat(r *request) response.Response {
	var req api.Heartbeat
	if err := decodeBody(r.Request, &req); err != nil {
		return response.Error(err)
	}
	down := map[string]bool{}
	for _, h := range req.Down {
		down[h] = true
	}
	alive := make([]string, 0, len(r.agent.Hosts))
	for h := range r.agent.Hosts {
		if !down[h] {
			alive = append(alive, h)
		}
	}
	s.hosts.Heartbeat(alive, req)
	return response.NoContent()
}

// postAgentUsage keeps what the running instances of an agent's hosts use
// (in memory, like liveness): at most api.MaxUsageBatch a request, and only
// of instances on its own hosts - an agent must not set the usage or
// readiness others see of instances elsewhere.
func (s *Server) postAgentUsage(r *request) response.Response {
	var req api.AgentUsage
	if err := decodeBody(r.Request, &req); err != nil {
		return response.Error(err)
	}
	if len(req.Usage) > api.MaxUsageBatch {
		return response.Error(errs.Invalid("usage", "at most %d instances a request, not %d: send them in batches", api.MaxUsageBatch, len(req.Usage)))
	}
	s.compute.SetAgentUsage(r.agent, req.Usage)
	return response.NoContent()
}

// agentInstances are the live instances placed on an agent's hosts, by id.
func (s *Server) agentInstances(ctx context.Context, agent *hosts.AgentPrincipal) (map[string]api.Assignment, error) {
	as, err := s.compute.Assignments(ctx, agent, 0, 0)
	if err != nil {
		return nil, err
	}
	out := make(map[string]api.Assignment, len(as.Items))
	for _, a := range as.Items {
		out[a.ID] = a
	}
	return out, nil
}

// maxPoll caps an agent's long poll.
const maxPoll = 60 * time.Second

func (s *Server) getAssignments(r *request) response.Response {
	q := r.URL.Query()
	var since int64
	if v := q.Get("since"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			return response.Error(errs.Invalid("since", "since must be a revision (integer >= 0)"))
		}
		since = n
	}
	wait := time.Duration(0)
	if v := q.Get("wait"); v != "" {
		f, err := strconv.ParseFloat(v, 64)
		if err != nil || f < 0 {
			return response.Error(errs.Invalid("wait", "wait must be seconds >= 0"))
		}
		wait = min(time.Duration(f*float64(time.Second)), maxPoll)
	}
	as, err := s.compute.Assignments(r.Context(), r.agent, since, wait)
	if err != nil {
		return response.Error(err)
	}
	return response.OK(as)
}

func (s *Server) postReports(r *request) response.Response {
	var req api.AgentReport
	if err := decodeBody(r.Request, &req); err != nil {
		return response.Error(err)
	}
	return response.OK(s.compute.Report(r.Context(), r.agent, req.Instances))
}
