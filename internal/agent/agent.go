// Package agent is the host agent: it joins the cloud with a join token,
// registers the hosts its driver brings, beats for them, long-polls the
// API for the instances assigned to them, drives the driver through
// PROLOG/BOOT/... and reports each state change. It never sees the store.
//
// On restart it re-attaches (Recover): what the driver still runs keeps
// running; assigned instances the driver lost are reported FAILED with the
// reason, and driver instances nobody assigns any more are cleaned up.
package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/kumocloud/kumo/api"
	"github.com/kumocloud/kumo/client"
	"github.com/kumocloud/kumo/internal/driver"
	"github.com/kumocloud/kumo/internal/hosts"
	"github.com/kumocloud/kumo/internal/network/datapath"
)

// Config configures an agent.
type Config struct {
	// Server is the API's https URL; JoinToken is needed on first start.
	Server    string
	JoinToken string
	// Name of the agent (default: the machine's host name).
	Name string
	// StateDir keeps the agent's credential (0600) and the driver's state.
	StateDir string
	Driver   driver.Driver
	// HeartbeatEvery defaults to 5 s (the server's grace is 15 s).
	HeartbeatEvery time.Duration
	// Workers bounds instances handled at once (default 64).
	Workers int
	Log     *slog.Logger
	// WrapTransport, if set, sees every API call (tests check them
	// against the OpenAPI contract).
	WrapTransport func(http.RoundTripper) http.RoundTripper
	// VTEP is the host's address for VXLAN tunnels ("" or "auto": the
	// default route's interface). Agents of real drivers open the host's
	// network datapath with it; without one, instances with networks fail
	// here with the reason.
	VTEP string
	// Network is the datapath (set by New; tests may give their own).
	Network *datapath.Host
	// Uplinks name the host device of each external network (by name
	// or owner/name), bridged for floating IPs.
	Uplinks map[string]string
}

// credential is what the agent keeps after joining.
type credential struct {
	Server      string `json:"server"`
	Fingerprint string `json:"ca_fingerprint"`
	AgentID     string `json:"agent_id"`
	Credential  string `json:"credential"`
}

// Agent is a running agent.
type Agent struct {
	cfg  Config
	c    *client.Client
	id   string
	log  *slog.Logger
	reps chan api.InstanceReport

	mu      sync.Mutex
	work    map[string]*work
	running map[string]api.Assignment // instances last seen RUNNING
	written map[string]int64          // instance -> revision of the agent's last write
	sem     chan struct{}
	hostSet map[string]bool
	// ready is what the monitor last saw of each running instance's
	// readiness; a change kicks a heartbeat at once (it carries it).
	ready map[string]bool
	kick  chan struct{}
	// listed is the monitor's latest listing of the driver's instances;
	// heartbeats reuse it while it is fresh rather than list again (for
	// VMs a listing asks every QEMU over QMP).
	listed   []driver.Status
	listedAt time.Time

	// withPorts are the assignments with ports that are on a host here
	// (the network loop keeps their datapath); netView is the latest
	// view's local ports by network and address (for metadata).
	withPorts map[string]api.Assignment
	netView   map[int64]map[string]api.AgentPort
	netMu     sync.Mutex // serializes datapath changes
	netKick   chan struct{}
	netErr    string
	fwKey     string           // the firewall last applied here
	routers   map[int64]string // what each tenant router here was last set to do
	assigned  chan struct{}    // closed once the first assignments are dispatched
	unplaced  map[string]int   // views in a row that lacked an instance of withPorts
	netRounds int
}

