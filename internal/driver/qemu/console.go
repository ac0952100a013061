package qemu

import (
	"context"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/kumocloud/kumo/api"
	"github.com/kumocloud/kumo/internal/driver"
	"github.com/kumocloud/kumo/internal/driver/local"
)

// The VM's consoles: its serial line (a QEMU socket chardev, which also
// writes console.log) and its display (a std VGA card shown by QEMU's VNC
// server on a unix socket in the VM's run dir, root only). The agent
// bridges them to the user; neither listens on the network.

// vncSocket is the name of the VNC socket in the VM's run dir.
const vncSocket = "vnc.sock"

// displayArgs is the VM's display: a VGA card (text mode too, so the
// firmware's and kernel's words show) and VNC on the unix socket sock.
func displayArgs(sock string) []string {
	return []string{"-device", "VGA", "-vnc", "unix:" + sock}
}

// Console implements driver.Consoler: the serial console (the default)
// or the display's RFB stream, joined to t until either side ends.
func (d *Driver) Console(ctx context.Context, id, kind string, t driver.Terminal) (int, error) {
	if _, err := d.readMeta(id); err != nil {
		return driver.NoExit, err
	}
	if d.pid(id) == 0 {
		return driver.NoExit, fmt.Errorf("%w: the VM is not running", driver.ErrState)
	}
	switch kind {
	case "", api.ConsoleSerial:
		return driver.NoExit, d.serial.attach(ctx, d.sock(id, "console.sock"), d.path(id, "console.log"), t)
	case api.ConsoleVNC:
		var dl net.Dialer
		c, err := dl.DialContext(ctx, "unix", d.sock(id, vncSocket))
		if err != nil {
			return driver.NoExit, fmt.Errorf("the VM's display: %w (a VM booted by an older kumo has none until it restarts)", err)
		}
		defer c.Close()
		return driver.NoExit, pipe(ctx, c, t)
	}
	return driver.NoExit, fmt.Errorf("%w: a VM's consoles are serial and vnc, not %q", driver.ErrState, kind)
}

// pipe copies between c and rw until either ends (or ctx does).
func pipe(ctx context.Context, c net.Conn, rw io.ReadWriter) error {
	done := make(chan struct{}, 2)
	go func() { io.Copy(c, rw); done <- struct{}{} }()
	go func() { io.Copy(rw, c); done <- struct{}{} }()
	select {
	case <-done:
	case <-ctx.Done():
	}
	return nil
}

// serialHubs share each VM's serial line among its viewers: QEMU's socket
// chardev serves one client at a time (a second would wait, silent, until
// the first leaves), so one connection per VM is held while anyone views
// it; every viewer sees the output, and what any types goes to the guest.
type serialHubs struct {
	mu   sync.Mutex
	hubs map[string]*serialHub // socket path -> hub
}

type serialHub struct {
	conn    net.Conn
	mu      sync.Mutex // guards viewers; held while output is passed on
	viewers map[io.Writer]bool
	users   int // viewers, counted under serialHubs.mu
	gone    chan struct{}
}

// replayLines is how much of the console log a new viewer sees first: the
// screen it joins (a login prompt, the readiness line), as a terminal
// would show it.
const replayLines = 25

// attach joins t to the serial line at sock until t's input ends, the
// line closes (the VM stopped) or ctx ends. t first gets the end of the
// line's log (at log): as the output is held meanwhile, nothing is lost
// between the two, though the last bytes QEMU logged may come twice.
func (hs *serialHubs) attach(ctx context.Context, sock, log string, t io.ReadWriter) error {
	hs.mu.Lock()
	h := hs.hubs[sock]
	if h != nil && h.closed() {
		h = nil // the line closed; its last viewers are leaving
	}
	if h == nil {
		var dl net.Dialer
		dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		c, err := dl.DialContext(dctx, "unix", sock)
		cancel()
		if err != nil {
			hs.mu.Unlock()
			return fmt.Errorf("the VM's serial console: %w", err)
		}
		h = &serialHub{conn: c, viewers: map[io.Writer]bool{}, gone: make(chan struct{})}
		if hs.hubs == nil {
			hs.hubs = map[string]*serialHub{}
		}
		hs.hubs[sock] = h
		go h.broadcast()
	}
	h.users++
	hs.mu.Unlock()
	h.mu.Lock()
	if past, _ := local.Tail(log, replayLines); len(past) > 0 {
		t.Write(past)
	}
	h.viewers[t] = true
	h.mu.Unlock()
	defer func() {
		h.mu.Lock()
		delete(h.viewers, t)
		h.mu.Unlock()
		hs.mu.Lock()
		if h.users--; h.users == 0 {
			if hs.hubs[sock] == h {
				delete(hs.hubs, sock)
			}
			h.conn.Close()
		}
		hs.mu.Unlock()
	}()
	input := make(chan struct{})
	go func() {
		io.Copy(h.conn, t)
		close(input)
	}()
	select {
	case <-input:
	case <-h.gone:
	case <-ctx.Done():
	}
	return nil
}

func (h *serialHub) closed() bool {
	select {
	case <-h.gone:
		return true
	default:
		return false
	}
}

// broadcast passes the line's output to every viewer until it closes.
func (h *serialHub) broadcast() {
	defer close(h.gone)
	buf := make([]byte, 32<<10)
	for {
		n, err := h.conn.Read(buf)
		if n > 0 {
			h.mu.Lock()
			for v := range h.viewers {
				// A viewer whose writes fail (or take too long: the
				// agent's terminals bound them) sees no more.
				if _, err := v.Write(buf[:n]); err != nil {
					delete(h.viewers, v)
				}
			}
			h.mu.Unlock()
		}
		if err != nil {
			return
		}
	}
}
