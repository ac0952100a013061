// Package server is kumo's API server, an HTTP adapter: the endpoint table
// (endpoints.go), its middleware (authentication, permissions, idempotency,
// logging, metrics), the handlers - one file per resource family, each
// decoding a request, calling a service and rendering its answer - and the
// listeners (HTTPS with a self-signed CA, and a local Unix socket that
// needs no login). The work is the services' (identity, compute, images,
// network, metering, operations...); New builds them on the store and
// wires them to each other through the small interfaces they declare
// (adapters.go). What the server keeps itself is what only a live
// connection can hold: the sessions handed to agents (sessions.go) and the
// fence that keeps requests out of a project being deleted.
package server

import (
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/kumocloud/kumo/internal/atomicfile"
	"github.com/kumocloud/kumo/internal/compute"
	"github.com/kumocloud/kumo/internal/driver"
	"github.com/kumocloud/kumo/internal/events"
	"github.com/kumocloud/kumo/internal/flavor"
	"github.com/kumocloud/kumo/internal/hosts"
	"github.com/kumocloud/kumo/internal/idempotency"
	"github.com/kumocloud/kumo/internal/identity"
	"github.com/kumocloud/kumo/internal/images"
	"github.com/kumocloud/kumo/internal/metering"
	"github.com/kumocloud/kumo/internal/network"
	"github.com/kumocloud/kumo/internal/operations"
	"github.com/kumocloud/kumo/internal/scheduler"
	"github.com/kumocloud/kumo/internal/store"
	"github.com/kumocloud/kumo/internal/store/etcdstore"
	"github.com/kumocloud/kumo/internal/volumes"
)

// Config configures a server.
type Config struct {
	// DataDir holds the embedded etcd data, TLS material and the
	// bootstrap admin credentials.
	DataDir string
	// Listen is the HTTPS address ("" = none).
	Listen string
	// Socket is the Unix socket path ("" = none).
	Socket string
	// EtcdEndpoints selects an external etcd cluster instead of the
	// embedded one; EtcdPrefix is the key prefix used there.
	EtcdEndpoints []string
	EtcdPrefix    string
	// Identity settings (token lifetimes, default quota...).
	Identity identity.Options
	// EventRetention is how long events are kept.
	EventRetention time.Duration
	// EgressNAT lets tenant networks out through their hosts (opt-in).
	EgressNAT bool
	// OperationRetention is how long ended operations are kept.
	OperationRetention time.Duration
	// Version is reported by GET /v1.
	Version string
	// Logger; the default discards.
	Logger *slog.Logger
	// UnsafeNoFsync makes the embedded etcd skip fsync: tests only.
	UnsafeNoFsync bool
	// MinFreeSpace is the free space kept in reserve on the data dir's
	// filesystem (default 256 MiB): below it, writes answer 507 and the
	// server stays up for reads (an embedded etcd that runs out of space
	// mid-write stops the process).
	MinFreeSpace int64
	// SessionIdle ends a browser session after this long without a
	// request (zero: never; the command line's default is
	// DefaultSessionIdle).
	SessionIdle time.Duration
	// APIRate limits tenants' requests (zero: no limit; the command
	// line's default is DefaultAPIRate).
	APIRate APIRate
	// HostGrace is how long a host may miss heartbeats before it is
	// OFFLINE (default 15 s).
	HostGrace time.Duration
	// HAFenceTimeout is how long an HA instance's host stays lost before
	// the instance is recreated elsewhere (default 60 s; it must exceed
	// the agents' fence grace by a margin, docs/ha.md).
	HAFenceTimeout time.Duration
	// SchedulerPolicy: packing (default), striping or load-aware.
	SchedulerPolicy string
	// LocalDriver, when set, runs an agent inside the server for these
	// drivers (the all-in-one setup), each with its configuration in
	// LocalDriverConfigs.
	LocalDriver        string
	LocalDriverConfigs driver.Configs
	// LocalVTEP is the local agent's VXLAN address ("" or auto: found).
	LocalVTEP string
	// LocalUplinks name the local agent's external network devices.
	LocalUplinks map[string]string
	// Currency of all prices (default EUR).
	Currency string
	// Clock stamps history and bounds reports (tests control it).
	Clock func() time.Time
	// BudgetEvery is how often budgets and metering metrics are checked
	// (default 30 s).
	BudgetEvery time.Duration
	// StreamRecheck is how often a long-lived stream (events, a console)
	// checks that its credential still allows it (default 5 s).
	StreamRecheck time.Duration
	// MetricsTokenFile holds a bearer token (mode 0600) that lets
	// scrapers see per-project series on /metrics, as cloud admins do.
	MetricsTokenFile string
	// MaxImageMiB bounds an image's upload and what it unpacks to
	// (0: images.DefaultMaxSize).
	MaxImageMiB int64
}

