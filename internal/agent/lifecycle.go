package agent

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/kumocloud/kumo/api"
	"github.com/kumocloud/kumo/internal/driver"
)

// The agent's instance job: it long-polls the instances assigned to its
// hosts, drives the driver through PROLOG/BOOT/... and reports each state
// change; it notices instances that stopped by themselves; and it keeps
// reconciling: every complete assignment list (after a start, after the
// server was out of reach, and every ResyncEvery) is compared with what
// the driver has, so an instance the server forgot while the host was
// silent - terminated meanwhile - is stopped and cleaned up (kubelet's
// housekeeping), and one the driver lost is reported FAILED.

// assignmentSource is what the instance job needs of the server.
type assignmentSource interface {
	Assignments(ctx context.Context, since int64, wait time.Duration) (api.Assignments, error)
	Report(ctx context.Context, reps []api.InstanceReport) (api.AgentReportResult, error)
}

// portWiring is what the instance job needs of the host's networking:
// an instance's ports made before it runs and removed when it leaves.
type portWiring interface {
	wire(ctx context.Context, as api.Assignment) error
	unwire(ctx context.Context, as api.Assignment)
	// track says an assignment reached this agent (its ports, if any,
	// belong on this host); forget says it left.
	track(as api.Assignment)
	forget(id string)
	// spec adds what the driver needs of the instance's ports.
	spec(s driver.Spec, as api.Assignment) driver.Spec
}

// instanceNews is whom the instance job tells of what.
type instanceNews struct {
	readiness  func() // a guest's readiness changed
	reconciled func() // a complete list was reconciled
}

// instances is the instance job.
type instances struct {
	src     assignmentSource
	d       driver.Driver
	ports   portWiring
	log     *slog.Logger
	resync  time.Duration
	reps    chan api.InstanceReport
	sem     chan struct{}
	tell    instanceNews
	started chan struct{}
	fence   *fencer
	// mig is the migration part (nil: the agent takes no part in them).
	mig *migrations
	// roots restores root filesystems from backups (nil: it cannot).
	roots interface {
		restoreRoot(ctx context.Context, as api.Assignment) (string, error)
	}

	mu      sync.Mutex
	work    map[string]*work
	running map[string]api.Assignment // instances last seen RUNNING
	// written is the revision of the agent's own last write of each
	// instance (its echo is not work); dispatched the newest assignment
	// revision handed to a worker.
	written    map[string]int64
	dispatched map[string]int64
	ready      map[string]bool
	// unseen are the running instances the monitor has not checked since
	// they became RUNNING: its quick checks look at them besides the
	// booting ones, so a new guest is noticed as soon as in a listing.
	unseen map[string]bool
	// checkEvery and bootCheckEvery are the monitor's pace (checks of
	// everything, quick checks of booting guests); tests slow the first.
	checkEvery, bootCheckEvery time.Duration
	// listed is the monitor's latest listing of the driver's instances;
	// heartbeats reuse it while it is fresh rather than list again (for
	// VMs a listing asks every QEMU over QMP).
	listed   []driver.Status
	listedAt time.Time
	// reconciled is when the last complete list was reconciled.
	reconciled time.Time
}

// reconciledAt is when the job last reconciled the driver with a
// complete assignment list (zero: not yet).
func (in *instances) reconciledAt() time.Time {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.reconciled
}

// newInstances makes the instance job; started is closed once its first
// complete assignment list is dispatched.
func newInstances(src assignmentSource, d driver.Driver, ports portWiring, workers int, resync time.Duration, tell instanceNews, started chan struct{}, log *slog.Logger) *instances {
	return &instances{src: src, d: d, ports: ports, log: log, resync: resync, tell: tell,
		reps: make(chan api.InstanceReport, 4096), sem: make(chan struct{}, workers), started: started,
		work: map[string]*work{}, running: map[string]api.Assignment{}, written: map[string]int64{}, dispatched: map[string]int64{}, ready: map[string]bool{},
		unseen: map[string]bool{}, checkEvery: 2 * time.Second, bootCheckEvery: 250 * time.Millisecond}
}

