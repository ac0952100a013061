package console

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/kumocloud/kumo/api"
	"github.com/kumocloud/kumo/internal/driver"
	"github.com/kumocloud/kumo/internal/errs"
)

func TestCheckOrigin(t *testing.T) {
	for _, c := range []struct {
		origin, host string
		tls          bool
		ok           bool
	}{
		{"", "kumo.example:8443", true, true}, // not a browser
		{"https://kumo.example:8443", "kumo.example:8443", true, true},
		{"HTTPS://Kumo.Example:8443", "kumo.example:8443", true, true},
		{"http://kumo", "kumo", false, true}, // the unix socket
		{"https://evil.example", "kumo.example:8443", true, false},
		{"https://kumo.example", "kumo.example:8443", true, false},       // another port
		{"http://kumo.example:8443", "kumo.example:8443", true, false},   // another scheme
		{"https://kumo.example:8443", "kumo.example:8443", false, false}, // plain HTTP request
		{"null", "kumo.example:8443", true, false},                       // a sandboxed page
		{"https://kumo.example:8443.evil.example", "kumo.example:8443", true, false},
	} {
		r := httptest.NewRequest("GET", "/v1/projects/p/instances/i/console", nil)
		r.Host = c.host
		if c.origin != "" {
			r.Header.Set("Origin", c.origin)
		}
		if c.tls {
			r.TLS = &tls.ConnectionState{}
		}
		err := CheckOrigin(r)
		if (err == nil) != c.ok || (err != nil && !errors.Is(err, errs.ErrForbidden)) {
			t.Errorf("Origin %q to %s (tls %v): %v, want ok=%v (else forbidden)", c.origin, c.host, c.tls, err, c.ok)
		}
	}
}

func TestParseResize(t *testing.T) {
	for in, want := range map[string]string{
		`{"type":"resize","cols":80,"rows":24}`:   "",
		`{"type":"resize","cols":1000,"rows":1}`:  "",
		`{"type":"resize","cols":0,"rows":24}`:    "1 to 1000",
		`{"type":"resize","cols":80,"rows":1001}`: "1 to 1000",
		`{"type":"resize","cols":-5,"rows":24}`:   "1 to 1000",
		`{"type":"exit","code":0}`:                "only resize",
		`{"type":"resize","cols":"80","rows":24}`: "JSON",
		`not json`: "JSON",
		`{"type":"resize","cols":80,"rows":24,"x":"<b>"}`: "",
	} {
		m, err := ParseResize([]byte(in))
		if want == "" && (err != nil || m.Type != api.ConsoleResize || m.Cols == 0) {
			t.Errorf("%s: %+v %v, want it taken", in, m, err)
		}
		if want != "" && (err == nil || !strings.Contains(err.Error(), want)) {
			t.Errorf("%s: %v, want an error saying %q", in, err, want)
		}
	}
}

// pair is a user's and an agent's WebSocket, relayed by Relay as the
// server does; the test holds the other ends.
func pair(t *testing.T) (user, agent *websocket.Conn) {
	agentSide := make(chan *websocket.Conn, 1)
	agentSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := Accept(w, r)
		if err != nil {
			return
		}
		agentSide <- c
	}))
	t.Cleanup(agentSrv.Close)
	ctx := context.Background()
	userSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := CheckOrigin(r); err != nil {
			http.Error(w, err.Error(), http.StatusForbidden)
			return
		}
		// The server's end towards the agent: the agent dials in reality.
		a, _, err := websocket.Dial(ctx, agentSrv.URL, nil)
		if err != nil {
			t.Error(err)
			return
		}
		u, err := Accept(w, r)
		if err != nil {
			return
		}
		Relay(context.WithoutCancel(r.Context()), u, a)
	}))
	t.Cleanup(userSrv.Close)
	user, _, err := websocket.Dial(ctx, userSrv.URL, nil)
	if err != nil {
		t.Fatal(err)
	}
	select {
	case agent = <-agentSide:
	case <-time.After(10 * time.Second):
		t.Fatal("no agent connection")
	}
	return user, agent
}

