package server

import (
	"github.com/kumocloud/kumo/api"
	"github.com/kumocloud/kumo/internal/server/response"
)

func (s *Server) getServerGroups(r *request) response.Response {
	project := r.PathValue("project")
	if err := s.ids.RequireProject(r.Context(), project); err != nil {
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
	if err := s.ids.RequireProject(r.Context(), project); err != nil {
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
