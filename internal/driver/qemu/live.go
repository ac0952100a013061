package qemu

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"time"

	"github.com/kumocloud/kumo/api"
	"github.com/kumocloud/kumo/internal/driver"
	"github.com/kumocloud/kumo/internal/qmp"
)

// Live migration, as libvirt does it for local disks: the target's QEMU
// starts paused (-S -incoming defer) with a fresh overlay over its own
// copy of the base and serves that overlay over NBD; the source mirrors
// its overlay into it (blockdev-mirror, sync top, write-blocking once in
// step), then migrates the memory (pre-copy, auto-converge, a downtime
// limit). When the memory migration completes (the source is paused for
// good) the mirror is ended, in step, and the source tells the target to
// go: it stops serving NBD, continues the guest and announces its MACs
// (gratuitous ARP). Every byte goes through the migration's tunnel:
// QEMU talks to unix sockets in the VM's socket dir that the driver joins
// to the tunnel's channels (nbd, mem, ctl) - no port is opened.

var _ driver.LiveMigrator = (*Driver)(nil)

const incomingLive = "live"

// liveTrace, when set (a benchmark sets it), hears each phase of a live
// migration as it is reached, on either side: where the time goes.
var liveTrace func(id, phase string)

func trace(id, phase string) {
	if liveTrace != nil {
		liveTrace(id, phase)
	}
}

// qemuMaxBandwidth is QEMU's own default max-bandwidth (128 MiB/s).
const qemuMaxBandwidth = 128 << 20

// LiveReceive implements driver.LiveMigrator.
func (d *Driver) LiveReceive(ctx context.Context, s driver.Spec, t driver.Tunnel) (err error) {
	undo, err := driver.PrepareAfresh(ctx, d, s)
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			undo()
		}
	}()
	l := d.lock(s.ID)
	l.Lock()
	defer l.Unlock()
	m, err := d.readMeta(s.ID)
	if err != nil {
		return err
	}
	m.Want, m.Accel, m.BootAt, m.BootOffset = wantRunning, d.accel, time.Now().UTC(), 0
	if err := d.writeMeta(s.ID, m); err != nil {
		return err
	}
	if err := d.spawn(ctx, s.ID, m, incomingLive); err != nil {
		return err
	}
	defer func() {
		if err != nil {
			d.ensureQuit(context.WithoutCancel(ctx), s.ID)
		}
	}()
	c, err := d.dial(ctx, s.ID)
	if err != nil {
		return err
	}
	defer c.Close()
	nbdSock, memSock := d.sock(s.ID, "nbd.sock"), d.sock(s.ID, "incoming.sock")
	steps := []struct {
		cmd  string
		args any
	}{
		{"nbd-server-start", map[string]any{"addr": map[string]any{"type": "unix", "data": map[string]any{"path": nbdSock}}}},
		{"migrate-set-capabilities", map[string]any{"capabilities": []map[string]any{{"capability": "auto-converge", "state": true}, {"capability": "events", "state": true}}}},
		{"migrate-incoming", map[string]any{"uri": "unix:" + memSock}},
	}
	var disks []string
	for i, st := range steps {
		if err := c.Execute(ctx, st.cmd, st.args, nil); err != nil {
			return fmt.Errorf("%s: %w", st.cmd, err)
		}
		if i == 0 {
			if disks, err = serveDisks(ctx, c, s); err != nil { // live_volumes.go
				return err
			}
		}
	}
	ctl, err := t(ctx, driver.ChannelCtl)
	if err != nil {
		return fmt.Errorf("tunnel: %w", err)
	}
	defer ctl.Close()
	// The source connects as it needs: the disk first, then the memory.
	bctx, stop := context.WithCancel(ctx)
	defer stop()
	bridged := make(chan error, 1+len(disks))
	for _, ch := range disks {
		go func() { bridged <- bridgeTo(bctx, t, ch, nbdSock) }()
	}
	go func() { bridged <- bridgeTo(bctx, t, driver.ChannelMem, memSock) }()
	// The source's word: "go" once everything is here, anything else (or
	// the channel breaking) is the end of it.
	word := make([]byte, 3)
	trace(s.ID, "target: ready, waiting for go")
	if _, err := io.ReadFull(ctl, word); err != nil {
		return fmt.Errorf("the tunnel from the source broke before it said go (%v): its agent or the server stopped, or the link was cut", err)
	} else if string(word) != "go\n" {
		return driver.ErrSourceGaveUp
	}
	trace(s.ID, "target: go received")
	// The source's QEMU is done once it has written everything; the last
	// bytes may still be on their way through the tunnel. QEMU says when
	// the incoming migration's status changes (MIGRATION events).
	deadline := time.Now().Add(time.Minute)
	if err := await(ctx, c, "MIGRATION", 50*time.Millisecond, func() (bool, error) {
		var mi migrationInfo
		if err := c.Execute(ctx, "query-migrate", nil, &mi); err != nil {
			return false, err
		}
		if mi.Status == "completed" {
			return true, nil
		}
		if mi.Status == "failed" || mi.Status == "cancelled" || time.Now().After(deadline) {
			return false, fmt.Errorf("the incoming migration is %q: %s", mi.Status, mi.ErrorDesc)
		}
		return false, nil
	}); err != nil {
		return err
	}
	trace(s.ID, "target: incoming completed")
	c.Execute(ctx, "nbd-server-stop", nil, nil)
	if err := c.Execute(ctx, "cont", nil, nil); err != nil {
		return fmt.Errorf("cont: %w", err)
	}
	trace(s.ID, "target: running")
	// Gratuitous ARP (and RARP) for every NIC, so switches and peers
	// learn at once where the MACs went.
	c.Execute(ctx, "announce-self", map[string]any{"initial": 50, "max": 550, "rounds": 5, "step": 100}, nil)
	if _, err := ctl.Write([]byte("ok\n")); err != nil {
		return err
	}
	return nil
}

