package server

import (
	"context"
	"fmt"
	"strings"

	"github.com/kumocloud/kumo/api"
	"github.com/kumocloud/kumo/internal/errs"
	"github.com/kumocloud/kumo/internal/server/response"
)

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
