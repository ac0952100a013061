package server

import (
	"strconv"
	"time"

	"github.com/kumocloud/kumo/api"
	"github.com/kumocloud/kumo/internal/errs"
	"github.com/kumocloud/kumo/internal/server/response"
)

// canSeeOperation: cloud admins see all; others see operations of projects
// they have a role in, and their own project-less ones.
func canSeeOperation(r *request, op api.Operation) bool {
	if op.Project == "" {
		return r.p.CloudAdmin || op.Actor == r.p.User
	}
	return r.p.CanSee(op.Project)
}

func (s *Server) listOperations(r *request, keep func(api.Operation) bool) response.Response {
	lp, err := parseList(r.Request)
	if err != nil {
		return response.Error(err)
	}
	items, next, err := s.ops.List(r.Context(), keep, lp.after, lp.limit)
	if err != nil {
		return response.Error(err)
	}
	return list(items, next)
}

func (s *Server) getOperations(r *request) response.Response {
	return s.listOperations(r, func(op api.Operation) bool { return canSeeOperation(r, op) })
}

func (s *Server) getProjectOperations(r *request) response.Response {
	project := r.PathValue("project")
	if err := s.ids.RequireProject(r.Context(), project); err != nil {
		return response.Error(err)
	}
	return s.listOperations(r, func(op api.Operation) bool { return op.Project == project })
}

// maxWait caps ?wait= so a request never hangs for long.
const maxWait = 10 * time.Minute

func (s *Server) getOperation(r *request) response.Response {
	id := r.PathValue("id")
	op, _, err := s.ops.Get(r.Context(), id)
	if err != nil {
		return response.Error(err)
	}
	if !canSeeOperation(r, op) {
		return response.Error(errs.NotFound("operation %q not found", id))
	}
	if v := r.URL.Query().Get("wait"); v != "" {
		secs, err := strconv.ParseFloat(v, 64)
		if err != nil || secs < 0 {
			return response.Error(errs.Invalid("wait", "wait must be a number of seconds >= 0, got %q", v))
		}
		d := min(time.Duration(secs*float64(time.Second)), maxWait)
		if op, err = s.ops.Wait(r.Context(), id, d); err != nil {
			return response.Error(err)
		}
	}
	return response.OK(op)
}
