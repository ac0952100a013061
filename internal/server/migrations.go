package server

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/kumocloud/kumo/api"
	"github.com/kumocloud/kumo/internal/driver"
	"github.com/kumocloud/kumo/internal/errs"
	"github.com/kumocloud/kumo/internal/operations"
	"github.com/kumocloud/kumo/internal/server/response"
	"github.com/kumocloud/kumo/internal/validate"
)

// Operation kinds of migrations.
const (
	opMigrate  = "instance.migrate"
	opEvacuate = "host.evacuate"
)

func (s *Server) registerMigrations() {
	s.tunnels = &tunnels{waiting: map[string]*tunnelEnd{}, joined: map[string]bool{}}
	s.ops.Register(opMigrate, s.runMigrate)
	s.ops.Register(opEvacuate, s.runEvacuate)
}

// postInstanceMigrate starts a migration (202 with the operation that
// follows it) or, with cancel, asks the one under way to stop (200 with
// the instance).
func (s *Server) postInstanceMigrate(r *request) response.Response {
	var req api.InstanceMigrate
	if r.ContentLength != 0 {
		if err := decodeBody(r.Request, &req); err != nil {
			return response.Error(err)
		}
	}
	project, name := r.PathValue("project"), r.PathValue("name")
	in, err := s.compute.Migrate(r.Context(), project, name, req)
	if err != nil {
		return response.Error(err)
	}
	if req.Cancel {
		return response.OK(in)
	}
	m := in.Migration
	op, err := s.ops.Start(r.Context(), project, opMigrate, fmt.Sprintf("Migrate instance %s from %s to %s (%s)", name, m.Source, m.Target, m.Mode),
		"/v1/projects/"+project+"/instances/"+name, map[string]string{"project": project, "name": name, "migration": m.ID})
	if err != nil {
		return response.Error(err)
	}
	return response.Async(op)
}

// runMigrate follows a migration to its end: the work is the agents'
// and the compute service's, all in the store, so a resumed operation
// just follows again.
func (s *Server) runMigrate(ctx context.Context, op *operations.Op) error {
	_, err := s.compute.WaitMigration(ctx, op.Args["project"], op.Args["name"], op.Args["migration"], func(pct int) { op.Progress(ctx, pct) })
	return err
}

// postHostEvacuate answers the plan (dry_run) or starts the evacuation.
func (s *Server) postHostEvacuate(r *request) response.Response {
	var req api.HostEvacuate
	if r.ContentLength != 0 {
		if err := decodeBody(r.Request, &req); err != nil {
			return response.Error(err)
		}
	}
	if req.Concurrency < 0 || req.Concurrency > 32 {
		return response.Error(errs.Invalid("concurrency", "concurrency must be 1 to 32 (0: 2)"))
	}
	host := r.PathValue("host")
	plan, err := s.compute.EvacuationPlan(r.Context(), host)
	if err != nil {
		return response.Error(err)
	}
	if req.DryRun {
		return response.OK(plan)
	}
	op, err := s.ops.Start(r.Context(), "", opEvacuate, fmt.Sprintf("Evacuate host %s (%d instances)", host, len(plan.Moves)),
		"/v1/hosts/"+host, map[string]string{"host": host, "concurrency": strconv.Itoa(req.Concurrency)})
	if err != nil {
		return response.Error(err)
	}
	return response.Async(op)
}

func (s *Server) runEvacuate(ctx context.Context, op *operations.Op) error {
	n, _ := strconv.Atoi(op.Args["concurrency"])
	return s.compute.Evacuate(ctx, op.Args["host"], n, func(done, total int) { op.Progress(ctx, done*100/total) })
}

func (s *Server) postMigrationReport(r *request) response.Response {
	var rep api.MigrationReport
	if err := decodeBody(r.Request, &rep); err != nil {
		return response.Error(err)
	}
	rep.Migration = r.PathValue("mid")
	if err := validate.Text("reason", rep.Reason, 1024); err != nil {
		return response.Error(err)
	}
	in, err := s.compute.MigrationReport(r.Context(), r.agent, rep)
	if err != nil {
		return response.Error(err)
	}
	return response.OK(in)
}