// bridgeTo joins a tunnel channel to a unix socket QEMU listens on.
func bridgeTo(ctx context.Context, t driver.Tunnel, channel, path string) error {
	ch, err := t(ctx, channel)
	if err != nil {
		return err
	}
	defer ch.Close()
	var dl net.Dialer
	var c net.Conn
	for i := 0; ; i++ {
		if c, err = dl.DialContext(ctx, "unix", path); err == nil || i > 100 || ctx.Err() != nil {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil {
		return err
	}
	defer c.Close()
	return join(c, ch)
}

// join copies both ways until either side ends.
func join(a io.ReadWriteCloser, b io.ReadWriteCloser) error {
	done := make(chan error, 2)
	go func() { _, err := io.Copy(a, b); done <- err }()
	go func() { _, err := io.Copy(b, a); done <- err }()
	err := <-done
	a.Close()
	b.Close()
	<-done
	return err
}

// bridgeFrom accepts QEMU's one connection on a unix socket and joins it
// to a tunnel channel.
func bridgeFrom(ctx context.Context, t driver.Tunnel, channel, path string) (net.Listener, <-chan error, error) {
	os.Remove(path)
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, nil, err
	}
	done := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			done <- err
			return
		}
		ch, err := t(ctx, channel)
		if err != nil {
			c.Close()
			done <- err
			return
		}
		done <- join(c, ch)
	}()
	return ln, done, nil
}

type migrationInfo struct {
	Status    string `json:"status"`
	ErrorDesc string `json:"error-desc"`
	TotalTime int64  `json:"total-time"`
	Downtime  int64  `json:"downtime"`
	RAM       struct {
		Transferred   int64 `json:"transferred"`
		Remaining     int64 `json:"remaining"`
		Total         int64 `json:"total"`
		DirtyRate     int64 `json:"dirty-pages-rate"`
		DirtySyncs    int64 `json:"dirty-sync-count"`
		PostcopyPages int64 `json:"postcopy-requests"`
	} `json:"ram"`
	CPUThrottle int64 `json:"cpu-throttle-percentage"`
}

func (mi migrationInfo) stats(disk int64) api.MigrationStats {
	return api.MigrationStats{Status: mi.Status, TotalBytes: mi.RAM.Total, Transferred: mi.RAM.Transferred, Remaining: mi.RAM.Remaining,
		DirtyRate: mi.RAM.DirtyRate, Rounds: mi.RAM.DirtySyncs, DiskBytes: disk, DowntimeMS: mi.Downtime, TotalMS: mi.TotalTime, CPUThrottlePct: mi.CPUThrottle}
}

