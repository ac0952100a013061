// Package console is kumo's console protocol: an instance's console (a
// container's shell, a VM's serial line or display) over a WebSocket (RFC
// 6455), the same for browsers, the CLI and the agents' end.
//
// A user upgrades GET /v1/projects/{project}/instances/{name}/console
// (?kind=shell|serial|vnc). Binary messages carry the console's bytes both
// ways - a terminal's bytes for shell and serial, RFB for vnc (what noVNC
// speaks; the subprotocol "binary" is accepted when offered). Text
// messages carry one api.ConsoleMessage each: the user sends
// {"type":"resize","cols":N,"rows":N}; the server sends
// {"type":"exit","code":N} when a shell exits, then closes normally
// (1000), or {"type":"error","message":"..."} when the console cannot go
// on, then closes with 1011. A malformed message from the user closes the
// WebSocket with 1007, its reason naming what was wrong.
//
// The agent of the instance's host opens its own end of the session the
// same way (GET /v1/agents/{id}/sessions/{sid}/stream, upgraded): it
// speaks the server's part of the same messages, and the server relays
// them one by one, checking each (an agent is not trusted either).
//
// Cross-site WebSocket hijacking: a browser sends the page's Origin with
// the upgrade, and cookies ride along whatever the page; an upgrade whose
// Origin is not the server's own (scheme://host of the request) is
// refused 403 (CheckOrigin). Clients that are not browsers send none.
//
// The WebSocket library is github.com/coder/websocket (the successor of
// nhooyr.io/websocket): maintained, no dependencies, context-aware reads
// and writes (a stuck peer is cut off by a deadline, not a leaked
// goroutine), safe concurrent writes, and a Dial that takes the client's
// own http.Client - the kumo client's pinned-TLS and unix-socket transports
// work unchanged. gorilla/websocket, already an indirect dependency, has no
// contexts and allows one writer at a time, which a console (output, exit,
// pings) would have to lock around itself.
package console

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/coder/websocket"

	"github.com/kumocloud/kumo/api"
	"github.com/kumocloud/kumo/internal/errs"
)

// MaxMessage bounds one message (a paste into a terminal is one); the
// agent's writers send at most 32 KiB at a time.
const MaxMessage = 1 << 20

// WriteTimeout bounds how long a peer may take to accept a message before
// it is cut off.
const WriteTimeout = 30 * time.Second

// pingEvery keeps idle consoles open through proxies and finds peers gone
// without a word.
const pingEvery = 30 * time.Second

// IsUpgrade says whether r asks for a WebSocket.
func IsUpgrade(r *http.Request) bool {
	return headerHas(r.Header, "Connection", "upgrade") && headerHas(r.Header, "Upgrade", "websocket")
}

func headerHas(h http.Header, key, token string) bool {
	for _, v := range h.Values(key) {
		for t := range strings.SplitSeq(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), token) {
				return true
			}
		}
	}
	return false
}

// CheckOrigin refuses (403) an upgrade from a page of another origin: a
// request with an Origin header must name the server's own origin, the
// scheme and host the request came to.
func CheckOrigin(r *http.Request) error {
	origin := r.Header.Get("Origin")
	if origin == "" {
		return nil // not a browser
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	if !strings.EqualFold(origin, scheme+"://"+r.Host) {
		return errs.Forbidden("a console opens only from the server's own pages: Origin %q is not %s://%s", origin, scheme, r.Host)
	}
	return nil
}

// Accept upgrades an HTTP request (its origin checked by CheckOrigin) to
// a console WebSocket.
func Accept(w http.ResponseWriter, r *http.Request) (*websocket.Conn, error) {
	c, err := websocket.Accept(w, r, &websocket.AcceptOptions{
		InsecureSkipVerify: true, // CheckOrigin did, stricter (scheme too)
		Subprotocols:       []string{"binary"},
	})
	if err != nil {
		return nil, err
	}
	c.SetReadLimit(MaxMessage)
	return c, nil
}

// ParseResize reads a user's control message: only resizes are taken.
func ParseResize(b []byte) (api.ConsoleMessage, error) {
	var m api.ConsoleMessage
	if err := json.Unmarshal(b, &m); err != nil {
		return m, fmt.Errorf("a text message must be JSON: %v", err)
	}
	if m.Type != api.ConsoleResize {
		return m, fmt.Errorf("type %q: a client sends only resize", m.Type)
	}
	if m.Cols < 1 || m.Cols > api.MaxConsoleSize || m.Rows < 1 || m.Rows > api.MaxConsoleSize {
		return m, fmt.Errorf("resize cols and rows must be 1 to %d", api.MaxConsoleSize)
	}
	return api.ConsoleMessage{Type: api.ConsoleResize, Cols: m.Cols, Rows: m.Rows}, nil
}

// maxErrorMessage bounds an error message's text.
const maxErrorMessage = 1024

// parseEnd reads an agent's control message: a shell's exit or an error.
func parseEnd(b []byte) (api.ConsoleMessage, error) {
	var m api.ConsoleMessage
	if err := json.Unmarshal(b, &m); err != nil {
		return m, err
	}
	switch {
	case m.Type == api.ConsoleExit && m.Code != nil && *m.Code >= 0 && *m.Code <= 255:
		return api.ConsoleMessage{Type: m.Type, Code: m.Code}, nil
	case m.Type == api.ConsoleError:
		return errorMessage(m.Message), nil
	}
	return m, fmt.Errorf("agent sent %.100q", b)
}

// exitMessage and errorMessage are the server's end-of-console messages.
func exitMessage(code int) api.ConsoleMessage {
	return api.ConsoleMessage{Type: api.ConsoleExit, Code: &code}
}

func errorMessage(msg string) api.ConsoleMessage {
	msg = strings.ToValidUTF8(msg, "?")
	if len(msg) > maxErrorMessage {
		msg = strings.ToValidUTF8(msg[:maxErrorMessage], "")
	}
	return api.ConsoleMessage{Type: api.ConsoleError, Message: msg}
}

// send writes a control message.
func send(ctx context.Context, c *websocket.Conn, m api.ConsoleMessage) error {
	b, _ := json.Marshal(m)
	wctx, cancel := context.WithTimeout(ctx, WriteTimeout)
	defer cancel()
	return c.Write(wctx, websocket.MessageText, b)
}

// end sends the last message and closes: 1000 after an exit, 1011 after
// an error.
func end(ctx context.Context, c *websocket.Conn, m api.ConsoleMessage) {
	if send(ctx, c, m) != nil {
		c.CloseNow()
		return
	}
	if m.Type == api.ConsoleError {
		c.Close(websocket.StatusInternalError, "console error")
		return
	}
	c.Close(websocket.StatusNormalClosure, "")
}

// keepAlive pings c until ctx ends; a peer that does not answer within
// WriteTimeout is cut off.
func keepAlive(ctx context.Context, c *websocket.Conn) {
	t := time.NewTicker(pingEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			pctx, cancel := context.WithTimeout(ctx, WriteTimeout)
			err := c.Ping(pctx)
			cancel()
			if err != nil {
				c.CloseNow()
				return
			}
		}
	}
}
