// Package qmp is a small client for the QEMU Machine Protocol: one
// connection to a QEMU's QMP socket, the capabilities handshake, commands
// matched to their replies by id, and asynchronous events kept for the
// caller. The usual Go QMP libraries are not reachable here; the protocol
// is a line of JSON each way (docs/interop/qmp-spec in QEMU).
package qmp

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"sync"
	"syscall"
	"time"
)

// Error is an error QEMU returned for a command.
type Error struct {
	Class string `json:"class"`
	Desc  string `json:"desc"`
}

func (e *Error) Error() string { return "qmp: " + e.Class + ": " + e.Desc }

// Event is an asynchronous message from QEMU (SHUTDOWN, STOP, RESUME...).
type Event struct {
	Event     string          `json:"event"`
	Data      json.RawMessage `json:"data"`
	Timestamp struct {
		Seconds      int64 `json:"seconds"`
		Microseconds int64 `json:"microseconds"`
	} `json:"timestamp"`
}

// Version is QEMU's version from the greeting.
type Version struct {
	Major, Minor, Micro int
	Package             string
}

type message struct {
	QMP *struct {
		Version struct {
			QEMU struct {
				Major int `json:"major"`
				Minor int `json:"minor"`
				Micro int `json:"micro"`
			} `json:"qemu"`
			Package string `json:"package"`
		} `json:"version"`
	} `json:"QMP"`
	Return json.RawMessage `json:"return"`
	Error  *Error          `json:"error"`
	ID     string          `json:"id"`
	Event
}

type reply struct {
	ret json.RawMessage
	err error
}

// Conn is an open QMP connection. It is safe for concurrent use.
type Conn struct {
	c       net.Conn
	Version Version

	mu      sync.Mutex
	next    int
	pending map[string]chan reply
	events  []Event
	evCh    chan struct{}
	closed  error
	done    chan struct{}
}

// Dial connects to a QMP unix socket, reads the greeting and leaves
// capabilities negotiation mode. ctx bounds the whole handshake.
func Dial(ctx context.Context, path string) (*Conn, error) {
	var d net.Dialer
	nc, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		return nil, err
	}
	return handshake(ctx, nc)
}

func handshake(ctx context.Context, nc net.Conn) (*Conn, error) {
	if dl, ok := ctx.Deadline(); ok {
		nc.SetReadDeadline(dl)
	}
	r := bufio.NewReaderSize(nc, 64<<10)
	line, err := r.ReadBytes('\n')
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("qmp: reading the greeting: %w", err)
	}
	var g message
	if err := json.Unmarshal(line, &g); err != nil || g.QMP == nil {
		nc.Close()
		return nil, fmt.Errorf("qmp: not a QMP greeting: %.80q", line)
	}
	nc.SetReadDeadline(time.Time{})
	v := g.QMP.Version
	c := &Conn{c: nc, Version: Version{v.QEMU.Major, v.QEMU.Minor, v.QEMU.Micro, v.Package},
		pending: map[string]chan reply{}, evCh: make(chan struct{}, 1), done: make(chan struct{})}
	go c.read(r)
	if err := c.Execute(ctx, "qmp_capabilities", nil, nil); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// read dispatches replies to their waiting commands and keeps events.
func (c *Conn) read(r *bufio.Reader) {
	var err error
	for {
		var line []byte
		if line, err = r.ReadBytes('\n'); err != nil {
			break
		}
		var m message
		if json.Unmarshal(line, &m) != nil {
			continue // QEMU only writes JSON; skip what we cannot read
		}
		c.mu.Lock()
		switch {
		case m.Event.Event != "":
			c.events = append(c.events, m.Event)
			select {
			case c.evCh <- struct{}{}:
			default:
			}
		case m.ID != "":
			if ch, ok := c.pending[m.ID]; ok {
				delete(c.pending, m.ID)
				rep := reply{ret: m.Return}
				if m.Error != nil {
					rep.err = m.Error
				}
				ch <- rep
			}
		}
		c.mu.Unlock()
	}
	c.mu.Lock()
	c.closed = fmt.Errorf("qmp: connection closed: %w", err)
	for id, ch := range c.pending {
		ch <- reply{err: c.closed}
		delete(c.pending, id)
	}
	c.mu.Unlock()
	close(c.done)
}