// Server is a running kumo API server.
type Server struct {
	cfg       Config
	log       *slog.Logger
	store     store.Store
	storeDesc string
	ids       *identity.Service
	hosts     *hosts.Service
	compute   *compute.Service
	images    *images.Service
	snapshots *images.Snapshots
	networks  *network.Service
	// viewPolls counts the agents' long polls of their network views
	// waiting for a change (agents.go).
	viewPolls atomic.Int64
	volumes   *volumes.Service
	sessions  *sessions
	consoles  consoleLimits
	rates     *rateLimits
	// idleSessions ends browser sessions left idle (websession.go).
	idleSessions *idleSessions
	tunnels      *tunnels      // migrations' byte streams between two agents
	fence        *projectFence // keeps changes out of projects being deleted
	stopRun      context.CancelFunc
	stopCache    context.CancelFunc
	guard        *store.SpaceGuard // the data dir's disk space check (embedded etcd)
	ops          *operations.Manager
	meter        *metering.Meter
	metrics      *metrics
	registry     *prometheus.Registry // series anyone may scrape
	// projectRegistry has per-project series (names, usage, cost): only
	// for cloud admins and the metrics token.
	projectRegistry *prometheus.Registry
	metricsToken    string
	handler         http.Handler
	tlsCert         tls.Certificate
	caFP            string
	ready           bool
	// instance identifies this server process; alone says no other
	// server shares its store (embedded etcd).
	instance string
	alone    bool

	// AdminPassword is set when this start bootstrapped the cloud.
	AdminPassword string

	httpsAddr string
	// dirLock keeps other servers off the data dir; unlockStore releases
	// the store's server lock, and lockLost is closed if it is lost.
	dirLock     *dataDirLock
	unlockStore func()
	lockLost    <-chan struct{}
	mu          sync.Mutex
	listeners   []*http.Server
	stopJan     context.CancelFunc
	janDone     chan struct{}
}

// New opens the store (embedded etcd in DataDir unless EtcdEndpoints is
// set), bootstraps the cloud on first start and builds the handler.
func New(ctx context.Context, cfg Config) (*Server, error) {
	if cfg.DataDir == "" {
		return nil, errors.New("server: a data dir is required")
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("data dir: %w", err)
	}
	dirLock, err := lockDataDir(cfg.DataDir)
	if err != nil {
		return nil, err
	}
	var es *etcdstore.Store
	desc := "embedded etcd"
	unlock, lost := func() {}, (<-chan struct{})(nil)
	if len(cfg.EtcdEndpoints) > 0 {
		prefix := cfg.EtcdPrefix
		if prefix == "" {
			prefix = "/kumo"
		}
		if es, err = etcdstore.OpenRemote(ctx, cfg.EtcdEndpoints, prefix); err != nil {
			dirLock.release()
			return nil, err
		}
		desc = es.String()
		// An embedded etcd is this data dir's alone (the flock above); a
		// remote one may be shared by servers on other machines.
		host, _ := os.Hostname()
		if unlock, lost, err = es.Lock(ctx, etcdstore.Holder{PID: os.Getpid(), Host: host, DataDir: cfg.DataDir}, 15); err != nil {
			es.Close()
			dirLock.release()
			return nil, err
		}
	} else if es, err = etcdstore.OpenEmbedded(ctx, etcdstore.EmbedOptions{Dir: filepath.Join(cfg.DataDir, "etcd"), NoFsync: cfg.UnsafeNoFsync, Logger: cfg.Logger}); err != nil {
		dirLock.release()
		return nil, err
	}
	var st store.Store = es
	if len(cfg.EtcdEndpoints) == 0 {
		if cfg.MinFreeSpace <= 0 {
			cfg.MinFreeSpace = 256 << 20
		}
		st = store.GuardSpace(es, cfg.DataDir, cfg.MinFreeSpace, cfg.Logger)
	}
	s, err := NewWithStore(ctx, cfg, st)
	if err != nil {
		unlock()
		es.Close()
		dirLock.release()
		return nil, err
	}
	s.storeDesc, s.dirLock, s.unlockStore, s.lockLost = desc, dirLock, unlock, lost
	return s, nil
}

