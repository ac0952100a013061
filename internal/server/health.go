package server

import (
	"context"
	"net/http"
	"time"

	"github.com/kumocloud/kumo/api"
	"github.com/kumocloud/kumo/internal/errs"
	"github.com/kumocloud/kumo/internal/events"
	"github.com/kumocloud/kumo/internal/server/response"
)

func (s *Server) healthz(r *request, w http.ResponseWriter) {
	w.Header().Set("Content-Type", "text/plain")
	w.Write([]byte("ok\n"))
}

func (s *Server) readyz(r *request, w http.ResponseWriter) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	if _, err := s.store.Revision(ctx); err != nil || !s.ready {
		response.Error(errs.Unavailable("not ready: the store does not answer")).Render(w, r.Request)
		return
	}
	if s.guard != nil {
		if free, full := s.guard.Free(); full {
			response.Error(errs.Unavailable("not ready for writes: the data dir's disk is full (%d MiB free); reads are served", free>>20)).Render(w, r.Request)
			return
		}
	}
	w.Header().Set("Content-Type", "text/plain")
	w.Write([]byte("ready\n"))
}

func (s *Server) getServerInfo(r *request) response.Response {
	rev, err := s.store.Revision(r.Context())
	if err != nil {
		return response.Error(err)
	}
	return response.OK(api.ServerInfo{Version: s.cfg.Version, APIVersion: api.Version, CAFingerprint: s.caFP, Store: s.storeDesc, StoreRevision: rev, EventsAfter: events.ID(rev+1, 0) - 1})
}

func (s *Server) getOpenAPI(r *request, w http.ResponseWriter) {
	w.Header().Set("Content-Type", "application/yaml")
	w.Write(api.OpenAPI)
}
