// Package agent is the host agent: it joins the cloud with a join token
// (Conn), registers the hosts its driver brings, and runs four jobs, each
// with its own state and a small interface to the server:
//
//   - instances (lifecycle.go): follows the instances assigned to its
//     hosts, drives the driver through PROLOG/BOOT/... and reports each
//     state change; keeps reconciling the driver with complete assignment
//     lists, stopping what nobody assigns;
//   - heartbeats (here): its hosts are alive, and what their instances use;
//   - the host network (network.go) and the metadata service
//     (metadata.go): the datapath made to match the server's view;
//   - sessions (sessions.go): exec, logs, the console, snapshots.
//
// It never sees the store. On restart it re-attaches: what the driver
// still runs keeps running.
package agent

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"time"

	"github.com/coder/websocket"

	"github.com/kumocloud/kumo/api"
	"github.com/kumocloud/kumo/client"
	"github.com/kumocloud/kumo/internal/driver"
	"github.com/kumocloud/kumo/internal/network/datapath"
)

// Config configures an agent.
type Config struct {
	// Conn is the agent's connection to its server (made first, so the
	// driver can fetch images through it).
	Conn   *Conn
	Driver driver.Driver
	// StateDir is where the agent keeps its files (snapshots being made,
	// the network namespaces it mounts).
	StateDir string
	// HeartbeatEvery defaults to 5 s (the server's grace is 15 s).
	HeartbeatEvery time.Duration
	// UsageEvery is how often what the instances use is sent, all of
	// them (default 10 s); a guest's readiness changing sends that of the
	// guests whose readiness changed at once.
	UsageEvery time.Duration
	// ResyncEvery is how often the agent asks for its complete assignment
	// list and reconciles the driver with it (default 30 s, each time
	// moved by up to a quarter either way so that agents do not ask
	// together; it also does at start and whenever the server was out of
	// reach).
	ResyncEvery time.Duration
	// FenceGrace: when the agent has not reached its server for this
	// long, it stops its HA instances itself (fence.go; 0: it does not,
	// and the server never recreates them elsewhere).
	FenceGrace time.Duration
	// Workers bounds instances handled at once (default 64).
	Workers int
	Log     *slog.Logger
	// VTEP is the host's address for VXLAN tunnels ("" or "auto": the
	// default route's interface). Agents of real drivers open the host's
	// network datapath with it; without one, instances with networks fail
	// here with the reason.
	VTEP string
	// Network is the datapath (opened by New from VTEP; tests may give
	// their own).
	Network *datapath.Host
	// Uplinks name the host device of each external network (by name
	// or owner/name), bridged for floating IPs.
	Uplinks map[string]string
	// LiveConvergeWithin bounds the memory phase of the live migrations
	// this agent sends (default 5 min), LiveBandwidth caps their stream
	// in bytes a second (default: the hypervisor's).
	LiveConvergeWithin time.Duration
	LiveBandwidth      int64
	// VolumeBandwidth caps the volume files a cold migration sends from
	// this agent, in bytes a second (0: no cap).
	VolumeBandwidth int64
}

// Agent is a running agent.
type Agent struct {
	cfg       Config
	srv       *serverAPI
	log       *slog.Logger
	hostSet   map[string]bool
	inst      *instances
	net       *hostNetwork
	sessions  *sessionJob
	vols      *volumeJob
	kickUsage chan struct{}
	kickBeat  chan struct{}
	fence     *fencer
}