// LiveSend implements driver.LiveMigrator.
func (d *Driver) LiveSend(ctx context.Context, id string, t driver.Tunnel, opt driver.LiveOptions, progress func(api.MigrationStats)) (api.MigrationStats, error) {
	if opt.DowntimeLimitMS <= 0 {
		opt.DowntimeLimitMS = 300
	}
	l := d.lock(id)
	l.Lock()
	defer l.Unlock()
	if qs, err := d.qemuState(ctx, id); err != nil || qs != "running" {
		return api.MigrationStats{}, fmt.Errorf("%w: a live migration needs the VM running, not %q (%v)", driver.ErrState, qs, err)
	}
	c, err := d.dial(ctx, id)
	if err != nil {
		return api.MigrationStats{}, err
	}
	defer c.Close()
	ctl, err := t(ctx, driver.ChannelCtl)
	if err != nil {
		return api.MigrationStats{}, fmt.Errorf("tunnel: %w", err)
	}
	defer ctl.Close()
	bctx, stop := context.WithCancel(ctx)
	defer stop()
	memOut := d.sock(id, "migrate-out.sock")
	mln, memDone, err := bridgeFrom(bctx, t, driver.ChannelMem, memOut)
	if err != nil {
		return api.MigrationStats{}, err
	}
	defer mln.Close()
	abandon := func(why error) (api.MigrationStats, error) {
		// The VM keeps running here; the target hears it was this side's
		// decision (a broken tunnel is something else).
		ctl.Write([]byte("no\n"))
		bg := context.WithoutCancel(ctx)
		if err := endOutgoing(bg, c); err != nil {
			why = fmt.Errorf("%w; and ending it: %v", why, err)
		}
		var st qmp.Status
		if st, _ = c.QueryStatus(bg); st.Status == "paused" || st.Status == "postmigrate" || st.Status == "finish-migrate" {
			c.Execute(bg, "cont", nil, nil)
		}
		return api.MigrationStats{}, why
	}
	// An earlier try whose agent was killed left its mirror's NBD client
	// (and maybe the job, or the memory migration) in this QEMU: it would
	// refuse a second one.
	if err := endOutgoing(ctx, c); err != nil {
		return abandon(fmt.Errorf("an earlier migration of it does not end: %w", err))
	}
	trace(id, "source: mirror start")
	// The disks first (live_volumes.go): mirrored into the target's, in
	// step.
	disks, disk, err := d.mirrorDisks(ctx, bctx, c, id, t, opt)
	if err != nil {
		return abandon(err)
	}
	// Then the memory.
	trace(id, "source: mirror ready")
	caps := []map[string]any{{"capability": "auto-converge", "state": opt.AutoConverge}, {"capability": "events", "state": true}}
	if err := c.Execute(ctx, "migrate-set-capabilities", map[string]any{"capabilities": caps}, nil); err != nil {
		return abandon(err)
	}
	// Always set: QEMU keeps what an earlier migration of it was given
	// (an agent since restarted with another cap). The migration's own
	// cap wins over the driver's.
	params := map[string]any{"downtime-limit": opt.DowntimeLimitMS, "max-bandwidth": qemuMaxBandwidth}
	if bw := d.o.MigrateBandwidthMiB; bw > 0 {
		params["max-bandwidth"] = bw << 20
	}
	if opt.MaxBandwidth > 0 {
		params["max-bandwidth"] = opt.MaxBandwidth
	}
	if err := c.Execute(ctx, "migrate-set-parameters", params, nil); err != nil {
		return abandon(err)
	}
	memStart := time.Now()
	trace(id, "source: migrate")
	if err := c.Execute(ctx, "migrate", map[string]any{"uri": "unix:" + memOut}, nil); err != nil {
		return abandon(err)
	}
	// This migration's status is what QEMU's MIGRATION events say, at
	// once (nothing waits for a poll's tick), and they are this
	// migration's own changes: query-migrate's "status" mixes in a QEMU's
	// earlier incoming migration (a VM migrated in shows its "completed"
	// while no outgoing one has a state), so its "completed" counts only
	// with the outgoing one's figures (a missed event costs 200 ms). Its
	// figures, read every 200 ms meanwhile, feed progress and the bound.
	var mi migrationInfo
	for status := "setup"; ; {
		if err := c.Execute(ctx, "query-migrate", nil, &mi); err != nil {
			return abandon(err)
		}
		switch {
		case mi.Status == "completed" && mi.TotalTime > 0, mi.Status == "failed", mi.Status == "cancelled":
			status = mi.Status
		}
		if status == "completed" {
			// QEMU says "completed" a moment before it has its figures.
			for i := 0; mi.TotalTime == 0 && i < 100; i++ {
				time.Sleep(5 * time.Millisecond)
				if err := c.Execute(ctx, "query-migrate", nil, &mi); err != nil {
					return abandon(err)
				}
			}
			break
		}
		if status == "failed" || status == "cancelled" {
			return abandon(fmt.Errorf("the migration %s: %s", status, mi.ErrorDesc))
		}
		mi.Status = status
		progress(mi.stats(disk))
		if opt.ConvergeWithin > 0 && time.Since(memStart) > opt.ConvergeWithin {
			return abandon(notConverged(opt, mi))
		}
		var err error
		if status, err = nextStatus(ctx, c, 200*time.Millisecond, status); err != nil {
			return abandon(err)
		}
	}
	mi.Status = "completed"
	trace(id, "source: migration completed")
	// The source is paused for good; the mirror ends in step (writes were
	// synchronous), then the target may go.
	if err := endMirrors(ctx, c, disks); err != nil {
		return abandon(err)
	}
	trace(id, "source: mirror ended")
	<-memDone
	trace(id, "source: memory channel closed")
	if _, err := ctl.Write([]byte("go\n")); err != nil {
		return abandon(err)
	}
	// From here the target may run it: only its own word (received, or
	// failed) settles the migration, so this side says "sent" whatever
	// comes back, and stays paused - never running twice.
	ack := make([]byte, 3)
	io.ReadFull(ctl, ack)
	trace(id, "source: target said ok")
	st := mi.stats(disk)
	st.Status = "completed"
	return st, nil
}

