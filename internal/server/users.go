package server

import (
	"net"

	"github.com/kumocloud/kumo/api"
	"github.com/kumocloud/kumo/internal/server/response"
)

func (s *Server) getUsers(r *request) response.Response {
	lp, err := parseList(r.Request)
	if err != nil {
		return response.Error(err)
	}
	items, next, err := s.ids.ListUsers(r.Context(), lp.labels, lp.after, lp.limit)
	if err != nil {
		return response.Error(err)
	}
	return list(items, next)
}

func (s *Server) postUsers(r *request) response.Response {
	var req api.UsersPost
	if err := decodeBody(r.Request, &req); err != nil {
		return response.Error(err)
	}
	u, err := s.ids.CreateUser(r.Context(), req)
	if err != nil {
		return response.Error(err)
	}
	return response.Created(u)
}

func (s *Server) getUser(r *request) response.Response {
	u, err := s.ids.GetUser(r.Context(), r.PathValue("user"))
	if err != nil {
		return response.Error(err)
	}
	return response.OK(u)
}

func (s *Server) deleteUser(r *request) response.Response {
	if err := s.ids.DeleteUser(r.Context(), r.PathValue("user")); err != nil {
		return response.Error(err)
	}
	return response.NoContent()
}

func (s *Server) putPassword(r *request) response.Response {
	var req api.UserPasswordPut
	if err := decodeBody(r.Request, &req); err != nil {
		return response.Error(err)
	}
	client, _, _ := net.SplitHostPort(r.RemoteAddr)
	if err := s.ids.SetPassword(r.Context(), r.p, r.PathValue("user"), req.CurrentPassword, req.Password, client); err != nil {
		return response.Error(err)
	}
	return response.NoContent()
}
