package server

import (
	"context"
	"net"
	"net/http"
	"time"

	"github.com/kumocloud/kumo/api"
	"github.com/kumocloud/kumo/internal/errs"
	"github.com/kumocloud/kumo/internal/events"
	"github.com/kumocloud/kumo/internal/server/response"
	"github.com/kumocloud/kumo/internal/store"
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
	if g, ok := s.store.(*store.SpaceGuard); ok {
		if free, full := g.Free(); full {
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

func list[T any](items []T, next string) response.Response {
	if items == nil {
		items = []T{}
	}
	return response.OK(api.List[T]{Items: items, Next: next})
}

// --- tokens ---

func (s *Server) postTokens(r *request) response.Response {
	var req api.TokensPost
	if err := decodeBody(r.Request, &req); err != nil {
		return response.Error(err)
	}
	if req.TTLSeconds < 0 {
		return response.Error(errs.Invalid("ttl_seconds", "ttl_seconds must not be negative"))
	}
	ttl := time.Duration(req.TTLSeconds) * time.Second
	if r.agent != nil {
		return response.Error(errs.Invalid("username", "agents cannot make user tokens"))
	}
	if req.Username == "" && req.Password == "" {
		// A new token for whoever is already authenticated.
		if r.p == nil {
			p, err := s.authenticate(r.Request)
			if err != nil {
				return response.Error(errs.Invalid("username", "username and password are required (or send a valid token)"))
			}
			r.p = p
		}
		if r.p.Via == "socket" {
			return response.Error(errs.Invalid("username", "the local socket needs no token; to make one for a user, give username and password"))
		}
		tok, err := s.ids.IssueChildToken(r.Context(), r.p.TokenID, req.Description, ttl)
		if err != nil {
			return response.Error(err)
		}
		return response.Created(tok)
	}
	client, _, _ := net.SplitHostPort(r.RemoteAddr)
	tok, err := s.ids.Login(r.Context(), req.Username, req.Password, client, req.Description, ttl)
	result := "ok"
	if err != nil {
		result = "failed"
		if errs.KindOf(err) == errs.KindTooMany {
			result = "throttled"
		}
	}
	s.metrics.logins.WithLabelValues(result).Inc()
	if err != nil {
		return response.Error(err)
	}
	return response.Created(tok)
}

func (s *Server) getTokens(r *request) response.Response {
	all, err := parseBool(r.Request, "all")
	if err != nil {
		return response.Error(err)
	}
	if all && !r.p.CloudAdmin {
		return response.Error(errs.Forbidden("only a cloud admin may list everyone's tokens"))
	}
	toks, err := s.ids.ListTokens(r.Context(), r.p.UserID, all)
	if err != nil {
		return response.Error(err)
	}
	return list(toks, "")
}

// ownToken returns the token if the caller owns it or is a cloud admin;
// anyone else is told it does not exist.
func (s *Server) ownToken(r *request) (api.Token, error) {
	id := r.PathValue("id")
	tok, err := s.ids.GetToken(r.Context(), id)
	if err != nil {
		return tok, err
	}
	// Tokens from before user ids were recorded go by name.
	mine := tok.UserID == r.p.UserID || tok.UserID == "" && tok.User == r.p.User
	if !r.p.CloudAdmin && (r.p.UserID == "" || !mine) {
		return tok, errs.NotFound("token %q not found", id)
	}
	return tok, nil
}

func (s *Server) getToken(r *request) response.Response {
	tok, err := s.ownToken(r)
	if err != nil {
		return response.Error(err)
	}
	return response.OK(tok)
}

func (s *Server) deleteToken(r *request) response.Response {
	if _, err := s.ownToken(r); err != nil {
		return response.Error(err)
	}
	tok, err := s.ids.RevokeToken(r.Context(), r.PathValue("id"))
	if err != nil {
		return response.Error(err)
	}
	return response.OK(tok)
}

func (s *Server) getWhoami(r *request) response.Response {
	return response.OK(r.p.Whoami())
}

// --- projects ---

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
	if _, err := s.ids.GetProject(r.Context(), project); err != nil {
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

// --- users ---

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
