package metering

import (
	"context"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/kumocloud/kumo/api"
	"github.com/kumocloud/kumo/internal/events"
	"github.com/kumocloud/kumo/internal/reqctx"
	"github.com/kumocloud/kumo/internal/store"
)

// Instances is what metering reads of compute: every instance of a
// project ("" = all), live and ended, with its whole history.
type Instances interface {
	MeteredInstances(ctx context.Context, project string) ([]Instance, error)
}

// Images is what metering reads of the image service: every image of a
// project ("" = all) that has had bytes, deleted ones included.
type Images interface {
	MeteredImages(ctx context.Context, project string) ([]Image, error)
}

// Budget is a project's monthly budget in micro-units (0: none).
type Budget struct {
	Project string
	Micro   int64
}

// Budgets is what metering reads of identity: every project's budget.
type Budgets interface {
	Budgets(ctx context.Context) ([]Budget, error)
}

// Config configures a Meter.
type Config struct {
	// Currency of all prices.
	Currency string
	// Clock stamps price changes and bounds reports.
	Clock func() time.Time
	// Every is how often Run checks budgets and updates the metrics.
	Every  time.Duration
	Logger *slog.Logger
}

// Meter is the metering service over the cloud's history: usage reports,
// prices (kept in the store, see prices.go), and the loop that keeps
// per-project month-to-date metrics and fires budget events.
type Meter struct {
	s         store.Store
	cfg       Config
	instances Instances
	images    Images
	budgets   Budgets
	metrics   *monthMetrics
	// feed and running: when set, the budget loop keeps running totals
	// of instances (running.go) instead of reading them all each round.
	feed    InstanceFeed
	running *Running
}

// Follow makes Run keep running totals of instances from feed; its rounds
// are skipped until the feed's first listing is in.
func (m *Meter) Follow(feed InstanceFeed) {
	m.feed, m.running = feed, NewRunning(SourceLive, SourceArchive)
}

// New returns a meter keeping prices in s and reading the rest through
// instances, images and budgets.
func New(s store.Store, cfg Config, instances Instances, images Images, budgets Budgets) *Meter {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Meter{s: s, cfg: cfg, instances: instances, images: images, budgets: budgets, metrics: newMonthMetrics()}
}

// Currency is the currency of all prices.
func (m *Meter) Currency() string { return m.cfg.Currency }

func (m *Meter) now() time.Time { return m.cfg.Clock().UTC() }

// Collectors are the per-project month-to-date series (project names,
// usage, cost): whoever serves them decides who may see them.
func (m *Meter) Collectors() []prometheus.Collector {
	return []prometheus.Collector{m.metrics.cost, m.metrics.vcpuHours, m.metrics.instanceHours}
}

// Report computes usage and cost of a project ("" = all) over [from, to)
// as of now.
func (m *Meter) Report(ctx context.Context, project string, from, to time.Time, groupBy string) (api.UsageReport, error) {
	prices, rules, err := Load(ctx, m.s, m.cfg.Currency)
	if err != nil {
		return api.UsageReport{}, err
	}
	insts, err := m.instances.MeteredInstances(ctx, project)
	if err != nil {
		return api.UsageReport{}, err
	}
	imgs, err := m.images.MeteredImages(ctx, project)
	if err != nil {
		return api.UsageReport{}, err
	}
	stored, err := LoadStorage(ctx, m.s, project)
	if err != nil {
		return api.UsageReport{}, err
	}
	return ReportAll(insts, imgs, stored, prices, rules, from, to, m.now(), groupBy), nil
}

// monthStart is the first instant of t's month (UTC).
func monthStart(t time.Time) time.Time {
	return time.Date(t.Year(), t.Month(), 1, 0, 0, 0, 0, time.UTC)
}

// MonthToDate is a project's cost since the start of this month.
func (m *Meter) MonthToDate(ctx context.Context, project string) (int64, error) {
	now := m.now()
	rep, err := m.Report(ctx, project, monthStart(now), now, ByNone)
	return rep.Total.CostMicro, err
}

// Prices are the prices, their history and the charging rules.
func (m *Meter) Prices(ctx context.Context) (api.Prices, error) {
	p, _, err := Load(ctx, m.s, m.cfg.Currency)
	return p, err
}

// FlavorPrices are the prices per hour in force now, by flavor.
func (m *Meter) FlavorPrices(ctx context.Context) (map[string]int64, error) {
	p, err := m.Prices(ctx)
	if err != nil {
		return nil, err
	}
	now, out := m.now(), make(map[string]int64, len(p.Flavors))
	for name, pts := range p.Flavors {
		out[name] = Current(pts, now)
	}
	return out, nil
}

// SetFlavorPrice changes a flavor's price from put.EffectiveAt (default:
// now) on.
func (m *Meter) SetFlavorPrice(ctx context.Context, flavor string, put api.PricePut) error {
	return SetFlavorPrice(ctx, m.s, flavor, put, m.now())
}

// SetStoragePrice changes the price per GiB-hour of stored disks.
func (m *Meter) SetStoragePrice(ctx context.Context, put api.PricePut) error {
	return SetStoragePrice(ctx, m.s, put, m.now())
}

// SetKindPrice changes the price per GiB-hour of volumes,
// volume-snapshots or volume-backups (name).
func (m *Meter) SetKindPrice(ctx context.Context, name string, put api.PricePut) error {
	return SetKindPrice(ctx, m.s, name, put, m.now())
}

