package server

import (
	"bufio"
	"context"
	"io"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/kumocloud/kumo/api"
	"github.com/kumocloud/kumo/internal/errs"
	"github.com/kumocloud/kumo/internal/hosts"
	"github.com/kumocloud/kumo/internal/server/response"
	"github.com/kumocloud/kumo/internal/validate"
)

// postInstanceSnapshot starts copying a VM's disk into a new image: 202
// with the operation (images.Snapshots does the work). A VM booting from
// a volume gives that volume's bytes (its root disk).
func (s *Server) postInstanceSnapshot(r *request) response.Response {
	var req api.InstanceSnapshotPost
	if err := decodeBody(r.Request, &req); err != nil {
		return response.Error(err)
	}
	if err := mayPublish(r, req.Visibility); err != nil {
		return response.Error(err)
	}
	op, err := s.snapshots.Start(r.Context(), r.PathValue("project"), r.PathValue("name"), req)
	if err != nil {
		return response.Error(err)
	}
	return response.Async(op)
}

// diskReader streams VM disks from the agents of the hosts that keep
// them, through a snapshot session: the agent makes the copy, then sends
// a first line - "ok SIZE" ("ok" from agents that do not tell the size)
// or "error: why" - and the bytes.
type diskReader struct {
	hosts    *hosts.Service
	sessions *sessions
}

const (
	// diskMakeWait bounds how long the agent may take to make the copy
	// before its first line (qemu-img converting a large disk under TCG).
	diskMakeWait = time.Hour
	// diskIdle bounds a pause in the stream once it flows.
	diskIdle = 2 * time.Minute
	// maxDiskHead bounds the first line: an agent's word, read whole.
	maxDiskHead = 1024
)

// ReadDisk implements images.DiskReader. A STOPPED VM's disk stays on its
// home host, as a running one's does.
func (d diskReader) ReadDisk(ctx context.Context, in api.Instance) (io.ReadCloser, int64, error) {
	h, err := d.hosts.Get(ctx, in.Home)
	if err != nil {
		return nil, 0, err
	}
	conn, err := d.sessions.openStream(ctx, h.Agent, api.Session{Kind: "snapshot", InstanceID: in.ID})
	if err != nil {
		return nil, 0, err
	}
	// Reads of the hijacked connection do not see ctx: close it when ctx
	// ends, so a stopping server does not wait for the agent.
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	ic := &idleConn{Conn: conn, idle: diskMakeWait}
	br := bufio.NewReaderSize(ic, maxDiskHead)
	size, err := parseDiskHead(br, in.Name)
	if err != nil {
		stop()
		conn.Close()
		return nil, 0, err
	}
	ic.idle = diskIdle
	return &diskStream{Reader: br, conn: conn, stop: stop}, size, nil
}

// parseDiskHead reads the first line of a snapshot stream: the size the
// agent announces (0 if it does not), or the error it reports, made one
// printable line.
func parseDiskHead(br *bufio.Reader, instance string) (int64, error) {
	line, err := br.ReadSlice('\n')
	if err == bufio.ErrBufferFull {
		return 0, errs.Unavailable("the host sent a first line of more than %d bytes: not a snapshot stream", maxDiskHead)
	}
	if err != nil {
		return 0, errs.Unavailable("the host broke off the snapshot: %v", err)
	}
	head := strings.TrimSpace(string(line))
	if why, ok := strings.CutPrefix(head, "error: "); ok {
		return 0, errs.Conflict("snapshot of %q: %s", instance, printable(why))
	}
	word, n, _ := strings.Cut(head, " ")
	if word != "ok" {
		return 0, errs.Unavailable("the host sent %q: not a snapshot stream", printable(head))
	}
	size, err := strconv.ParseInt(n, 10, 64)
	if err != nil || size < 0 {
		size = 0
	}
	return size, nil
}

// printable makes an agent's words safe to show: valid UTF-8 without
// control characters.
func printable(s string) string {
	return strings.Map(func(r rune) rune {
		if validate.Control(r) {
			return '?'
		}
		return r
	}, strings.ToValidUTF8(s, "?"))
}

// idleConn gives each read a deadline: a host that stops sending ends
// the stream instead of holding it open.
type idleConn struct {
	net.Conn
	idle time.Duration
}

func (c *idleConn) Read(p []byte) (int, error) {
	c.Conn.SetReadDeadline(time.Now().Add(c.idle))
	return c.Conn.Read(p)
}

type diskStream struct {
	*bufio.Reader
	conn net.Conn
	stop func() bool
}

func (d *diskStream) Close() error {
	d.stop()
	return d.conn.Close()
}