// NewWithStore builds a server on an open store (tests use memstore).
func NewWithStore(ctx context.Context, cfg Config, st store.Store) (*Server, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Identity.TokenTTL == 0 {
		cfg.Identity = identity.DefaultOptions()
	}
	if cfg.EventRetention == 0 {
		cfg.EventRetention = 24 * time.Hour
	}
	if cfg.OperationRetention == 0 {
		cfg.OperationRetention = 7 * 24 * time.Hour
	}
	if cfg.Version == "" {
		cfg.Version = "dev"
	}
	if cfg.Currency == "" {
		cfg.Currency = "EUR"
	}
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	if cfg.BudgetEvery <= 0 {
		cfg.BudgetEvery = 30 * time.Second
	}
	// Records every create reads and few write are read from memory
	// (store.Cached: read-your-writes copies kept by watches; every
	// decision is still a conditional write on the store).
	guard, _ := st.(*store.SpaceGuard)
	cctx, stopCache := context.WithCancel(context.Background())
	st = store.NewCached(cctx, st, cfg.Logger.With("component", "store-cache"), cachedPrefixes...)
	s := &Server{cfg: cfg, log: cfg.Logger, store: st, storeDesc: "store", instance: requestID(), alone: len(cfg.EtcdEndpoints) == 0, stopCache: stopCache, guard: guard}
	built := false
	defer func() {
		if !built {
			stopCache()
		}
	}()
	cert, fp, err := loadOrCreateTLS(filepath.Join(cfg.DataDir, "tls"))
	if err != nil {
		return nil, err
	}
	s.tlsCert, s.caFP = cert, fp
	s.ids = identity.New(st, cfg.Identity, cfg.Logger)
	switch cfg.SchedulerPolicy {
	case "", scheduler.Packing, scheduler.Striping, scheduler.LoadAware:
	default:
		return nil, fmt.Errorf("scheduler policy %q: use packing, striping or load-aware", cfg.SchedulerPolicy)
	}
	s.hosts = hosts.New(st, fp, cfg.HostGrace)
	s.rates = newRateLimits(cfg.APIRate)
	s.idleSessions = newIdleSessions(cfg.SessionIdle, cmp.Or(cfg.Identity.TokenTTL, identity.DefaultOptions().TokenTTL))
	s.sessions = newSessions()
	s.fence = newProjectFence()
	// The image and network services need to know of instances and the
	// compute service needs them: each gets the others as small
	// interfaces at construction, compute through instancesLater, the one
	// late binding of the wiring.
	later := &instancesLater{}
	if s.images, err = images.New(st, filepath.Join(cfg.DataDir, "images"), cfg.MaxImageMiB<<20, later, cfg.Clock); err != nil {
		return nil, err
	}
	s.networks = network.New(st, cfg.Clock, later, cfg.EgressNAT)
	s.compute = compute.New(st, s.hosts, cfg.SchedulerPolicy, cfg.Logger.With("component", "compute"),
		compute.Deps{Images: s.images, Ports: s.networks, Clock: cfg.Clock, FenceTimeout: cfg.HAFenceTimeout})
	later.c = s.compute
	s.volumes = volumes.New(st, s.images, s.compute, s.hosts, cfg.Clock)
	s.compute.SetVolumes(s.volumes)
	if err := s.volumes.SetBackupDir(filepath.Join(cfg.DataDir, "volume-backups")); err != nil {
		return nil, err
	}
	s.meter = metering.New(st, metering.Config{Currency: cfg.Currency, Clock: cfg.Clock, Every: cfg.BudgetEvery, Logger: cfg.Logger.With("component", "metering")},
		meteredInstances{s.compute}, meteredImages{s.images}, projectBudgets{s.ids})
	s.meter.Follow(meteredInstances{s.compute})
	s.ops = operations.New(st, cfg.Logger)
	s.ops.Register(opDeleteProject, s.runDeleteProject)
	s.registerMigrations()
	s.snapshots = images.NewSnapshots(s.images, instanceGetter{s.compute}, diskReader{hosts: s.hosts, sessions: s.sessions}, s.ops)
	credFile := filepath.Join(cfg.DataDir, "admin-credentials")
	pw, err := s.ids.Bootstrap(ctx, flavor.SeedOps(ctx), func(password string) error {
		return atomicfile.Write(credFile, []byte(fmt.Sprintf("user: %s\npassword: %s\n", identity.AdminUser, password)), 0o600)
	})
	if err != nil {
		return nil, fmt.Errorf("bootstrap: %w", err)
	}
	s.AdminPassword = pw
	if err := idempotency.MarkIndexed(ctx, st); err != nil {
		return nil, fmt.Errorf("idempotency records: %w", err)
	}
	s.registry = prometheus.NewRegistry()
	s.registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	s.metrics = newMetrics(s.registry)
	s.projectRegistry = prometheus.NewRegistry()
	s.projectRegistry.MustRegister(s.meter.Collectors()...)
	if cfg.MetricsTokenFile != "" {
		if s.metricsToken, err = readMetricsToken(cfg.MetricsTokenFile); err != nil {
			return nil, err
		}
	}
	s.handler = s.buildHandler()
	if _, err := s.ops.Resume(ctx); err != nil {
		return nil, fmt.Errorf("resume operations: %w", err)
	}
	jctx, cancel := context.WithCancel(context.Background())
	s.stopJan, s.janDone = cancel, make(chan struct{})
	go s.janitor(jctx)
	rctx, rcancel := context.WithCancel(context.Background())
	s.stopRun = rcancel
	go s.compute.Run(rctx)
	s.networks.FollowViewChanges(rctx, cfg.Logger.With("component", "network"))
	go s.meter.Run(rctx)
	go s.volumes.RunSchedules(rctx, 30*time.Second, cfg.Logger.With("component", "volumes"))
	s.ready = true
	built = true
	return s, nil
}

