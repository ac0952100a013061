package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"

	"github.com/coder/websocket"

	"github.com/kumocloud/kumo/api"
)

// Console is an open console of an instance (the WebSocket protocol of
// docs/rest-api.md): Read gives what the console prints (or RFB from a
// VM's display) and ends with io.EOF when the console ends; Write sends
// input; Resize tells a shell the terminal's size. After the end,
// ExitCode tells a shell's exit status; a console the server ended with
// an error makes Read return that error.
type Console struct {
	ws      *websocket.Conn
	ctx     context.Context
	mu      sync.Mutex // guards exit and err
	exit    *int
	err     error
	pending []byte
	// left is set once this side closed the console: a Read cut short by
	// it has reached the end (io.EOF), however the close handshake went
	// (a peer slow to answer it leaves a read on a closed connection).
	left atomic.Bool
}

// maxConsoleMessage bounds one message from the server.
const maxConsoleMessage = 4 << 20

// InstanceConsole opens a console of a RUNNING instance: kind is
// api.ConsoleShell (a container's shell on a terminal), api.ConsoleSerial
// (a VM's serial line) or api.ConsoleVNC (a VM's display, as RFB); ""
// is the instance type's default (shell, serial). ctx bounds the whole
// console, not only its opening.
func (c *Client) InstanceConsole(ctx context.Context, project, name, kind string) (*Console, error) {
	q := url.Values{}
	if kind != "" {
		q.Set("kind", kind)
	}
	ws, err := c.websocket(ctx, p("v1", "projects", project, "instances", name, "console"), q)
	if err != nil {
		return nil, err
	}
	ws.SetReadLimit(maxConsoleMessage)
	return &Console{ws: ws, ctx: ctx}, nil
}

// AgentConsole is an agent's end of a console session (the server's part
// of the console protocol is the agent's).
func (c *Client) AgentConsole(ctx context.Context, id, sid string) (*websocket.Conn, error) {
	return c.websocket(ctx, p("v1", "agents", id, "sessions", sid, "stream"), nil)
}

// websocket opens a WebSocket to path with the client's credentials and
// transport; an error answer to the upgrade is *api.ErrorBody as usual.
func (c *Client) websocket(ctx context.Context, path string, q url.Values) (*websocket.Conn, error) {
	u := c.base + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	h := http.Header{}
	if c.token != "" {
		h.Set("Authorization", "Bearer "+c.token)
	}
	ws, resp, err := websocket.Dial(ctx, u, &websocket.DialOptions{HTTPClient: c.hc, HTTPHeader: h})
	if err != nil {
		if resp != nil && resp.StatusCode >= 400 {
			// The library keeps the answer's first KiB.
			return nil, errorAnswer(http.MethodGet, path, resp, 1024)
		}
		return nil, fmt.Errorf("cannot open the console: %w", err)
	}
	return ws, nil
}

// Read implements io.Reader.
func (k *Console) Read(p []byte) (int, error) {
	for len(k.pending) == 0 {
		typ, b, err := k.ws.Read(k.ctx)
		if err != nil {
			k.mu.Lock()
			defer k.mu.Unlock()
			switch {
			case k.err != nil:
				return 0, k.err
			case websocket.CloseStatus(err) == websocket.StatusNormalClosure, k.left.Load():
				return 0, io.EOF
			}
			return 0, fmt.Errorf("console: %w", err)
		}
		if typ == websocket.MessageBinary {
			k.pending = b
			continue
		}
		var m api.ConsoleMessage
		if json.Unmarshal(b, &m) != nil {
			continue
		}
		k.mu.Lock()
		switch m.Type {
		case api.ConsoleExit:
			k.exit = m.Code
		case api.ConsoleError:
			k.err = &api.ErrorBody{Code: "unavailable", Message: m.Message, Status: http.StatusServiceUnavailable}
		}
		k.mu.Unlock()
	}
	n := copy(p, k.pending)
	k.pending = k.pending[n:]
	return n, nil
}

// Write implements io.Writer: input to the console.
func (k *Console) Write(p []byte) (int, error) {
	if err := k.ws.Write(k.ctx, websocket.MessageBinary, p); err != nil {
		return 0, err
	}
	return len(p), nil
}

// Resize tells the console the terminal's size (shells resize to it).
func (k *Console) Resize(cols, rows int) error {
	b, _ := json.Marshal(api.ConsoleMessage{Type: api.ConsoleResize, Cols: cols, Rows: rows})
	return k.ws.Write(k.ctx, websocket.MessageText, b)
}

// ExitCode is the exit status of a shell that exited (ok false until
// then, and for consoles that do not exit).
func (k *Console) ExitCode() (code int, ok bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.exit == nil {
		return 0, false
	}
	return *k.exit, true
}

// Close leaves the console (a shell is hung up).
func (k *Console) Close() error {
	k.left.Store(true)
	err := k.ws.Close(websocket.StatusNormalClosure, "")
	if errors.Is(err, io.EOF) {
		return nil
	}
	return err
}
