package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/kumocloud/kumo/api"
	"github.com/kumocloud/kumo/internal/errs"
	"github.com/kumocloud/kumo/internal/events"
	"github.com/kumocloud/kumo/internal/identity"
	"github.com/kumocloud/kumo/internal/server/response"
)

// getEvents streams events as server-sent events. ?project= and ?type=
// (comma-separated; "project" also matches "project.x") filter them;
// ?since=ID or the Last-Event-ID header (the later of the two) resumes
// after an event; ?follow=false sends what is kept and ends.
func (s *Server) getEvents(r *request, w http.ResponseWriter) {
	q := r.URL.Query()
	f := events.Filter{Global: r.p.CloudAdmin}
	if !r.p.CloudAdmin {
		f.Projects = map[string]bool{}
		for p := range r.p.Roles {
			f.Projects[p] = true
		}
	}
	if proj := q.Get("project"); proj != "" {
		if !r.p.CanSee(proj) {
			response.Error(errs.NotFound("project %q not found", proj)).Render(w, r.Request)
			return
		}
		f.Projects, f.Global = map[string]bool{proj: true}, false
	}
	if t := q.Get("type"); t != "" {
		f.Types = strings.Split(t, ",")
	}
	// The later of ?since and Last-Event-ID: a browser's EventSource
	// reconnects to the URL it was given, since and all, and names the
	// last event it got in the header.
	var sinceID int64
	for _, in := range []struct{ field, value string }{{"since", q.Get("since")}, {"Last-Event-ID", r.Header.Get("Last-Event-ID")}} {
		if in.value == "" {
			continue
		}
		n, err := strconv.ParseInt(in.value, 10, 64)
		if err != nil || n < 0 {
			response.Error(errs.Invalid(in.field, "%s must be an event id (a non-negative integer), got %q", in.field, in.value)).Render(w, r.Request)
			return
		}
		sinceID = max(sinceID, n)
	}
	follow := true
	if v := q.Get("follow"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			response.Error(errs.Invalid("follow", "follow must be true or false")).Render(w, r.Request)
			return
		}
		follow = b
	}
	flusher, _ := w.(http.Flusher)
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	// A comment first, so clients know the stream is open.
	fmt.Fprint(w, ": kumo events\n\n")
	if flusher != nil {
		flusher.Flush()
	}
	// The stream lasts while its credential still sees what it asked for.
	ctx, stop := s.whileAuthorized(r.Context(), r, func(p *identity.Principal) bool {
		if f.Global {
			return p.CloudAdmin
		}
		for proj := range f.Projects {
			if !p.CanSee(proj) {
				return false
			}
		}
		return true
	})
	defer stop()
	credentialGone := func() {
		if errors.Is(context.Cause(ctx), errCredentialGone) {
			b, _ := json.Marshal(api.ErrorResponse{Error: api.ErrorBody{Code: api.CodeUnauthorized, Message: errCredentialGone.Error() + ": log in again"}})
			fmt.Fprintf(w, "event: error\ndata: %s\n\n", b)
		}
	}
	// Keep idle connections alive through proxies.
	stopBeat := make(chan struct{})
	beat := make(chan struct{}, 1)
	go func() {
		t := time.NewTicker(15 * time.Second)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				select {
				case beat <- struct{}{}:
				default:
				}
			case <-stopBeat:
				return
			}
		}
	}()
	defer close(stopBeat)
	out := make(chan api.Event, 256)
	errc := make(chan error, 1)
	go func() {
		errc <- events.Stream(ctx, s.store, sinceID, follow, f, func(ev api.Event) error {
			select {
			case out <- ev:
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		})
		close(out)
	}()
	for {
		select {
		case ev, ok := <-out:
			if !ok {
				credentialGone()
				if err := <-errc; err != nil && ctx.Err() == nil {
					b, _ := json.Marshal(api.ErrorResponse{Error: api.ErrorBody{Code: api.CodeUnavailable, Message: err.Error()}})
					fmt.Fprintf(w, "event: error\ndata: %s\n\n", b)
				}
				return
			}
			b, _ := json.Marshal(ev)
			fmt.Fprintf(w, "id: %d\nevent: %s\ndata: %s\n\n", ev.ID, ev.Type, b)
		case <-beat:
			fmt.Fprint(w, ": keep-alive\n\n")
		case <-ctx.Done():
			credentialGone()
			return
		}
		if flusher != nil {
			flusher.Flush()
		}
	}
}
