package server

import "github.com/kumocloud/kumo/internal/server/response"

// getConsolidation shows the plan that would empty the least-used hosts.
func (s *Server) getConsolidation(r *request) response.Response {
	plan, err := s.compute.Consolidation(r.Context())
	if err != nil {
		return response.Error(err)
	}
	return response.OK(plan)
}

// postConsolidation applies a fresh plan (409 while this server has no
// migration to carry it out).
func (s *Server) postConsolidation(r *request) response.Response {
	plan, err := s.compute.Consolidate(r.Context())
	if err != nil {
		return response.Error(err)
	}
	return response.OK(plan)
}
