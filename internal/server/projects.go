package server

import (
	"context"

	"github.com/kumocloud/kumo/api"
	"github.com/kumocloud/kumo/internal/errs"
	"github.com/kumocloud/kumo/internal/server/response"
)

func (s *Server) getProjects(r *request) response.Response {
	lp, err := parseList(r.Request)
	if err != nil {
		return response.Error(err)
	}
	items, next, err := s.ids.ListProjects(r.Context(), r.p, lp.labels, lp.after, lp.limit)
	if err != nil {
		return response.Error(err)
	}
	return list(items, next)
}

func (s *Server) postProjects(r *request) response.Response {
	var req api.ProjectsPost
	if err := decodeBody(r.Request, &req); err != nil {
		return response.Error(err)
	}
	p, err := s.ids.CreateProject(r.Context(), req)
	if err != nil {
		return response.Error(err)
	}
	return response.Created(p)
}

func (s *Server) getProject(r *request) response.Response {
	p, err := s.ids.GetProject(r.Context(), r.PathValue("project"))
	if err != nil {
		return response.Error(err)
	}
	if p, err = s.withCost(r.Context(), p); err != nil {
		return response.Error(err)
	}
	return response.OK(p)
}

func (s *Server) patchProject(r *request) response.Response {
	var req api.ProjectPatch
	if err := decodeBody(r.Request, &req); err != nil {
		return response.Error(err)
	}
	if req.Currency != nil && *req.Currency != s.cfg.Currency {
		return response.Error(errs.Invalid("currency", "this cloud prices in %s, not %q", s.cfg.Currency, *req.Currency))
	}
	p, err := s.ids.PatchProject(r.Context(), r.PathValue("project"), req)
	if err != nil {
		return response.Error(err)
	}
	if p, err = s.withCost(r.Context(), p); err != nil {
		return response.Error(err)
	}
	return response.OK(p)
}

func (s *Server) putQuota(r *request) response.Response {
	var req api.QuotaPut
	if err := decodeBody(r.Request, &req); err != nil {
		return response.Error(err)
	}
	p, err := s.ids.SetQuota(r.Context(), r.PathValue("project"), req.Quota)
	if err != nil {
		return response.Error(err)
	}
	return response.OK(p)
}

func (s *Server) getMembers(r *request) response.Response {
	project := r.PathValue("project")
	if err := s.ids.RequireProject(r.Context(), project); err != nil {
		return response.Error(err)
	}
	m, err := s.ids.Members(r.Context(), project)
	if err != nil {
		return response.Error(err)
	}
	return list(m, "")
}

func (s *Server) putMember(r *request) response.Response {
	var req api.MemberPut
	if err := decodeBody(r.Request, &req); err != nil {
		return response.Error(err)
	}
	m, err := s.ids.SetMember(r.Context(), r.PathValue("project"), r.PathValue("user"), req.Role)
	if err != nil {
		return response.Error(err)
	}
	return response.OK(m)
}

func (s *Server) deleteMember(r *request) response.Response {
	if err := s.ids.RemoveMember(r.Context(), r.PathValue("project"), r.PathValue("user")); err != nil {
		return response.Error(err)
	}
	return response.NoContent()
}

// withCost fills a project's currency and month-to-date cost.
func (s *Server) withCost(ctx context.Context, p api.Project) (api.Project, error) {
	cost, err := s.meter.MonthToDate(ctx, p.Name)
	if err != nil {
		return p, err
	}
	p.Currency, p.MonthToDateMicro = s.meter.Currency(), cost
	return p, nil
}
