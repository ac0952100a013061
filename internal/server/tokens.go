package server

import (
	"net"
	"time"

	"github.com/kumocloud/kumo/api"
	"github.com/kumocloud/kumo/internal/errs"
	"github.com/kumocloud/kumo/internal/server/response"
)

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