// CAFingerprint is the SHA-256 fingerprint clients pin.
func (s *Server) CAFingerprint() string { return s.caFP }

// Handler serves the API as if over the network (token auth).
func (s *Server) Handler() http.Handler { return s.handler }

// SocketHandler serves the API as the local Unix socket does: every
// request acts as the machine's root (cloud admin), no login.
// The socket also serves Go's profiler under /debug/pprof/, to the
// machine's root only (never over the network): where a server spends its
// time is part of seeing why the cloud did what it did.
func (s *Server) SocketHandler() http.Handler {
	prof := http.NewServeMux()
	prof.HandleFunc("/debug/pprof/", pprof.Index)
	prof.HandleFunc("/debug/pprof/profile", pprof.Profile)
	prof.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/debug/pprof/") {
			prof.ServeHTTP(w, r)
			return
		}
		s.handler.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), viaSocketKey{}, true)))
	})
}

type viaSocketKey struct{}

// Serve opens the configured listeners and serves until ctx ends, then
// shuts down gracefully: in-flight requests get up to 10 s, running
// operations are stopped to be resumed at the next start.
func (s *Server) Serve(ctx context.Context) error {
	errc := make(chan error, 2)
	if s.cfg.Listen != "" {
		ln, err := net.Listen("tcp", s.cfg.Listen)
		if err != nil {
			return fmt.Errorf("listen on %s: %w", s.cfg.Listen, err)
		}
		srv := &http.Server{
			Handler:           s.handler,
			TLSConfig:         &tls.Config{Certificates: []tls.Certificate{s.tlsCert}, MinVersion: tls.VersionTLS12},
			ReadHeaderTimeout: 10 * time.Second,
			ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
		}
		s.track(srv)
		s.log.Info("listening", "https", ln.Addr().String(), "ca_fingerprint", s.caFP)
		s.httpsAddr = ln.Addr().String()
		go func() { errc <- srv.ServeTLS(ln, "", "") }()
	}
	if s.cfg.Socket != "" {
		if err := os.MkdirAll(filepath.Dir(s.cfg.Socket), 0o755); err != nil {
			return err
		}
		os.Remove(s.cfg.Socket) // a stale socket from a killed server
		ln, err := net.Listen("unix", s.cfg.Socket)
		if err != nil {
			return fmt.Errorf("listen on %s: %w", s.cfg.Socket, err)
		}
		// Only root (the socket's owner) may talk to it.
		if err := os.Chmod(s.cfg.Socket, 0o600); err != nil {
			ln.Close()
			return err
		}
		srv := &http.Server{Handler: s.SocketHandler(), ReadHeaderTimeout: 10 * time.Second}
		s.track(srv)
		s.log.Info("listening", "socket", s.cfg.Socket)
		go func() { errc <- srv.Serve(ln) }()
	}
	if s.cfg.LocalDriver != "" {
		if err := s.startLocalAgent(ctx); err != nil {
			s.Close()
			return err
		}
	}
	select {
	case <-ctx.Done():
	case <-s.lockLost:
		s.Close()
		return errors.New("lost the store's server lock (the store was out of reach too long): stopping, so that no two servers schedule at once")
	case err := <-errc:
		if err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.Close()
			return err
		}
	}
	s.Close()
	return nil
}