// New makes an agent from its driver: the connection is opened (the
// credential loaded, or the agent joins on its first start) and the
// driver's hosts registered.
func New(ctx context.Context, cfg Config) (*Agent, error) {
	if cfg.Conn == nil || cfg.Driver == nil {
		return nil, fmt.Errorf("an agent needs a connection and a driver")
	}
	if cfg.HeartbeatEvery <= 0 {
		cfg.HeartbeatEvery = 5 * time.Second
	}
	if cfg.UsageEvery <= 0 {
		cfg.UsageEvery = 10 * time.Second
	}
	if cfg.ResyncEvery <= 0 {
		cfg.ResyncEvery = 30 * time.Second
	}
	if cfg.Workers <= 0 {
		cfg.Workers = 64
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.StateDir == "" {
		cfg.StateDir = cfg.Conn.cfg.StateDir
	}
	// A driver whose instances' ports are not real devices (the
	// simulator's) has simulated networks: no datapath.
	sim := !cfg.Driver.Capabilities().Any().Has(driver.CapNetworks)
	netErr := ""
	if cfg.Network == nil && !sim {
		var err error
		if cfg.Network, err = openDatapath(cfg.VTEP, cfg.StateDir); err != nil {
			cfg.Log.Warn("no network datapath: instances with networks will fail here", "err", err)
			netErr = err.Error()
		}
	}
	specs, err := cfg.Driver.Hosts(ctx)
	if err != nil {
		return nil, fmt.Errorf("driver %s: fingerprint: %w", cfg.Driver.Name(), err)
	}
	a := &Agent{cfg: cfg, log: cfg.Log, hostSet: map[string]bool{}, kickUsage: make(chan struct{}, 1), kickBeat: make(chan struct{}, 1)}
	// Fencing starts before the server is reached: an agent restarted
	// while cut off from it must not let its HA instances run on.
	if a.fence, err = newFencer(cfg.Driver, cfg.StateDir, cfg.FenceGrace, cfg.Log); err != nil {
		return nil, err
	}
	go a.fence.run(ctx)
	for i, h := range specs {
		a.hostSet[h.Name] = true
		specs[i].FenceGraceSeconds = int64((cfg.FenceGrace + time.Second - 1) / time.Second)
		specs[i].Capabilities = hostCapabilities(cfg.Driver, h)
		if cfg.Network != nil && h.Address == "" {
			specs[i].Address = cfg.Network.VTEP().String()
		}
	}
	if err := cfg.Conn.open(ctx, cfg.Driver.Name(), specs); err != nil {
		return nil, err
	}
	c, id := cfg.Conn.client()
	a.srv = &serverAPI{c: c, id: id}
	meta := newMetadataService()
	kick := func(ch chan struct{}) func() {
		return func() {
			select {
			case ch <- struct{}{}:
			default:
			}
		}
	}
	// The network job waits for the instance job's first complete list:
	// until then every running instance's ports would look unwanted.
	started := make(chan struct{})
	a.net = newHostNetwork(cfg.Network, netErr, sim, a.srv, meta, cfg.Uplinks, started, cfg.Log)
	// A guest's readiness changing sends usage at once; a reconcile is
	// told by a heartbeat at once (operators and tests wait for it).
	tell := instanceNews{readiness: kick(a.kickUsage), reconciled: kick(a.kickBeat)}
	a.vols = newVolumeJob(a.srv, a.srv, cfg.Driver, cfg.Conn, filepath.Join(cfg.StateDir, "volumes"), cfg.Log)
	a.fence.setRelease(a.vols.releaseFenced)
	a.inst = newInstances(a.srv, cfg.Driver, withVolumes{a.net, a.vols}, cfg.Workers, cfg.ResyncEvery, tell, started, cfg.Log)
	a.inst.fence = a.fence
	a.inst.roots = a.vols
	a.inst.mig = newMigrations(a.srv, cfg.Driver, a.hostSet, a.net, cfg.Log)
	a.inst.mig.vols = a.vols
	a.inst.mig.live = liveOptions(cfg)
	a.inst.mig.volumeBandwidth = cfg.VolumeBandwidth
	a.sessions = &sessionJob{src: a.srv, d: cfg.Driver, tempDir: cfg.StateDir, log: cfg.Log}
	return a, nil
}

// ID is the agent's id.
func (a *Agent) ID() string { return a.srv.id }

// Run works until ctx ends.
func (a *Agent) Run(ctx context.Context) error {
	go a.heartbeats(ctx)
	go a.usage(ctx)
	go a.sessions.run(ctx)
	go a.net.run(ctx)
	go a.vols.run(ctx)
	a.inst.run(ctx)
	return nil
}

// serverAPI is the server as the agent's jobs see it: the agent's own
// endpoints, with its id bound.
type serverAPI struct {
	c  *client.Client
	id string
}

func (s *serverAPI) Assignments(ctx context.Context, since int64, wait time.Duration) (api.Assignments, error) {
	return s.c.Assignments(ctx, s.id, since, wait)
}

func (s *serverAPI) Report(ctx context.Context, reps []api.InstanceReport) (api.AgentReportResult, error) {
	return s.c.AgentReport(ctx, s.id, reps)
}

func (s *serverAPI) Usage(ctx context.Context, us []api.InstanceUsage) error {
	return s.c.AgentUsage(ctx, s.id, us)
}

func (s *serverAPI) Networks(ctx context.Context, namesVersion, version string, wait time.Duration) (api.AgentNetworks, error) {
	return s.c.AgentNetworksWait(ctx, s.id, namesVersion, version, wait)
}

func (s *serverAPI) Sessions(ctx context.Context, wait time.Duration) ([]api.Session, error) {
	return s.c.AgentSessions(ctx, s.id, wait)
}

func (s *serverAPI) SessionResult(ctx context.Context, sid string, res api.SessionResult) error {
	return s.c.AgentSessionResult(ctx, s.id, sid, res)
}

func (s *serverAPI) Stream(ctx context.Context, sid string) (io.ReadWriteCloser, error) {
	return s.c.AgentStream(ctx, s.id, sid)
}

func (s *serverAPI) Console(ctx context.Context, sid string) (*websocket.Conn, error) {
	return s.c.AgentConsole(ctx, s.id, sid)
}

func (s *serverAPI) MigrationReport(ctx context.Context, rep api.MigrationReport) error {
	_, err := s.c.AgentMigrationReport(ctx, s.id, rep)
	return err
}

func (s *serverAPI) Tunnel(ctx context.Context, migration, channel, host string) (io.ReadWriteCloser, error) {
	return s.c.AgentMigrationTunnel(ctx, s.id, migration, channel, host)
}