func read(t *testing.T, c *websocket.Conn) (websocket.MessageType, string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	typ, b, err := c.Read(ctx)
	return typ, string(b), err
}

// TestRelay: bytes pass both ways as they are; a resize reaches the agent's
// terminal; the shell's exit reaches the user, who is then closed normally.
func TestRelay(t *testing.T) {
	ctx := context.Background()
	user, agentWS := pair(t)
	term := NewTerminal(ctx, agentWS)
	user.Write(ctx, websocket.MessageText, []byte(`{"type":"resize","cols":132,"rows":43}`))
	user.Write(ctx, websocket.MessageBinary, []byte("ls\r"))
	buf := make([]byte, 16)
	n, err := term.Read(buf)
	if err != nil || string(buf[:n]) != "ls\r" {
		t.Fatalf("the agent read %q, %v", buf[:n], err)
	}
	select {
	case sz := <-term.Resizes():
		if sz != (driver.WinSize{Cols: 132, Rows: 43}) {
			t.Errorf("resize %+v", sz)
		}
	default:
		t.Error("the resize did not reach the agent's terminal")
	}
	term.Write([]byte("\x1b[1mbin\x1b[0m\r\n"))
	if typ, b, err := read(t, user); typ != websocket.MessageBinary || b != "\x1b[1mbin\x1b[0m\r\n" || err != nil {
		t.Fatalf("the user read %v %q %v", typ, b, err)
	}
	go term.End(3, nil)
	typ, b, err := read(t, user)
	var m api.ConsoleMessage
	json.Unmarshal([]byte(b), &m)
	if typ != websocket.MessageText || m.Type != "exit" || m.Code == nil || *m.Code != 3 || b != `{"type":"exit","code":3}` {
		t.Fatalf("the user got %v %q %v, want the exit message", typ, b, err)
	}
	if _, _, err := read(t, user); websocket.CloseStatus(err) != websocket.StatusNormalClosure {
		t.Fatalf("after the exit: %v, want a normal close", err)
	}
}

// TestRelayRefuses: a user's bad control message closes with 1007 and
// the agent's terminal sees the user leave; an agent that breaks the
// protocol or its connection leaves the user an error message and 1011.
func TestRelayRefuses(t *testing.T) {
	ctx := context.Background()
	user, agentWS := pair(t)
	term := NewTerminal(ctx, agentWS)
	user.Write(ctx, websocket.MessageText, []byte(`{"type":"resize","cols":99999,"rows":1}`))
	if _, _, err := read(t, user); websocket.CloseStatus(err) != websocket.StatusInvalidFramePayloadData || !strings.Contains(err.Error(), "1 to 1000") {
		t.Errorf("a resize too large: %v, want 1007 naming the bounds", err)
	}
	if _, err := term.Read(make([]byte, 8)); err == nil {
		t.Error("the agent's terminal did not see the user leave")
	}

	for name, agentDoes := range map[string]func(*websocket.Conn){
		"a bad message": func(a *websocket.Conn) {
			a.Write(ctx, websocket.MessageText, []byte(`{"type":"exit","code":"<script>"}`))
		},
		"a broken connection": func(a *websocket.Conn) { a.CloseNow() },
		"an error": func(a *websocket.Conn) {
			NewTerminal(ctx, a).End(driver.NoExit, errs.Conflict("container is stopped"))
		},
	} {
		user, agentWS := pair(t)
		agentDoes(agentWS)
		typ, b, err := read(t, user)
		var m api.ConsoleMessage
		json.Unmarshal([]byte(b), &m)
		if typ != websocket.MessageText || m.Type != "error" || m.Message == "" || err != nil {
			t.Errorf("%s: the user got %v %q %v, want an error message", name, typ, b, err)
		}
		if name == "an error" && m.Message != "container is stopped" {
			t.Errorf("the agent's error reached the user as %q", m.Message)
		}
		if _, _, err := read(t, user); websocket.CloseStatus(err) != websocket.StatusInternalError {
			t.Errorf("%s: then %v, want 1011", name, err)
		}
	}
}
