package server

import (
	"time"

	"github.com/kumocloud/kumo/api"
	"github.com/kumocloud/kumo/internal/errs"
	"github.com/kumocloud/kumo/internal/metering"
	"github.com/kumocloud/kumo/internal/server/response"
)

func (s *Server) now() time.Time { return s.cfg.Clock().UTC() }

// parseTime reads RFC 3339 or a plain date (UTC midnight).
func parseTime(field, v string) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339, v); err == nil {
		return t.UTC(), nil
	}
	if t, err := time.Parse("2006-01-02", v); err == nil {
		return t, nil
	}
	return time.Time{}, errs.Invalid(field, "%s %q: use RFC 3339 (2026-11-01T00:00:00Z) or a date (2026-11-01)", field, v)
}

// parseRange reads ?from=&to=: both required, from before to, neither in
// the future.
func (s *Server) parseRange(r *request) (time.Time, time.Time, error) {
	q := r.URL.Query()
	for _, f := range []string{"from", "to"} {
		if q.Get(f) == "" {
			return time.Time{}, time.Time{}, errs.Invalid(f, "%s is required: a report covers a bounded range", f)
		}
	}
	from, err := parseTime("from", q.Get("from"))
	if err != nil {
		return from, from, err
	}
	to, err := parseTime("to", q.Get("to"))
	if err != nil {
		return from, to, err
	}
	now := s.now()
	switch {
	case !to.After(from):
		return from, to, errs.Invalid("to", "to (%s) must be after from (%s)", to.Format(time.RFC3339), from.Format(time.RFC3339))
	case from.After(now):
		return from, to, errs.Invalid("from", "from (%s) is in the future", from.Format(time.RFC3339))
	case to.After(now.Add(time.Minute)):
		return from, to, errs.Invalid("to", "to (%s) is in the future; use now (%s) at the latest", to.Format(time.RFC3339), now.Format(time.RFC3339))
	}
	return from, to, nil
}

func parseGroupBy(r *request, def string) (string, error) {
	g := r.URL.Query().Get("group_by")
	if g == "" {
		g = def
	}
	switch g {
	case metering.ByNone, metering.ByInstance, metering.ByFlavor, metering.ByDay, metering.ByProject:
		return g, nil
	case "none", "total":
		return metering.ByNone, nil
	}
	return "", errs.Invalid("group_by", "group_by %q: use instance, flavor, day or project", g)
}

func (s *Server) getProjectUsage(r *request) response.Response {
	project := r.PathValue("project")
	if err := s.ids.RequireProject(r.Context(), project); err != nil {
		return response.Error(err)
	}
	from, to, err := s.parseRange(r)
	if err != nil {
		return response.Error(err)
	}
	g, err := parseGroupBy(r, metering.ByInstance)
	if err != nil {
		return response.Error(err)
	}
	rep, err := s.meter.Report(r.Context(), project, from, to, g)
	if err != nil {
		return response.Error(err)
	}
	return response.OK(rep)
}

func (s *Server) getUsage(r *request) response.Response {
	from, to, err := s.parseRange(r)
	if err != nil {
		return response.Error(err)
	}
	g, err := parseGroupBy(r, metering.ByProject)
	if err != nil {
		return response.Error(err)
	}
	rep, err := s.meter.Report(r.Context(), "", from, to, g)
	if err != nil {
		return response.Error(err)
	}
	return response.OK(rep)
}

func (s *Server) getPrices(r *request) response.Response {
	p, err := s.meter.Prices(r.Context())
	if err != nil {
		return response.Error(err)
	}
	return response.OK(p)
}

func (s *Server) putFlavorPrice(r *request) response.Response {
	var req api.PricePut
	if err := decodeBody(r.Request, &req); err != nil {
		return response.Error(err)
	}
	name := r.PathValue("flavor")
	if _, err := s.getFlavorWithPrice(r.Context(), name); err != nil {
		return response.Error(err)
	}
	if err := s.meter.SetFlavorPrice(r.Context(), name, req); err != nil {
		return response.Error(err)
	}
	f, err := s.getFlavorWithPrice(r.Context(), name)
	if err != nil {
		return response.Error(err)
	}
	return response.OK(f)
}

func (s *Server) putStoragePrice(r *request) response.Response {
	var req api.PricePut
	if err := decodeBody(r.Request, &req); err != nil {
		return response.Error(err)
	}
	if err := s.meter.SetStoragePrice(r.Context(), req); err != nil {
		return response.Error(err)
	}
	return s.getPrices(r)
}

func (s *Server) putKindPrice(r *request) response.Response {
	var req api.PricePut
	if err := decodeBody(r.Request, &req); err != nil {
		return response.Error(err)
	}
	if err := s.meter.SetKindPrice(r.Context(), r.PathValue("kind"), req); err != nil {
		return response.Error(err)
	}
	return s.getPrices(r)
}

func (s *Server) putRules(r *request) response.Response {
	var req api.RulesPut
	if err := decodeBody(r.Request, &req); err != nil {
		return response.Error(err)
	}
	if err := s.meter.SetRules(r.Context(), req); err != nil {
		return response.Error(err)
	}
	return s.getPrices(r)
}