// tunnels joins the two agents of a migration: each opens the same
// channel of it (an upgraded connection, authenticated by its agent
// credential, over the server's TLS), and the server splices the two.
// Only the agents of the migration's source and target hosts may open
// its channels, and only while it transfers; nothing listens anywhere
// for anyone else. In memory: a channel lives as long as its two ends.
// An agent is hostile too: it may open only its migration's channels
// (driver.Channels), each once at a time - one end waiting (opened again,
// it replaces the old one) or one joined pair - so a migration holds at
// most two connections per channel it needs, never a flood.
type tunnels struct {
	mu      sync.Mutex
	waiting map[string]*tunnelEnd
	joined  map[string]bool // channels whose two ends are spliced
}

type tunnelEnd struct {
	role  string
	conn  net.Conn
	taken chan struct{}
}

// tunnelWait bounds how long one end waits for the other.
const tunnelWait = 2 * time.Minute

func (s *Server) getMigrationTunnel(r *request, w http.ResponseWriter) {
	mid, channel, host := r.PathValue("mid"), r.PathValue("channel"), r.URL.Query().Get("host")
	fail := func(err error) { response.Error(err).Render(w, r.Request) }
	if err := validate.Name("channel", channel); err != nil {
		fail(err)
		return
	}
	if !r.agent.Hosts[host] {
		fail(errs.NotFound("host %q is not one of this agent's", host))
		return
	}
	m, vols, ok := s.compute.ActiveMigration(mid)
	role := ""
	switch {
	case !ok || m.Phase != api.MigrationTransfer:
		fail(errs.NotFound("migration %q is not transferring", mid))
		return
	case host == m.Source:
		role = "source"
	case host == m.Target:
		role = "target"
	default:
		fail(errs.NotFound("migration %q is not transferring", mid))
		return
	}
	if chans := driver.Channels(m.Mode, vols); !slices.Contains(chans, channel) {
		fail(errs.Invalid("channel", "migration %q has no channel %q (its channels: %s)", mid, channel, strings.Join(chans, ", ")))
		return
	}
	key := mid + "/" + channel
	t := s.tunnels
	t.mu.Lock()
	busy := t.joined[key]
	t.mu.Unlock()
	if busy {
		fail(errs.Conflict("channel %q of migration %q is already joined: a migration opens each of its channels once at a time", channel, mid))
		return
	}
	conn, err := hijack(w)
	if err != nil {
		return
	}
	conn.SetDeadline(time.Time{})
	me := &tunnelEnd{role: role, conn: conn, taken: make(chan struct{})}
	t.mu.Lock()
	if t.joined[key] { // joined while this one was being upgraded
		t.mu.Unlock()
		conn.Close()
		return
	}
	peer := t.waiting[key]
	if peer != nil && peer.role != role {
		delete(t.waiting, key)
		t.joined[key] = true
		t.mu.Unlock()
		close(peer.taken)
		splice(conn, peer.conn)
		t.mu.Lock()
		delete(t.joined, key)
		t.mu.Unlock()
		return
	}
	if peer != nil {
		peer.conn.Close() // an end opened again replaces the old one
	}
	t.waiting[key] = me
	t.mu.Unlock()
	timer := time.NewTimer(tunnelWait)
	defer timer.Stop()
	select {
	case <-me.taken:
		return
	case <-timer.C:
	}
	// Not taken by its peer (which removes it from the map under the
	// lock before splicing), or replaced: it ends here.
	t.mu.Lock()
	mine := t.waiting[key] == me
	if mine {
		delete(t.waiting, key)
	}
	t.mu.Unlock()
	if mine {
		conn.Close()
	}
}

// splice copies two connections into each other until either ends, then
// closes both.
func splice(a, b net.Conn) {
	done := make(chan struct{}, 2)
	go func() { io.Copy(a, b); done <- struct{}{} }()
	go func() { io.Copy(b, a); done <- struct{}{} }()
	<-done
	a.Close()
	b.Close()
	<-done
}
