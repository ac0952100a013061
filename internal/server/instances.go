package server

import (
	"github.com/kumocloud/kumo/api"
	"github.com/kumocloud/kumo/internal/server/response"
)

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
	if err := s.ids.RequireProject(r.Context(), project); err != nil {
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
	if err := s.ids.RequireProject(r.Context(), project); err != nil {
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
	migrate, err := parseBool(r.Request, "migrate")
	if err != nil {
		return response.Error(err)
	}
	explain := s.compute.Explain
	if migrate {
		explain = s.compute.ExplainMigrate
	}
	ex, err := explain(r.Context(), r.PathValue("project"), r.PathValue("name"))
	if err != nil {
		return response.Error(err)
	}
	return response.OK(ex)
}