func (s *Server) track(srv *http.Server) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.listeners = append(s.listeners, srv)
}

// Close shuts the server down and closes the store.
func (s *Server) Close() {
	// First: no host is judged lost by a server that stopped listening.
	s.hosts.Stopping()
	s.mu.Lock()
	ls := s.listeners
	s.listeners = nil
	s.mu.Unlock()
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, l := range ls {
		l.Shutdown(sctx)
	}
	if s.stopJan != nil {
		s.stopJan()
		<-s.janDone
		s.stopJan = nil
	}
	if s.stopRun != nil {
		s.stopRun()
		s.stopRun = nil
	}
	s.ops.Shutdown()
	if s.stopCache != nil {
		s.stopCache()
	}
	if s.cfg.Socket != "" {
		os.Remove(s.cfg.Socket)
	}
	if s.unlockStore != nil {
		s.unlockStore()
		s.unlockStore = nil
	}
	s.store.Close()
	s.dirLock.release()
	s.log.Info("server stopped")
}

// janitor prunes what outlives its use: old events, ended operations,
// expired tokens and idempotency records.
func (s *Server) janitor(ctx context.Context) {
	defer close(s.janDone)
	t := time.NewTicker(time.Minute)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		now := time.Now()
		if n, err := events.Prune(ctx, s.store, now.Add(-s.cfg.EventRetention)); err == nil && n > 0 {
			s.log.Debug("pruned events", "count", n)
		}
		s.ops.Prune(ctx, now.Add(-s.cfg.OperationRetention))
		s.ids.PruneTokens(ctx, now.Add(-7*24*time.Hour))
		pruneIdempotency(ctx, s.store, now.Add(-idempotencyTTL))
	}
}
