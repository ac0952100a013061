package server

import (
	"context"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/kumocloud/kumo/api"
	"github.com/kumocloud/kumo/internal/errs"
	"github.com/kumocloud/kumo/internal/events"
	"github.com/kumocloud/kumo/internal/flavor"
	"github.com/kumocloud/kumo/internal/identity"
	"github.com/kumocloud/kumo/internal/metering"
	"github.com/kumocloud/kumo/internal/reqctx"
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

// report computes usage of a project ("" = all) over [from, to).
func (s *Server) report(ctx context.Context, project string, from, to time.Time, groupBy string) (api.UsageReport, error) {
	prices, rules, err := metering.Load(ctx, s.store, s.cfg.Currency)
	if err != nil {
		return api.UsageReport{}, err
	}
	ms, err := s.compute.ForMetering(ctx, project)
	if err != nil {
		return api.UsageReport{}, err
	}
	insts := make([]metering.Instance, len(ms))
	for i, m := range ms {
		insts[i] = metering.Instance{ID: m.Instance.ID, Name: m.Instance.Name, Project: m.Instance.Project, Flavor: m.Instance.Flavor, Size: m.Instance.Size, History: m.History}
	}
	stored, err := s.images.StoredImages(ctx, project)
	if err != nil {
		return api.UsageReport{}, err
	}
	imgs := make([]metering.Image, len(stored))
	for i, st := range stored {
		imgs[i] = metering.Image{Project: st.Project, Name: st.Name, Bytes: st.Bytes, From: st.From, To: st.To}
	}
	return metering.ReportAll(insts, imgs, prices, rules, from, to, s.now(), groupBy), nil
}

func (s *Server) getProjectUsage(r *request) response.Response {
	project := r.PathValue("project")
	if _, err := s.ids.GetProject(r.Context(), project); err != nil {
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
	rep, err := s.report(r.Context(), project, from, to, g)
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
	rep, err := s.report(r.Context(), "", from, to, g)
	if err != nil {
		return response.Error(err)
	}
	return response.OK(rep)
}

func (s *Server) getPrices(r *request) response.Response {
	p, _, err := metering.Load(r.Context(), s.store, s.cfg.Currency)
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
	if err := metering.SetFlavorPrice(r.Context(), s.store, name, req, s.now()); err != nil {
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
	if err := metering.SetStoragePrice(r.Context(), s.store, req, s.now()); err != nil {
		return response.Error(err)
	}
	return s.getPrices(r)
}

func (s *Server) putRules(r *request) response.Response {
	var req api.RulesPut
	if err := decodeBody(r.Request, &req); err != nil {
		return response.Error(err)
	}
	if err := metering.SetRules(r.Context(), s.store, req); err != nil {
		return response.Error(err)
	}
	return s.getPrices(r)
}

// monthStart is the first instant of t's month (UTC).
func monthStart(t time.Time) time.Time {
	return time.Date(t.Year(), t.Month(), 1, 0, 0, 0, 0, time.UTC)
}

// withCost fills a project's currency and month-to-date cost.
func (s *Server) withCost(ctx context.Context, p api.Project) (api.Project, error) {
	now := s.now()
	rep, err := s.report(ctx, p.Name, monthStart(now), now, metering.ByNone)
	if err != nil {
		return p, err
	}
	p.Currency, p.MonthToDateMicro = s.cfg.Currency, rep.Total.CostMicro
	return p, nil
}

// meteringMetrics are per-project month-to-date figures for Prometheus.
type meteringMetrics struct {
	cost, vcpuHours, instanceHours *prometheus.GaugeVec
	mu                             sync.Mutex
	shown                          map[string]bool // projects with series now
}

func newMeteringMetrics(reg *prometheus.Registry) *meteringMetrics {
	m := &meteringMetrics{
		cost:          prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "kumo_project_cost_month_to_date", Help: "Month-to-date cost per project, in the cloud's currency."}, []string{"project", "currency"}),
		vcpuHours:     prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "kumo_project_vcpu_hours_month_to_date", Help: "Month-to-date vCPU-hours per project."}, []string{"project"}),
		instanceHours: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "kumo_project_instance_hours_month_to_date", Help: "Month-to-date instance-hours per project."}, []string{"project"}),
	}
	reg.MustRegister(m.cost, m.vcpuHours, m.instanceHours)
	m.shown = map[string]bool{}
	return m
}

// CheckBudgets updates the metering metrics and fires budget events: at
// 80 % and at 100 % of a project's monthly budget, once each per month
// (recorded in the store, so restarts do not repeat them).
func (s *Server) CheckBudgets(ctx context.Context) error {
	ctx = reqctx.WithActor(ctx, "metering")
	now := s.now()
	rep, err := s.report(ctx, "", monthStart(now), now, metering.ByProject)
	if err != nil {
		return err
	}
	byProject := map[string]api.UsageLine{}
	mm := s.meterMetrics
	mm.mu.Lock()
	for _, g := range rep.Groups {
		byProject[g.Key] = g
		mm.cost.WithLabelValues(g.Key, s.cfg.Currency).Set(float64(g.CostMicro) / 1e6)
		mm.vcpuHours.WithLabelValues(g.Key).Set(g.VCPUHours)
		mm.instanceHours.WithLabelValues(g.Key).Set(float64(g.InstanceSeconds) / 3600)
	}
	// Series of projects no longer in the report (a new month, a deleted
	// project) go.
	for p := range mm.shown {
		if _, ok := byProject[p]; !ok {
			mm.cost.DeleteLabelValues(p, s.cfg.Currency)
			mm.vcpuHours.DeleteLabelValues(p)
			mm.instanceHours.DeleteLabelValues(p)
			delete(mm.shown, p)
		}
	}
	for p := range byProject {
		mm.shown[p] = true
	}
	mm.mu.Unlock()
	projects, _, err := s.ids.ListProjects(ctx, allSeeing, nil, "", 0)
	if err != nil {
		return err
	}
	period := now.Format("2006-01")
	for _, p := range projects {
		if p.BudgetMicro <= 0 {
			continue
		}
		cost := byProject[p.Name].CostMicro
		for _, pct := range []int{80, 100} {
			if cost*100 < p.BudgetMicro*int64(pct) {
				continue
			}
			obj := map[string]any{"budget_micro": p.BudgetMicro, "month_to_date_cost_micro": cost, "currency": s.cfg.Currency, "percent": pct, "period": period}
			ev := events.Op(ctx, "budget", "threshold-"+strconv.Itoa(pct), p.Name, "/v1/projects/"+p.Name, obj)
			if _, err := metering.MarkAlert(ctx, s.store, p.Name, period, pct, ev); err != nil {
				return err
			}
		}
	}
	return nil
}

// allSeeing lists every project.
var allSeeing = identity.LocalRoot()

// getFlavorWithPrice is a flavor with the price in force now.
func (s *Server) getFlavorWithPrice(ctx context.Context, name string) (api.Flavor, error) {
	f, err := flavor.Get(ctx, s.store, name)
	if err != nil {
		return f, err
	}
	p, _, err := metering.Load(ctx, s.store, s.cfg.Currency)
	if err != nil {
		return f, err
	}
	if pts, ok := p.Flavors[name]; ok {
		f.PriceMicro = metering.Current(pts, s.now())
	}
	return f, nil
}

// meteringLoop runs CheckBudgets periodically.
func (s *Server) meteringLoop(ctx context.Context) {
	t := time.NewTicker(s.cfg.BudgetEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if err := s.CheckBudgets(ctx); err != nil && ctx.Err() == nil {
			s.log.Warn("metering", "err", err)
		}
	}
}