// Execute runs a command with arguments (nil for none) and decodes its
// return value into out (nil to ignore it).
func (c *Conn) Execute(ctx context.Context, cmd string, args, out any) error {
	return c.execute(ctx, cmd, args, out, nil)
}

// ExecuteWithFile runs a command that takes a file descriptor with it
// (getfd, add-fd): f travels beside the command as SCM_RIGHTS, so QEMU
// gets a file kumo opened rather than a path it would open itself.
func (c *Conn) ExecuteWithFile(ctx context.Context, cmd string, args, out any, f *os.File) error {
	return c.execute(ctx, cmd, args, out, syscall.UnixRights(int(f.Fd())))
}

func (c *Conn) execute(ctx context.Context, cmd string, args, out any, oob []byte) error {
	c.mu.Lock()
	if c.closed != nil {
		c.mu.Unlock()
		return c.closed
	}
	c.next++
	id := strconv.Itoa(c.next)
	ch := make(chan reply, 1)
	c.pending[id] = ch
	c.mu.Unlock()
	req := map[string]any{"execute": cmd, "id": id}
	if args != nil {
		req["arguments"] = args
	}
	b, _ := json.Marshal(req)
	dl, _ := ctx.Deadline() // zero (none) when ctx has no deadline
	c.c.SetWriteDeadline(dl)
	var err error
	if uc, ok := c.c.(*net.UnixConn); ok && oob != nil {
		_, _, err = uc.WriteMsgUnix(append(b, '\n'), oob, nil)
	} else if oob != nil {
		err = errors.New("file descriptors travel only over a unix socket")
	} else {
		_, err = c.c.Write(append(b, '\n'))
	}
	if err != nil {
		c.forget(id)
		return fmt.Errorf("qmp: %s: %w", cmd, err)
	}
	select {
	case rep := <-ch:
		if rep.err != nil {
			return fmt.Errorf("%s: %w", cmd, rep.err)
		}
		if out != nil && len(rep.ret) > 0 {
			return json.Unmarshal(rep.ret, out)
		}
		return nil
	case <-ctx.Done():
		c.forget(id)
		return fmt.Errorf("qmp: %s: %w", cmd, ctx.Err())
	}
}

func (c *Conn) forget(id string) {
	c.mu.Lock()
	delete(c.pending, id)
	c.mu.Unlock()
}

// WaitEvent waits for an event of that name received since the
// connection opened (it is consumed), or until ctx ends or QEMU goes away.
func (c *Conn) WaitEvent(ctx context.Context, name string) (Event, error) {
	for {
		c.mu.Lock()
		for i, e := range c.events {
			if e.Event == name {
				c.events = append(c.events[:i], c.events[i+1:]...)
				c.mu.Unlock()
				return e, nil
			}
		}
		closed := c.closed
		c.mu.Unlock()
		if closed != nil {
			return Event{}, closed
		}
		select {
		case <-c.evCh:
		case <-c.done:
		case <-ctx.Done():
			return Event{}, fmt.Errorf("qmp: waiting for %s: %w", name, ctx.Err())
		}
	}
}

// Done is closed when the connection ends (QEMU quit or crashed).
func (c *Conn) Done() <-chan struct{} { return c.done }

// Close ends the connection.
func (c *Conn) Close() error { return c.c.Close() }

// Status is the answer of query-status.
type Status struct {
	Running bool   `json:"running"`
	Status  string `json:"status"` // running, paused, shutdown, inmigrate, postmigrate...
}

// QueryStatus asks whether the guest runs.
func (c *Conn) QueryStatus(ctx context.Context) (Status, error) {
	var s Status
	err := c.Execute(ctx, "query-status", nil, &s)
	return s, err
}