// run follows the assignments until ctx ends. A complete list (since 0)
// is asked for at the start, after any failed poll (the server or the
// network was away: things may have changed unseen) and every resync.
func (in *instances) run(ctx context.Context) {
	go in.reporter(ctx)
	go in.monitor(ctx)
	since := int64(0)
	lastList := time.Time{}
	resync := jittered(in.resync, rand.Float64())
	for ctx.Err() == nil {
		// A long poll waits for changes, but not past the next resync.
		wait := min(30*time.Second, resync-time.Since(lastList))
		if wait <= 0 {
			since, wait = 0, 0
		}
		asked := time.Now()
		as, err := in.src.Assignments(ctx, since, wait)
		in.log.Debug("assignments", "since", since, "wait", wait, "items", len(as.Items), "complete", as.Complete, "revision", as.Revision, "took", time.Since(asked), "err", err)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			in.log.Warn("assignments", "err", err)
			since = 0
			sleep(ctx, time.Second)
			continue
		}
		if as.Complete {
			lastList, resync = time.Now(), jittered(in.resync, rand.Float64())
			in.reconcile(ctx, as)
		}
		for _, a := range as.Items {
			in.dispatch(ctx, a)
		}
		if as.Complete {
			select {
			case <-in.started:
			default:
				close(in.started)
			}
		}
		since = as.Revision
	}
}

