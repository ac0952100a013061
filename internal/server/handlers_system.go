package server

import (
	"crypto/subtle"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/kumocloud/kumo/api"
	"github.com/kumocloud/kumo/internal/errs"
	"github.com/kumocloud/kumo/internal/events"
	"github.com/kumocloud/kumo/internal/flavor"
	"github.com/kumocloud/kumo/internal/server/response"
)

// metricsHandler serves Prometheus metrics. Anyone gets the process and
// HTTP series; per-project series (project names, usage, cost) only a
// cloud admin or a scraper with the metrics token (--metrics-token-file).
func (s *Server) metricsHandler(r *request, w http.ResponseWriter) {
	g := prometheus.Gatherers{s.registry}
	if s.mayScrapeProjects(r) {
		g = append(g, s.projectRegistry)
	}
	promhttp.HandlerFor(g, promhttp.HandlerOpts{}).ServeHTTP(w, r.Request)
}

func (s *Server) mayScrapeProjects(r *request) bool {
	if r.p != nil && r.p.CloudAdmin {
		return true
	}
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	return ok && s.metricsToken != "" && subtle.ConstantTimeCompare([]byte(strings.TrimSpace(tok)), []byte(s.metricsToken)) == 1
}

// readMetricsToken reads the scrapers' bearer token from a file only its
// owner may read.
func readMetricsToken(path string) (string, error) {
	st, err := os.Stat(path)
	if err != nil {
		return "", fmt.Errorf("--metrics-token-file: %w", err)
	}
	if st.Mode().Perm()&0o077 != 0 {
		return "", fmt.Errorf("--metrics-token-file %s: mode %v lets others read it; chmod 600 it", path, st.Mode().Perm())
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("--metrics-token-file: %w", err)
	}
	tok := strings.TrimSpace(string(b))
	if len(tok) < 16 || strings.ContainsAny(tok, " \t\n") {
		return "", fmt.Errorf("--metrics-token-file %s: want one token of at least 16 characters, no spaces", path)
	}
	return tok, nil
}

// --- operations ---

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
	if _, err := s.ids.GetProject(r.Context(), project); err != nil {
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

// --- events ---

// getEvents streams events as server-sent events. ?project= and ?type=
// (comma-separated; "project" also matches "project.x") filter them;
// ?since=ID or the Last-Event-ID header resumes after an event;
// ?follow=false sends what is kept and ends.
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
	since := q.Get("since")
	if since == "" {
		since = r.Header.Get("Last-Event-ID")
	}
	var sinceID int64
	if since != "" {
		n, err := strconv.ParseInt(since, 10, 64)
		if err != nil || n < 0 {
			response.Error(errs.Invalid("since", "since must be an event id (a non-negative integer), got %q", since)).Render(w, r.Request)
			return
		}
		sinceID = n
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
	ctx := r.Context()
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
			return
		}
		if flusher != nil {
			flusher.Flush()
		}
	}
}

// --- flavors ---

func (s *Server) getFlavors(r *request) response.Response {
	lp, err := parseList(r.Request)
	if err != nil {
		return response.Error(err)
	}
	items, next, err := flavor.List(r.Context(), s.store, lp.labels, lp.after, lp.limit)
	if err != nil {
		return response.Error(err)
	}
	prices, err := s.meter.FlavorPrices(r.Context())
	if err != nil {
		return response.Error(err)
	}
	for i := range items {
		if p, ok := prices[items[i].Name]; ok {
			items[i].PriceMicro = p
		}
	}
	return list(items, next)
}

func (s *Server) postFlavors(r *request) response.Response {
	var req api.FlavorsPost
	if err := decodeBody(r.Request, &req); err != nil {
		return response.Error(err)
	}
	f, err := flavor.Create(r.Context(), s.store, req)
	if err != nil {
		return response.Error(err)
	}
	return response.Created(f)
}

func (s *Server) getFlavor(r *request) response.Response {
	f, err := s.getFlavorWithPrice(r.Context(), r.PathValue("flavor"))
	if err != nil {
		return response.Error(err)
	}
	return response.OK(f)
}

func (s *Server) deleteFlavor(r *request) response.Response {
	if err := flavor.Delete(r.Context(), s.store, r.PathValue("flavor")); err != nil {
		return response.Error(err)
	}
	return response.NoContent()
}