// SetRules changes which states bill what.
func (m *Meter) SetRules(ctx context.Context, put api.RulesPut) error {
	return SetRules(ctx, m.s, put)
}

// ForgetProject removes what metering keeps under the name of a deleted
// project (its budget alerts) and moves its storage ledger to the name
// as.
func (m *Meter) ForgetProject(ctx context.Context, project, as string) error {
	return ForgetProject(ctx, m.s, project, as)
}

// monthMetrics are per-project month-to-date figures for Prometheus.
type monthMetrics struct {
	cost, vcpuHours, instanceHours *prometheus.GaugeVec
	mu                             sync.Mutex
	shown                          map[string]bool // projects with series now
}

func newMonthMetrics() *monthMetrics {
	return &monthMetrics{
		cost:          prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "kumo_project_cost_month_to_date", Help: "Month-to-date cost per project, in the cloud's currency."}, []string{"project", "currency"}),
		vcpuHours:     prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "kumo_project_vcpu_hours_month_to_date", Help: "Month-to-date vCPU-hours per project."}, []string{"project"}),
		instanceHours: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "kumo_project_instance_hours_month_to_date", Help: "Month-to-date instance-hours per project."}, []string{"project"}),
		shown:         map[string]bool{},
	}
}

// show sets the series to a month-to-date report by project; series of
// projects no longer in it (a new month, a deleted project) go.
func (mm *monthMetrics) show(rep api.UsageReport, currency string) {
	mm.mu.Lock()
	defer mm.mu.Unlock()
	in := map[string]bool{}
	for _, g := range rep.Groups {
		in[g.Key] = true
		mm.cost.WithLabelValues(g.Key, currency).Set(float64(g.CostMicro) / 1e6)
		mm.vcpuHours.WithLabelValues(g.Key).Set(g.VCPUHours)
		mm.instanceHours.WithLabelValues(g.Key).Set(float64(g.InstanceSeconds) / 3600)
	}
	for p := range mm.shown {
		if !in[p] {
			mm.cost.DeleteLabelValues(p, currency)
			mm.vcpuHours.DeleteLabelValues(p)
			mm.instanceHours.DeleteLabelValues(p)
		}
	}
	mm.shown = in
}

// monthByProject is the month-to-date report by project: from the
// running totals once they are in, else from every instance.
func (m *Meter) monthByProject(ctx context.Context, now time.Time) (api.UsageReport, error) {
	if m.running == nil || !m.running.Ready() {
		return m.Report(ctx, "", monthStart(now), now, ByProject)
	}
	prices, rules, err := Load(ctx, m.s, m.cfg.Currency)
	if err != nil {
		return api.UsageReport{}, err
	}
	imgs, err := m.images.MeteredImages(ctx, "")
	if err != nil {
		return api.UsageReport{}, err
	}
	stored, err := LoadStorage(ctx, m.s, "")
	if err != nil {
		return api.UsageReport{}, err
	}
	return m.running.Report(imgs, stored, prices, rules, now), nil
}

// CheckBudgets updates the metrics and fires budget events: at 80 % and
// at 100 % of a project's monthly budget, once each per month (recorded
// in the store, so restarts do not repeat them).
func (m *Meter) CheckBudgets(ctx context.Context) error {
	ctx = reqctx.WithActor(ctx, "metering")
	now := m.now()
	rep, err := m.monthByProject(ctx, now)
	if err != nil {
		return err
	}
	m.metrics.show(rep, m.cfg.Currency)
	cost := map[string]int64{}
	for _, g := range rep.Groups {
		cost[g.Key] = g.CostMicro
	}
	budgets, err := m.budgets.Budgets(ctx)
	if err != nil {
		return err
	}
	period := now.Format("2006-01")
	for _, b := range budgets {
		if b.Micro <= 0 {
			continue
		}
		c := cost[b.Project]
		for _, pct := range []int{80, 100} {
			if c*100 < b.Micro*int64(pct) {
				continue
			}
			obj := map[string]any{"budget_micro": b.Micro, "month_to_date_cost_micro": c, "currency": m.cfg.Currency, "percent": pct, "period": period}
			ev := events.Op(ctx, "budget", "threshold-"+strconv.Itoa(pct), b.Project, "/v1/projects/"+b.Project, obj)
			if _, err := MarkAlert(ctx, m.s, b.Project, period, pct, ev); err != nil {
				return err
			}
		}
	}
	return nil
}

// Run checks budgets every cfg.Every until ctx ends.
func (m *Meter) Run(ctx context.Context) {
	if m.feed != nil {
		go m.feed.FollowInstances(ctx, m.running, m.cfg.Logger)
	}
	t := time.NewTicker(m.cfg.Every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if m.running != nil && !m.running.Ready() {
			// A round before the feed has listed every instance would read
			// and decode all of them from the store (at 100,000 instances a
			// fifth of the server's CPU): the next round acts instead.
			m.cfg.Logger.Warn("budget round skipped: the instance feed has not listed every instance yet")
			continue
		}
		if err := m.CheckBudgets(ctx); err != nil && ctx.Err() == nil {
			m.cfg.Logger.Warn("metering", "err", err)
		}
	}
}
