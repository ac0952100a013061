package server

import (
	"context"
	"errors"
	"time"

	"github.com/kumocloud/kumo/internal/errs"
	"github.com/kumocloud/kumo/internal/identity"
)

// errCredentialGone ends a stream whose credential no longer allows it.
var errCredentialGone = errors.New("the credential that opened this stream no longer allows it")

// whileAuthorized returns a context that ends (cause errCredentialGone)
// once the request's credential would no longer be let in: its token
// revoked, expired or logged out, its user deleted or out of the project,
// or still (when given) no longer true of the principal. A stream opened
// with a token - the event stream, a console's shell - is cut then, as
// the next request would be refused: a console stayed open, as root in
// the container, after logout and removal from the project.
//
// Authentication is asked again every Config.StreamRecheck; a store that
// cannot answer for a moment cuts nothing.
func (s *Server) whileAuthorized(r *request, still func(*identity.Principal) bool) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancelCause(r.Context())
	stop := func() { cancel(context.Canceled) }
	if r.p == nil || r.p.Via == "socket" {
		return ctx, stop
	}
	every := s.cfg.StreamRecheck
	if every <= 0 {
		every = 5 * time.Second
	}
	go func() {
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			p, err := s.authenticate(r.Request)
			if err == nil {
				err = authorize(r.perm, p, nil, r.Request)
			}
			if err == nil && still != nil && !still(p) {
				err = errs.Forbidden("no longer allowed")
			}
			if err != nil && !errors.Is(err, errs.ErrUnavailable) && r.Context().Err() == nil {
				if errors.Is(err, errs.ErrUnauthorized) || errors.Is(err, errs.ErrForbidden) || errors.Is(err, errs.ErrNotFound) {
					cancel(errCredentialGone)
					return
				}
			}
		}
	}()
	return ctx, stop
}