// New prepares an agent: it joins (first start) or loads its credential,
// and registers its driver's hosts.
func New(ctx context.Context, cfg Config) (*Agent, error) {
	if cfg.HeartbeatEvery <= 0 {
		cfg.HeartbeatEvery = 5 * time.Second
	}
	if cfg.Workers <= 0 {
		cfg.Workers = 64
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Name == "" {
		cfg.Name, _ = os.Hostname()
	}
	netErr := ""
	if cfg.Network == nil && cfg.Driver.Name() != "sim" {
		var err error
		if cfg.Network, err = openDatapath(cfg.VTEP, cfg.StateDir); err != nil {
			cfg.Log.Warn("no network datapath: instances with networks will fail here", "err", err)
			netErr = err.Error()
		}
	}
	a := &Agent{cfg: cfg, log: cfg.Log, netErr: netErr, reps: make(chan api.InstanceReport, 4096), work: map[string]*work{}, running: map[string]api.Assignment{}, written: map[string]int64{}, sem: make(chan struct{}, cfg.Workers),
		ready: map[string]bool{}, kick: make(chan struct{}, 1), withPorts: map[string]api.Assignment{}, netKick: make(chan struct{}, 1), fwKey: noFirewall, routers: map[int64]string{}, assigned: make(chan struct{}), unplaced: map[string]int{}}
	specs, err := cfg.Driver.Hosts(ctx)
	if err != nil {
		return nil, fmt.Errorf("driver %s: fingerprint: %w", cfg.Driver.Name(), err)
	}
	a.hostSet = map[string]bool{}
	for i, h := range specs {
		a.hostSet[h.Name] = true
		if cfg.Network != nil && h.Address == "" {
			specs[i].Address = cfg.Network.VTEP().String()
		}
	}
	credPath := filepath.Join(cfg.StateDir, "agent.json")
	var cred credential
	if b, err := os.ReadFile(credPath); err == nil {
		if err := json.Unmarshal(b, &cred); err != nil {
			return nil, fmt.Errorf("%s: %w", credPath, err)
		}
		a.c, err = client.Remote(cred.Server, cred.Credential, cred.Fingerprint)
		if err != nil {
			return nil, err
		}
		if cfg.WrapTransport != nil {
			a.c.WrapTransport(cfg.WrapTransport)
		}
		a.id = cred.AgentID
		if err := retry(ctx, a.log, func() error { _, err := a.c.PutAgentHosts(ctx, a.id, specs); return err }); err != nil {
			return nil, fmt.Errorf("re-registering hosts: %w", err)
		}
		a.log.Info("agent re-attached", "agent", a.id, "hosts", len(specs))
		return a, nil
	}
	if cfg.JoinToken == "" || cfg.Server == "" {
		return nil, errors.New("first start: give --server URL and --join-token TOKEN ('kumo host join-token create' makes one)")
	}
	fp, _, _, err := hosts.ParseJoinToken(cfg.JoinToken)
	if err != nil {
		return nil, err
	}
	c, err := client.Remote(cfg.Server, "", fp)
	if err != nil {
		return nil, err
	}
	if cfg.WrapTransport != nil {
		c.WrapTransport(cfg.WrapTransport)
	}
	var ag api.Agent
	err = retry(ctx, a.log, func() (err error) {
		ag, err = c.JoinAgent(ctx, api.AgentsPost{JoinToken: cfg.JoinToken, Name: cfg.Name, Driver: cfg.Driver.Name(), Hosts: specs})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("joining %s: %w", cfg.Server, err)
	}
	cred = credential{Server: cfg.Server, Fingerprint: fp, AgentID: ag.ID, Credential: ag.Credential}
	b, _ := json.Marshal(cred)
	if err := os.MkdirAll(cfg.StateDir, 0o700); err != nil {
		return nil, err
	}
	if err := os.WriteFile(credPath, b, 0o600); err != nil {
		return nil, err
	}
	a.c, a.id = c.WithToken(ag.Credential), ag.ID
	a.log.Info("agent joined", "agent", a.id, "hosts", len(specs))
	return a, nil
}

// retry calls fn until it succeeds, ctx ends, or the server answers with
// a client error (4xx: retrying will not help). An unreachable or failing
// server is waited for, as a host agent must outlive server restarts.
func retry(ctx context.Context, log *slog.Logger, fn func() error) error {
	for attempt := 0; ; attempt++ {
		err := fn()
		st := client.StatusOf(err)
		if err == nil || st >= 400 && st < 500 {
			return err
		}
		if attempt%10 == 0 {
			log.Warn("server not reachable yet; retrying", "err", err)
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(time.Duration(min(attempt+1, 10)) * 200 * time.Millisecond):
		}
	}
}

// FetchImage gets image bytes from the server by sha256 (drivers verify
// them against the hash).
func (a *Agent) FetchImage(ctx context.Context, sum string) (io.ReadCloser, error) {
	return a.c.AgentImage(ctx, a.id, sum)
}

// ID is the agent's id.
func (a *Agent) ID() string { return a.id }

// Run works until ctx ends.
func (a *Agent) Run(ctx context.Context) error {
	go a.heartbeats(ctx)
	go a.reporter(ctx)
	go a.monitor(ctx)
	go a.serveSessions(ctx)
	go a.networkLoop(ctx)
	recovered, err := a.cfg.Driver.Recover(ctx)
	if err != nil {
		return fmt.Errorf("recover: %w", err)
	}
	since := int64(0)
	for ctx.Err() == nil {
		as, err := a.c.Assignments(ctx, a.id, since, 30*time.Second)
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			a.log.Warn("assignments", "err", err)
			time.Sleep(time.Second)
			continue
		}
		first := since == 0
		if first {
			a.reconcile(ctx, as.Items, recovered)
			recovered = nil
		}
		for _, as := range as.Items {
			a.dispatch(ctx, as)
		}
		if first {
			select {
			case <-a.assigned:
			default:
				close(a.assigned)
			}
		}
		since = as.Revision
	}
	return nil
}

// reconcile runs once, after a (re)start: assigned instances that should
// be on a host but the driver does not have are reported FAILED; driver
// instances that no assignment names are cleaned up.
func (a *Agent) reconcile(ctx context.Context, assigned []api.Assignment, recovered []driver.Status) {
	have := map[string]driver.Status{}
	for _, st := range recovered {
		have[st.ID] = st
	}
	named := map[string]bool{}
	for _, as := range assigned {
		named[as.ID] = true
		if _, ok := have[as.ID]; !ok {
			switch as.State {
			case api.StateRunning, api.StateSuspended, api.StatePoweroff:
				a.report(as, api.StateFailed, "the instance vanished while the agent was down")
			}
		}
	}
	for id, st := range have {
		if !named[id] {
			a.log.Warn("cleaning up an instance nobody assigns any more", "instance", id, "host", st.Host)
			a.cfg.Driver.Stop(ctx, id, true)
			a.cfg.Driver.Cleanup(ctx, id, false)
		}
	}
	a.log.Info("reconciled after start", "assigned", len(assigned), "recovered", len(recovered))
}

func (a *Agent) heartbeats(ctx context.Context) {
	t := time.NewTicker(a.cfg.HeartbeatEvery)
	defer t.Stop()
	for {
		hb := api.Heartbeat{}
		if hh, ok := a.cfg.Driver.(driver.HostHealth); ok {
			for h := range a.hostSet {
				if !hh.HostUp(h) {
					hb.Down = append(hb.Down, h)
				}
			}
		}
		if sts, err := a.statuses(ctx); err == nil {
			now := time.Now().UTC()
			for _, st := range sts {
				if st.State == driver.Running || st.State == driver.Suspended {
					hb.Usage = append(hb.Usage, api.InstanceUsage{ID: st.ID, CPUSeconds: st.CPUSeconds, MemoryMiB: st.MemoryMiB, Ready: st.Ready, ReadyReason: st.ReadyReason, At: now})
				}
			}
		}
		if err := a.c.AgentHeartbeat(ctx, a.id, hb); err != nil && ctx.Err() == nil {
			a.log.Warn("heartbeat", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-a.kick:
		}
	}
}

// statuses lists the driver's instances, or reuses the monitor's listing
// when it is younger than a heartbeat interval.
func (a *Agent) statuses(ctx context.Context) ([]driver.Status, error) {
	a.mu.Lock()
	sts, at := a.listed, a.listedAt
	a.mu.Unlock()
	if time.Since(at) < a.cfg.HeartbeatEvery {
		return sts, nil
	}
	return a.cfg.Driver.Recover(ctx)
}

// work is one instance's queue: only the newest assignment matters, since
// it supersedes older ones.
type work struct {
	next    *api.Assignment
	running bool
}

// dispatch hands an assignment to its instance's worker; work for one
// instance is done in order, at most cfg.Workers instances at a time.
// Echoes of the agent's own writes (revision not newer than what its last
// report wrote) are dropped.
func (a *Agent) dispatch(ctx context.Context, as api.Assignment) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(as.NICs) > 0 {
		a.withPorts[as.ID] = as
	}
	if as.State == api.StateRunning {
		a.running[as.ID] = as
	} else {
		delete(a.running, as.ID)
		delete(a.ready, as.ID)
	}
	if as.Revision <= a.written[as.ID] {
		return
	}
	w := a.work[as.ID]
	if w == nil {
		w = &work{}
		a.work[as.ID] = w
	}
	w.next = &as
	if w.running {
		return
	}
	w.running = true
	go func() {
		a.sem <- struct{}{}
		defer func() { <-a.sem }()
		for {
			a.mu.Lock()
			next := w.next
			w.next = nil
			if next == nil || ctx.Err() != nil {
				w.running = false
				delete(a.work, as.ID)
				a.mu.Unlock()
				return
			}
			stale := next.Revision <= a.written[next.ID]
			a.mu.Unlock()
			if !stale {
				a.handle(ctx, *next)
			}
		}
	}()
}

func (a *Agent) spec(as api.Assignment) driver.Spec {
	return a.withNICs(driver.Spec{ID: as.ID, Project: as.Project, Name: as.Name, Type: as.Type, Host: as.Host, Image: as.Image, ImageSHA256: as.ImageSHA256, UserData: as.UserData, Size: as.Size, Nesting: as.Nesting}, as)
}

// handle does what an instance's state asks of the host.
func (a *Agent) handle(ctx context.Context, as api.Assignment) {
	d := a.cfg.Driver
	fail := func(err error) {
		a.report(as, api.StateFailed, "driver "+d.Name()+": "+err.Error())
	}
	step := func(to string, err error) bool {
		if err != nil {
			fail(err)
			return false
		}
		a.report(as, to, "")
		as.State = to
		return true
	}
	// Leaving the host: its ports go too.
	left := func() {
		a.mu.Lock()
		delete(a.withPorts, as.ID)
		a.mu.Unlock()
		a.unwire(ctx, as)
		a.kickNetworks()
	}
	switch as.State {
	case api.StateProlog:
		if err := a.wire(ctx, as); err != nil {
			fail(fmt.Errorf("network: %w", err))
			return
		}
		if step(api.StateBoot, d.Prepare(ctx, a.spec(as))) {
			step(api.StateRunning, d.Start(ctx, a.spec(as)))
		}
	case api.StateBoot:
		var err error
		switch as.Action {
		case "reboot":
			err = d.Reboot(ctx, as.ID)
		case "resume":
			err = d.Resume(ctx, as.ID)
		default:
			if err = a.wire(ctx, as); err == nil {
				err = d.Start(ctx, a.spec(as))
			}
		}
		step(api.StateRunning, err)
	case api.StateShutdown:
		err := d.Stop(ctx, as.ID, false)
		if errors.Is(err, driver.ErrNotFound) {
			err = nil
		}
		if as.Action == "poweroff" {
			step(api.StatePoweroff, err)
		} else if step(api.StateEpilog, err) && step(api.StateDone, d.Cleanup(ctx, as.ID, false)) {
			left()
		}
	case api.StateSave:
		if as.Action == "suspend" {
			step(api.StateSuspended, d.Suspend(ctx, as.ID))
		} else if step(api.StateEpilog, d.Save(ctx, as.ID)) && step(api.StateStopped, d.Cleanup(ctx, as.ID, true)) {
			left()
		}
	case api.StateEpilog:
		if as.Action == "stop" {
			if step(api.StateStopped, d.Cleanup(ctx, as.ID, true)) {
				left()
			}
		} else {
			d.Stop(ctx, as.ID, true)
			if step(api.StateDone, d.Cleanup(ctx, as.ID, false)) {
				left()
			}
		}
	case api.StateUnknown:
		st, err := d.Status(ctx, as.ID)
		switch {
		case errors.Is(err, driver.ErrNotFound):
			a.report(as, api.StateFailed, "the host is back but the instance is gone")
		case err != nil:
		case st.State == driver.Running:
			a.report(as, api.StateRunning, "host back online")
		case st.State == driver.Suspended:
			a.report(as, api.StateSuspended, "host back online")
		case st.State == driver.Stopped:
			a.report(as, api.StatePoweroff, "host back online")
		}
	}
}

// serveSessions answers exec and logs requests the server queues for this
// agent's instances.
func (a *Agent) serveSessions(ctx context.Context) {
	for ctx.Err() == nil {
		ss, err := a.c.AgentSessions(ctx, a.id, 30*time.Second)
		if err != nil {
			if ctx.Err() == nil {
				time.Sleep(time.Second)
			}
			continue
		}
		for _, s := range ss {
			switch s.Kind {
			case "console":
				go a.console(ctx, s)
				continue
			case "snapshot":
				go a.snapshot(ctx, s)
				continue
			}
			go func() {
				res := a.session(ctx, s)
				if err := a.c.AgentSessionResult(ctx, a.id, s.ID, res); err != nil {
					a.log.Warn("session result", "session", s.ID, "err", err)
				}
			}()
		}
	}
}

// console opens its end of a console session and joins it to a shell in
// the instance.
// snapshot streams an instance's disk image to the server: a first line,
// "ok" or "error: why", then the bytes.
func (a *Agent) snapshot(ctx context.Context, s api.Session) {
	rw, err := a.c.AgentStream(ctx, a.id, s.ID)
	if err != nil {
		a.log.Warn("snapshot stream", "session", s.ID, "err", err)
		return
	}
	defer rw.Close()
	sn, err := driver.Feature[driver.Snapshotter](a.cfg.Driver)
	if err != nil {
		fmt.Fprintf(rw, "error: %v\n", err)
		return
	}
	// The image is made before the first byte is sent, so an error can
	// still be told; it is kept in a temporary file meanwhile.
	f, err := os.CreateTemp(a.cfg.StateDir, ".snapshot-*")
	if err != nil {
		fmt.Fprintf(rw, "error: %v\n", err)
		return
	}
	defer os.Remove(f.Name())
	defer f.Close()
	if err := sn.Snapshot(ctx, s.InstanceID, f); err != nil {
		fmt.Fprintf(rw, "error: %v\n", err)
		return
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		fmt.Fprintf(rw, "error: %v\n", err)
		return
	}
	io.WriteString(rw, "ok\n")
	if _, err := io.Copy(rw, f); err != nil {
		a.log.Warn("snapshot stream", "session", s.ID, "err", err)
	}
}

func (a *Agent) console(ctx context.Context, s api.Session) {
	rw, err := a.c.AgentStream(ctx, a.id, s.ID)
	if err != nil {
		a.log.Warn("console stream", "session", s.ID, "err", err)
		return
	}
	defer rw.Close()
	cs, err := driver.Feature[driver.Consoler](a.cfg.Driver)
	if err != nil {
		fmt.Fprintf(rw, "kumo: %v\r\n", err)
		return
	}
	if err := cs.Console(ctx, s.InstanceID, rw); err != nil {
		fmt.Fprintf(rw, "kumo: console: %v\r\n", err)
	}
}

func (a *Agent) session(ctx context.Context, s api.Session) api.SessionResult {
	d := a.cfg.Driver
	switch s.Kind {
	case "exec":
		ex, err := driver.Feature[driver.Execer](d)
		if err != nil {
			return api.SessionResult{Error: err.Error()}
		}
		cctx, cancel := context.WithTimeout(ctx, time.Duration(max(s.Timeout, 1))*time.Second)
		defer cancel()
		out, code, err := ex.Exec(cctx, s.InstanceID, s.Command)
		if err != nil {
			return api.SessionResult{Output: string(out), Error: err.Error()}
		}
		return api.SessionResult{Output: string(out), ExitCode: code}
	case "logs":
		lg, err := driver.Feature[driver.Logger](d)
		if err != nil {
			return api.SessionResult{Error: err.Error()}
		}
		out, err := lg.Logs(ctx, s.InstanceID, s.Tail)
		if err != nil {
			return api.SessionResult{Error: "logs: " + err.Error()}
		}
		return api.SessionResult{Output: string(out)}
	}
	return api.SessionResult{Error: "unknown session kind " + s.Kind}
}

// monitor notices instances that stopped by themselves: a container
// whose init exited or a VM whose guest powered off goes POWEROFF with the
// reason (its host resources are then accounted as the table says); one
// the driver lost, or whose QEMU crashed, goes FAILED.
func (a *Agent) monitor(ctx context.Context) {
	hh, _ := a.cfg.Driver.(driver.HostHealth)
	// Checks come every 2 s, and every 250 ms while a guest that started
	// within the last minute has not said it is ready: the moment it does
	// is what users wait for (create-to-ready).
	booting := map[string]time.Time{}
	for {
		every := 2 * time.Second
		for id, since := range booting {
			if time.Since(since) < time.Minute {
				every = 250 * time.Millisecond
			} else {
				delete(booting, id)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(every):
		}
		a.mu.Lock()
		var check []api.Assignment
		for _, as := range a.running {
			if a.work[as.ID] == nil && (hh == nil || hh.HostUp(as.Host)) {
				check = append(check, as)
			}
		}
		a.mu.Unlock()
		if len(check) == 0 {
			continue
		}
		// One listing per check, not one driver call per instance.
		sts, err := a.cfg.Driver.Recover(ctx)
		if err != nil {
			continue
		}
		a.mu.Lock()
		a.listed, a.listedAt = sts, time.Now()
		a.mu.Unlock()
		have := make(map[string]driver.Status, len(sts))
		for _, st := range sts {
			have[st.ID] = st
		}
		kick := false
		for _, as := range check {
			st, ok := have[as.ID]
			if ok && st.State == driver.Running {
				if _, seen := booting[as.ID]; !seen && !st.Ready {
					booting[as.ID] = time.Now()
				}
				if st.Ready {
					delete(booting, as.ID)
				}
				a.mu.Lock()
				if a.ready[as.ID] != st.Ready {
					a.ready[as.ID], kick = st.Ready, true
				}
				a.mu.Unlock()
			}
			switch {
			case !ok:
				a.report(as, api.StateFailed, "the instance disappeared from its host")
			case st.State == driver.Crashed:
				a.report(as, api.StateFailed, st.Reason)
			case st.State == driver.Stopped:
				reason := st.Reason
				if reason == "" {
					reason = "it stopped by itself (PID 1 exited)"
				}
				a.report(as, api.StatePoweroff, reason)
			default:
				continue
			}
			a.mu.Lock()
			delete(a.running, as.ID)
			delete(a.ready, as.ID)
			a.mu.Unlock()
			delete(booting, as.ID)
		}
		if kick {
			select {
			case a.kick <- struct{}{}:
			default:
			}
		}
	}
}

func (a *Agent) report(as api.Assignment, to, reason string) {
	a.reps <- api.InstanceReport{ID: as.ID, Host: as.Host, From: as.State, To: to, Reason: reason}
}

// reporter batches reports (up to 500, or what arrives within 10 ms),
// makes the driver's state durable, then sends them.
func (a *Agent) reporter(ctx context.Context) {
	for {
		var batch []api.InstanceReport
		select {
		case r := <-a.reps:
			batch = append(batch, r)
		case <-ctx.Done():
			return
		}
		timer := time.NewTimer(10 * time.Millisecond)
	collect:
		for len(batch) < 500 {
			select {
			case r := <-a.reps:
				batch = append(batch, r)
			case <-timer.C:
				break collect
			}
		}
		timer.Stop()
		if sy, ok := a.cfg.Driver.(driver.Syncer); ok {
			if err := sy.Sync(); err != nil {
				a.log.Error("driver sync", "err", err)
			}
		}
		for attempt := 0; ctx.Err() == nil; attempt++ {
			res, err := a.c.AgentReport(ctx, a.id, batch)
			if err == nil {
				a.mu.Lock()
				for id, rev := range res.Revisions {
					a.written[id] = rev
				}
				for _, r := range batch {
					if r.To == api.StateDone || r.To == api.StateStopped {
						delete(a.written, r.ID)
					}
				}
				a.mu.Unlock()
				break
			}
			a.log.Warn("report", "err", err, "attempt", attempt)
			time.Sleep(time.Duration(min(attempt+1, 10)) * 200 * time.Millisecond)
		}
	}
}
