package console

import (
	"context"
	"io"

	"github.com/coder/websocket"

	"github.com/kumocloud/kumo/internal/driver"
)

// Terminal is the agent's end of a console session as a
// driver.Terminal: Read gives the user's input (io.EOF once the user left),
// resizes arrive on Resizes as Read meets them, Write sends output. End
// says how the console ended and closes the connection.
type Terminal struct {
	c       *websocket.Conn
	ctx     context.Context
	cancel  context.CancelFunc
	resizes chan driver.WinSize
	pending []byte // the rest of the binary message being read
}

// NewTerminal takes over the agent's end of a session's WebSocket.
func NewTerminal(ctx context.Context, c *websocket.Conn) *Terminal {
	c.SetReadLimit(MaxMessage)
	ctx, cancel := context.WithCancel(ctx)
	t := &Terminal{c: c, ctx: ctx, cancel: cancel, resizes: make(chan driver.WinSize, 1)}
	go keepAlive(ctx, c)
	return t
}

// Read implements io.Reader: the user's input.
func (t *Terminal) Read(p []byte) (int, error) {
	for len(t.pending) == 0 {
		typ, b, err := t.c.Read(t.ctx)
		if err != nil {
			return 0, io.EOF // the user left, or the connection broke
		}
		if typ == websocket.MessageBinary {
			t.pending = b
			continue
		}
		m, err := ParseResize(b) // the server checked it; so does the agent
		if err != nil {
			continue
		}
		sz := driver.WinSize{Cols: uint16(m.Cols), Rows: uint16(m.Rows)}
		select { // keep the latest only
		case <-t.resizes:
		default:
		}
		t.resizes <- sz
	}
	n := copy(p, t.pending)
	t.pending = t.pending[n:]
	return n, nil
}

// Write implements io.Writer: the console's output, in one message.
func (t *Terminal) Write(p []byte) (int, error) {
	if err := write(t.ctx, t.c, websocket.MessageBinary, p); err != nil {
		return 0, err
	}
	return len(p), nil
}

// Resizes implements driver.Terminal.
func (t *Terminal) Resizes() <-chan driver.WinSize { return t.resizes }

// End tells the user how the console ended - an error, a shell's exit code,
// or simply its end (driver.NoExit) - and closes the connection.
func (t *Terminal) End(code int, err error) {
	defer t.cancel()
	switch {
	case err != nil:
		end(t.ctx, t.c, errorMessage(err.Error()))
	case code != driver.NoExit:
		end(t.ctx, t.c, exitMessage(code))
	default:
		t.c.Close(websocket.StatusNormalClosure, "")
	}
}