// await returns once done says so, checking at once, again whenever
// QEMU sends an event named name (a job's or a migration's status
// changed: nothing waits for a poll's next tick) and at least every
// `every` (an event missed, or one left from before, costs a check).
func await(ctx context.Context, c *qmp.Conn, name string, every time.Duration, done func() (bool, error)) error {
	for {
		if ok, err := done(); ok || err != nil {
			return err
		}
		wctx, cancel := context.WithTimeout(ctx, every)
		_, err := c.WaitEvent(wctx, name)
		cancel()
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if err != nil && wctx.Err() == nil {
			return err // QEMU went away
		}
	}
}

// nextStatus is the status of the last of QEMU's MIGRATION events queued
// on c, waiting up to wait for one (last if none came).
func nextStatus(ctx context.Context, c *qmp.Conn, wait time.Duration, last string) (string, error) {
	wctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	for {
		ev, err := c.WaitEvent(wctx, "MIGRATION")
		if err != nil {
			if ctx.Err() != nil {
				return last, ctx.Err()
			}
			if wctx.Err() == nil {
				return last, err // QEMU went away
			}
			return last, nil
		}
		var st struct {
			Status string `json:"status"`
		}
		if json.Unmarshal(ev.Data, &st) == nil && st.Status != "" {
			last = st.Status
		}
		cancel() // the ones queued behind it, without waiting
	}
}

// endOutgoing ends what an outgoing migration made in a QEMU that runs
// on: the memory migration, the disk mirror and its NBD client. Nothing
// of it there is not an error; a migration QEMU has not ended once
// cancelled (within a bound) is, since the next try would be refused
// ("There's a migration process in progress").
func endOutgoing(ctx context.Context, c *qmp.Conn) error {
	c.Execute(ctx, "migrate_cancel", nil, nil)
	endMirrorsForced(ctx, c) // live_volumes.go
	// migrate_cancel only asks: QEMU's migration thread ends it when it
	// next looks (a thread waiting for QEMU's lock looks late).
	var mi migrationInfo
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		if err := c.Execute(ctx, "query-migrate", nil, &mi); err != nil {
			return fmt.Errorf("query-migrate after migrate_cancel: %w", err)
		}
		if !migrating(mi.Status) {
			return nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("QEMU's outgoing migration is still %q 30 s after migrate_cancel", mi.Status)
		}
		c.Execute(ctx, "migrate_cancel", nil, nil)
	}
}

// migrating says whether an outgoing migration in QEMU's status s is
// still under way (a new one would be refused).
func migrating(s string) bool {
	switch s {
	case "", "none", "completed", "failed", "cancelled":
		return false
	}
	return true
}

var _ driver.LiveCanceler = (*Driver)(nil)

// LiveCancel implements driver.LiveCanceler: endOutgoing, under the
// VM's lock, on a QEMU that runs.
func (d *Driver) LiveCancel(ctx context.Context, id string) error {
	return d.act(ctx, id, func(_ meta, qs string) error {
		if qs == "" {
			return nil
		}
		c, err := d.dial(ctx, id)
		if err != nil {
			return err
		}
		defer c.Close()
		return endOutgoing(ctx, c)
	})
}

// LiveAbort implements driver.LiveMigrator: whatever an outgoing
// migration left in the VM's QEMU ends - the memory migration (a source
// agent killed mid-try, or restarted since, left it running: cancelling
// the try must end it, or every later one is refused), the disk mirror
// and its NBD client - and a source paused by a migration whose target
// then failed runs again.
func (d *Driver) LiveAbort(ctx context.Context, id string) error {
	return d.act(ctx, id, func(m meta, qs string) error {
		if qs == "" {
			return nil
		}
		c, err := d.dial(ctx, id)
		if err != nil {
			return err
		}
		defer c.Close()
		ended := endOutgoing(ctx, c)
		// Resumed even if QEMU's migration did not end: a source runs
		// while it migrates (pre-copy) anyway.
		if st, err := c.QueryStatus(ctx); err != nil {
			return err
		} else if st.Status == "paused" || st.Status == "postmigrate" || st.Status == "finish-migrate" {
			if err := c.Execute(ctx, "cont", nil, nil); err != nil {
				return err
			}
		}
		if m.Want != wantRunning {
			m.Want = wantRunning
			if err := d.writeMeta(id, m); err != nil {
				return err
			}
		}
		return ended
	})
}