// jittered is d moved by up to a quarter either way (r in [0, 1)): agents
// started together (a server's restart, a rack's power-on) must not ask
// for their complete lists together every resync. Ten agents of 10,000
// instances each did, every 30 s: ten lists of 5 MB built, sent and
// reconciled at once stalled every agent's new work for seconds.
func jittered(d time.Duration, r float64) time.Duration {
	return time.Duration(float64(d) * (0.75 + r/2))
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// reconcile compares a complete assignment list with what the driver has.
// Instances that should be running but that the driver does not have are
// reported FAILED; instances the driver has that the list does not name
// are stopped and cleaned up - unless a worker is busy with them or an
// assignment newer than the list named them.
func (in *instances) reconcile(ctx context.Context, list api.Assignments) {
	have, err := in.d.Recover(ctx)
	if err != nil {
		in.log.Warn("listing the driver's instances", "err", err)
		return
	}
	byID := map[string]driver.Status{}
	for _, st := range have {
		byID[st.ID] = st
	}
	named := map[string]bool{}
	for _, as := range list.Items {
		named[as.ID] = true
		if _, ok := byID[as.ID]; ok || in.busy(as.ID, list.Revision) {
			continue
		}
		switch as.State {
		case api.StateRunning, api.StateSuspended, api.StatePoweroff:
			in.report(as, api.StateFailed, "the instance vanished from its host")
		}
	}
	swept := 0
	for id, st := range byID {
		if named[id] || in.busy(id, list.Revision) {
			continue
		}
		in.log.Warn("stopping and cleaning up an instance nobody assigns any more", "instance", id, "host", st.Host)
		in.d.Stop(ctx, id, true)
		if err := in.d.Cleanup(ctx, id, false); err != nil {
			in.log.Warn("cleaning up an unassigned instance", "instance", id, "err", err)
			continue
		}
		in.mu.Lock()
		delete(in.running, id)
		delete(in.ready, id)
		delete(in.unseen, id)
		delete(in.dispatched, id)
		delete(in.written, id)
		in.mu.Unlock()
		in.ports.forget(id)
		in.fence.forget(id)
		swept++
	}
	in.mu.Lock()
	in.reconciled = time.Now().UTC()
	in.mu.Unlock()
	in.tell.reconciled()
	in.log.Debug("reconciled", "assigned", len(list.Items), "driver", len(have), "swept", swept)
}

// busy says whether a worker has the instance in hand, or an assignment
// newer than revision rev reached the agent.
func (in *instances) busy(id string, rev int64) bool {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.work[id] != nil || in.dispatched[id] > rev
}

// work is one instance's queue: only the newest assignment matters, since
// it supersedes older ones.
type work struct {
	next    *api.Assignment
	running bool
}

// dispatch hands an assignment to its instance's worker; work for one
// instance is done in order, at most Workers instances at a time. Echoes
// of the agent's own writes (revision not newer than what its last report
// wrote) and assignments already handed over are dropped.
func (in *instances) dispatch(ctx context.Context, as api.Assignment) {
	in.ports.track(as)
	in.fence.track(as)
	in.mig.note(as)
	in.mu.Lock()
	defer in.mu.Unlock()
	if as.State == api.StateRunning && in.mig.mine(as) {
		if _, ok := in.running[as.ID]; !ok {
			in.unseen[as.ID] = true
		}
		in.running[as.ID] = as
	} else {
		delete(in.running, as.ID)
		delete(in.ready, as.ID)
		delete(in.unseen, as.ID)
	}
	if as.Revision <= in.written[as.ID] || as.Revision <= in.dispatched[as.ID] {
		return
	}
	in.dispatched[as.ID] = as.Revision
	w := in.work[as.ID]
	if w == nil {
		w = &work{}
		in.work[as.ID] = w
	}
	w.next = &as
	if w.running {
		return
	}
	w.running = true
	go func() {
		in.sem <- struct{}{}
		defer func() { <-in.sem }()
		for {
			in.mu.Lock()
			next := w.next
			w.next = nil
			if next == nil || ctx.Err() != nil {
				w.running = false
				delete(in.work, as.ID)
				in.mu.Unlock()
				return
			}
			stale := next.Revision <= in.written[next.ID]
			in.mu.Unlock()
			if !stale {
				in.handle(ctx, *next)
			}
		}
	}()
}

func (in *instances) spec(as api.Assignment) driver.Spec {
	return in.ports.spec(driver.Spec{ID: as.ID, Project: as.Project, Name: as.Name, Type: as.Type, Host: as.Host, Image: as.Image,
		ImageSHA256: as.ImageSHA256, UserData: as.UserData, Size: as.Size, Nesting: as.Nesting, BootVolume: as.BootVolume}, as)
}

// handle does what an instance's state asks of the host.
func (in *instances) handle(ctx context.Context, as api.Assignment) {
	d := in.d
	fail := func(err error) {
		in.log.Warn("driver failed", "instance", as.ID, "state", as.State, "err", err)
		in.report(as, api.StateFailed, "driver "+d.Name()+": "+tenantReason(err))
	}
	step := func(to api.State, err error) bool {
		if err != nil {
			fail(err)
			return false
		}
		in.report(as, to, "")
		as.State = to
		return true
	}
	// Leaving the host: its ports go too.
	left := func() {
		in.ports.forget(as.ID)
		in.ports.unwire(ctx, as)
	}
	if in.mig.handle(ctx, as) {
		return
	}
	switch as.State {
	case api.StateProlog:
		if err := in.ports.wire(ctx, as); err != nil {
			fail(fmt.Errorf("network: %w", err))
			return
		}
		if err := in.waitBootVolume(ctx, as); err != nil {
			if ctx.Err() == nil && !errors.Is(err, errSuperseded) {
				fail(err)
			}
			return
		}
		spec, done, err := in.prologSpec(ctx, as)
		if err != nil {
			if ctx.Err() == nil {
				fail(err)
			}
			return
		}
		defer done()
		if step(api.StateBoot, d.Prepare(ctx, spec)) {
			step(api.StateRunning, d.Start(ctx, in.spec(as)))
		}
	case api.StateBoot:
		var err error
		switch as.Action {
		case api.ActionReboot:
			err = d.Reboot(ctx, as.ID)
		case api.ActionResume:
			err = d.Resume(ctx, as.ID)
		default:
			if err = in.ports.wire(ctx, as); err == nil {
				err = d.Start(ctx, in.spec(as))
			}
		}
		step(api.StateRunning, err)
	case api.StateShutdown:
		err := d.Stop(ctx, as.ID, false)
		if errors.Is(err, driver.ErrNotFound) {
			err = nil
		}
		if as.Action == api.ActionPoweroff {
			step(api.StatePoweroff, err)
		} else if step(api.StateEpilog, err) && step(api.StateDone, d.Cleanup(ctx, as.ID, false)) {
			left()
		}
	case api.StateSave:
		if as.Action == api.ActionSuspend {
			step(api.StateSuspended, d.Suspend(ctx, as.ID))
		} else if step(api.StateEpilog, d.Save(ctx, as.ID)) && step(api.StateStopped, d.Cleanup(ctx, as.ID, true)) {
			left()
		}
	case api.StateEpilog:
		if as.Action == api.ActionStop {
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
			in.report(as, api.StateFailed, "the host is back but the instance is gone")
		case err != nil:
		case st.State == driver.Running:
			in.report(as, api.StateRunning, "host back online")
		case st.State == driver.Suspended:
			in.report(as, api.StateSuspended, "host back online")
		case st.State == driver.Stopped:
			in.report(as, api.StatePoweroff, cmp.Or(in.fence.reason(as.ID), "host back online"))
		}
	}
}

// monitor notices instances that stopped by themselves: a container
// whose init exited or a VM whose guest powered off goes POWEROFF with the
// reason (its host resources are then accounted as the table says); one
// the driver lost, or whose QEMU crashed, goes FAILED. It also notices
// each guest's readiness changing, and tells of it.
//
// A full check comes every checkEvery (2 s): one listing of every
// instance the driver has, not one driver call per instance. While a
// guest is booting - it started within the last minute and has not said
// it is ready, or it runs and was not checked yet - quick checks come
// every bootCheckEvery (250 ms): the moment it is ready is what users
// wait for (create-to-ready). A quick check asks the driver of those
// guests only, one Status each: a sim agent has 10,000 instances, and
// listing them all four times a second whenever one booted was most of
// its CPU.
func (in *instances) monitor(ctx context.Context) {
	hh, _ := driver.Feature[driver.HostHealth](in.d)
	booting := map[string]time.Time{} // since when each was seen not ready
	var lastFull time.Time
	for {
		every := in.checkEvery
		for id, since := range booting {
			if time.Since(since) < time.Minute {
				every = in.bootCheckEvery
			} else {
				delete(booting, id)
			}
		}
		in.mu.Lock()
		if len(in.unseen) > 0 {
			every = in.bootCheckEvery
		}
		in.mu.Unlock()
		select {
		case <-ctx.Done():
			return
		case <-time.After(every):
		}
		check, full := in.toCheck(hh, booting, time.Since(lastFull) >= in.checkEvery)
		if len(check) == 0 {
			continue
		}
		var have map[string]driver.Status
		if full {
			sts, err := in.d.Recover(ctx)
			if err != nil {
				continue
			}
			lastFull = time.Now()
			in.mu.Lock()
			in.listed, in.listedAt = sts, lastFull
			in.mu.Unlock()
			have = make(map[string]driver.Status, len(sts))
			for _, st := range sts {
				have[st.ID] = st
			}
		} else {
			have = make(map[string]driver.Status, len(check))
			asked := check[:0]
			for _, as := range check {
				st, err := in.d.Status(ctx, as.ID)
				switch {
				case err == nil:
					have[as.ID] = st
				case !errors.Is(err, driver.ErrNotFound):
					continue // not known either way: asked again next time
				}
				asked = append(asked, as)
			}
			check = asked
		}
		kick, changed := false, false
		for _, as := range check {
			st, ok := have[as.ID]
			in.mu.Lock()
			delete(in.unseen, as.ID)
			in.mu.Unlock()
			if ok && st.State == driver.Running {
				if _, seen := booting[as.ID]; !seen && !st.Ready {
					booting[as.ID] = time.Now()
				}
				if st.Ready {
					delete(booting, as.ID)
				}
				in.mu.Lock()
				if in.ready[as.ID] != st.Ready {
					in.ready[as.ID], kick = st.Ready, true
				}
				in.mu.Unlock()
			}
			switch {
			case !ok:
				in.report(as, api.StateFailed, "the instance disappeared from its host")
			case st.State == driver.Crashed:
				in.report(as, api.StateFailed, st.Reason)
			case st.State == driver.Stopped:
				reason := cmp.Or(in.fence.reason(as.ID), st.Reason, "it stopped by itself (PID 1 exited)")
				in.report(as, api.StatePoweroff, reason)
			default:
				continue
			}
			changed = true
			in.mu.Lock()
			delete(in.running, as.ID)
			delete(in.ready, as.ID)
			in.mu.Unlock()
			delete(booting, as.ID)
		}
		if (kick || changed) && !full {
			// The listing kept for statuses is older than what this
			// check saw: the usage round told of it must list again,
			// or it would send what was before.
			in.mu.Lock()
			in.listedAt = time.Time{}
			in.mu.Unlock()
		}
		if kick {
			in.tell.readiness()
		}
	}
}

// toCheck picks the running instances a check looks at, leaving out
// those a worker has in hand and those whose host is down. A full check
// looks at all of them; a quick one at the booting and unseen ones -
// unless they are more than a quarter of the running ones: then one
// listing costs less than their Status calls (a listing is a copy of
// each instance's status; a Status call the same plus a lookup and a
// lock, and for VMs a QMP round trip either way), and the check becomes
// a full one. Booting guests no longer running are forgotten.
func (in *instances) toCheck(hh driver.HostHealth, booting map[string]time.Time, full bool) (check []api.Assignment, _ bool) {
	in.mu.Lock()
	defer in.mu.Unlock()
	add := func(as api.Assignment) {
		if in.work[as.ID] == nil && (hh == nil || hh.HostUp(as.Host)) {
			check = append(check, as)
		}
	}
	if !full {
		for id := range booting {
			if as, ok := in.running[id]; ok {
				add(as)
			} else {
				delete(booting, id)
			}
		}
		for id := range in.unseen {
			if as, ok := in.running[id]; !ok {
				delete(in.unseen, id)
			} else if _, dup := booting[id]; !dup {
				add(as)
			}
		}
		if len(check)*4 <= len(in.running) {
			return check, false
		}
		check = check[:0]
	}
	for _, as := range in.running {
		add(as)
	}
	return check, true
}

// statuses lists the driver's instances, or reuses the monitor's listing
// when it is younger than fresh (and no quick check saw it out of date
// since).
func (in *instances) statuses(ctx context.Context, fresh time.Duration) ([]driver.Status, error) {
	in.mu.Lock()
	sts, at := in.listed, in.listedAt
	in.mu.Unlock()
	if time.Since(at) < fresh {
		return sts, nil
	}
	return in.d.Recover(ctx)
}

func (in *instances) report(as api.Assignment, to api.State, reason string) {
	in.reps <- api.InstanceReport{ID: as.ID, Host: as.Host, From: as.State, To: to, Reason: reason}
}

// reporter batches reports (up to 500, or what arrives within 10 ms),
// makes the driver's state durable, then sends them.
func (in *instances) reporter(ctx context.Context) {
	for {
		var batch []api.InstanceReport
		select {
		case r := <-in.reps:
			batch = append(batch, r)
		case <-ctx.Done():
			return
		}
		timer := time.NewTimer(10 * time.Millisecond)
	collect:
		for len(batch) < 500 {
			select {
			case r := <-in.reps:
				batch = append(batch, r)
			case <-timer.C:
				break collect
			}
		}
		timer.Stop()
		if err := in.d.Sync(); err != nil {
			in.log.Error("driver sync", "err", err)
		}
		for attempt := 0; ctx.Err() == nil; attempt++ {
			sent := time.Now()
			res, err := in.src.Report(ctx, batch)
			in.log.Debug("reported", "reports", len(batch), "took", time.Since(sent), "err", err)
			if err == nil {
				in.mu.Lock()
				for id, rev := range res.Revisions {
					in.written[id] = rev
				}
				for _, r := range batch {
					if r.To == api.StateDone {
						delete(in.written, r.ID)
						delete(in.dispatched, r.ID)
					}
				}
				in.mu.Unlock()
				break
			}
			in.log.Warn("report", "err", err, "attempt", attempt)
			sleep(ctx, time.Duration(min(attempt+1, 10))*200*time.Millisecond)
		}
	}
}
