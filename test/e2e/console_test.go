package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/creack/pty"

	"github.com/kumocloud/kumo/api"
	"github.com/kumocloud/kumo/internal/driver/drivertest"
)

// TestConsoleWebSocket: the console protocol as a browser or any
// WebSocket client speaks it, over HTTPS with a token, against a real
// container and a real VM: a container's shell on a real terminal (output,
// resizes that stty sees, the exit code, then a normal close), a VM's
// serial console, a VM's display as RFB, the CLI on the same protocol;
// and what is refused: another origin (403), another project's user
// (404), a bad kind (400), a malformed control message (1007).
func TestConsoleWebSocket(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("runc containers and VMs' cgroups need root; CI runs as root")
	}
	if _, err := exec.LookPath("qemu-system-x86_64"); err != nil {
		t.Skip("qemu-system-x86_64 is not installed (make test installs it)")
	}
	s := startServer(t, "--drivers", "container,qemu")
	t.Cleanup(func() { exec.Command("pkill", "-9", "-f", filepath.Join(s.dir, "agent", "qemu")).Run() })
	root := []string{"KUMO_SOCKET=" + s.socket}
	dir := t.TempDir()
	img := filepath.Join(dir, "tiny-rootfs.tar.gz")
	must(t, root, "", "image", "build", "tiny-rootfs", "-f", img)
	must(t, root, "", "image", "import", img, "--name", "tiny", "--public")
	must(t, root, "", "image", "build", "tiny-vm", "-f", filepath.Join(dir, "tiny-vm.tar.gz"), "--import", "--public")
	eventually(t, 60*time.Second, "the host runs VMs", func() (bool, string) {
		hosts := must(t, root, "", "host", "list", "-o", "json")
		return strings.Contains(hosts, `"vm"`) && strings.Contains(hosts, `"container"`), hosts
	})
	must(t, root, "", "instance", "create", "c1", "--type", "container", "--image", "tiny", "--flavor", "tiny", "--wait")
	must(t, root, "", "instance", "create", "vm1", "--type", "vm", "--image", "tiny-vm", "--flavor", "tiny", "--wait")
	must(t, root, "", "project", "create", "other", "--wait")
	must(t, root, "eve-password\n", "user", "create", "eve", "--password-stdin")
	must(t, root, "", "user", "grant", "eve", "--project", "other", "--role", "member")
	ctx := context.Background()
	adminTok := s.adminToken(t)
	eveTok, err := s.remote(t, "").Login(ctx, api.TokensPost{Username: "eve", Password: "eve-password"})
	if err != nil {
		t.Fatal(err)
	}
	self := "https://" + s.addr
	dial := func(token, path, origin string, subprotocols ...string) (*websocket.Conn, int) {
		t.Helper()
		h := http.Header{"Authorization": {"Bearer " + token}}
		if origin != "" {
			h.Set("Origin", origin)
		}
		// The CA pinning is the client's, tested elsewhere; this is a bare
		// WebSocket client.
		hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
		ws, resp, err := websocket.Dial(ctx, self+path, &websocket.DialOptions{HTTPClient: hc, HTTPHeader: h, Subprotocols: subprotocols})
		if err != nil {
			if resp == nil {
				t.Fatalf("dial %s: %v", path, err)
			}
			return nil, resp.StatusCode
		}
		return ws, http.StatusSwitchingProtocols
	}
	c1 := "/v1/projects/default/instances/c1/console"

	// Refused before any upgrade.
	for _, c := range []struct {
		token, path, origin string
		want                int
	}{
		{adminTok, c1, "https://evil.example", 403},
		{adminTok, c1, "http://" + s.addr, 403}, // the scheme is part of the origin
		{adminTok, c1 + "?kind=vnc", self, 400},
		{adminTok, c1 + "?kind=bogus", "", 400},
		{eveTok.Secret, c1, self, 404},
		{"", c1, self, 401},
	} {
		if ws, code := dial(c.token, c.path, c.origin); code != c.want {
			if ws != nil {
				ws.CloseNow()
			}
			t.Errorf("console %s from origin %q: %d, want %d", c.path, c.origin, code, c.want)
		}
	}

	// A container's shell, from the server's own origin.
	ws, code := dial(adminTok, c1, self)
	if ws == nil {
		t.Fatalf("the console from the server's own origin: %d", code)
	}
	shell := readConsole(ctx, ws)
	resize := func(cols, rows int) {
		t.Helper()
		b, _ := json.Marshal(map[string]any{"type": "resize", "cols": cols, "rows": rows})
		if err := ws.Write(ctx, websocket.MessageText, b); err != nil {
			t.Fatal(err)
		}
	}
	typ := func(s string) {
		t.Helper()
		if err := ws.Write(ctx, websocket.MessageBinary, []byte(s)); err != nil {
			t.Fatal(err)
		}
	}
	resize(90, 33)
	typ("echo hello-$((6*7)); stty size\n")
	at := shell.waitFor(t, 0, "hello-42")
	at = shell.waitFor(t, at, "33 90")
	resize(120, 40)
	typ("stty size\n")
	shell.waitFor(t, at, "40 120")
	typ("exit 5\n")
	if m, status := shell.end(t); m.Type != api.ConsoleExit || m.Code == nil || *m.Code != 5 || status != websocket.StatusNormalClosure {
		t.Fatalf("after exit 5: %+v, close %v; want an exit message with code 5, then 1000", m, status)
	}

	// A malformed control message ends the console (1007).
	ws, _ = dial(adminTok, c1, "")
	bad := readConsole(ctx, ws)
	ws.Write(ctx, websocket.MessageText, []byte(`{"type":"resize","cols":0,"rows":24}`))
	if _, status := bad.end(t); status != websocket.StatusInvalidFramePayloadData {
		t.Errorf("a resize to 0 columns: close %v, want 1007", status)
	}

	// The CLI speaks the same protocol; it exits with the shell's status.
	if r := kumo(t, root, "echo cli-$((1+1))\nexit 3\n", "instance", "console", "c1"); r.code != 3 || !strings.Contains(r.out, "cli-2") {
		t.Errorf("kumo instance console: exit %d, output %q %q; want 3 and cli-2", r.code, r.out, r.err)
	}

	// On a terminal: raw, the terminal's size and its changes (SIGWINCH)
	// reach the shell, and "~." detaches.
	cliOnTerminal(t, root, "c1")

	// A VM's serial console (its default).
	eventually(t, 60*time.Second, "vm1 ready", func() (bool, string) {
		in, _ := instanceState(t, s.remote(t, adminTok), "default", "vm1")
		return in.Ready, fmt.Sprint(in.State, " ", in.ReadyReason)
	})
	ws, code = dial(adminTok, "/v1/projects/default/instances/vm1/console", self)
	if ws == nil {
		t.Fatalf("vm1's serial console: %d", code)
	}
	serial := readConsole(ctx, ws)
	// A new viewer sees the screen it joins: the guest's readiness line.
	at = serial.waitFor(t, 0, "kumo: ready (vm1)")
	ws.Write(ctx, websocket.MessageBinary, []byte("\necho serial-$((6*7)) $(hostname)\n"))
	serial.waitFor(t, at, "serial-42 vm1")
	ws.Close(websocket.StatusNormalClosure, "")

	// Its display: RFB through the WebSocket, as noVNC gets it.
	ws, code = dial(adminTok, "/v1/projects/default/instances/vm1/console?kind=vnc", self, "binary")
	if ws == nil {
		t.Fatalf("vm1's display: %d", code)
	}
	if ws.Subprotocol() != "binary" {
		t.Errorf("subprotocol %q, want binary", ws.Subprotocol())
	}
	rctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	defer cancel()
	f, err := drivertest.RFBFrame(websocket.NetConn(rctx, ws, websocket.MessageBinary))
	if err != nil {
		t.Fatal(err)
	}
	if f.Width < 320 || f.Height < 200 || f.Lit() == 0 {
		t.Errorf("vm1's display %dx%d with %d lit pixels, want a screen with something on it", f.Width, f.Height, f.Lit())
	}
	ws.Close(websocket.StatusNormalClosure, "")
	cliVNC(t, root, "vm1")
	must(t, root, "", "instance", "terminate", "vm1", "c1", "--wait")
}

// console collects what a console WebSocket receives.
type console struct {
	mu     sync.Mutex
	out    bytes.Buffer
	texts  []api.ConsoleMessage
	status websocket.StatusCode
	done   chan struct{}
}

func readConsole(ctx context.Context, ws *websocket.Conn) *console {
	c := &console{done: make(chan struct{})}
	go func() {
		defer close(c.done)
		for {
			typ, b, err := ws.Read(ctx)
			c.mu.Lock()
			if err != nil {
				c.status = websocket.CloseStatus(err)
				c.mu.Unlock()
				return
			}
			if typ == websocket.MessageBinary {
				c.out.Write(b)
			} else {
				var m api.ConsoleMessage
				json.Unmarshal(b, &m)
				c.texts = append(c.texts, m)
			}
			c.mu.Unlock()
		}
	}()
	return c
}

// waitFor waits until the output after offset holds want and returns the
// offset past it.
func (c *console) waitFor(t *testing.T, offset int, want string) int {
	t.Helper()
	var at int
	eventually(t, 60*time.Second, fmt.Sprintf("%q on the console", want), func() (bool, string) {
		c.mu.Lock()
		defer c.mu.Unlock()
		out := c.out.String()[offset:]
		i := strings.Index(out, want)
		at = offset + i + len(want)
		return i >= 0, out
	})
	return at
}

// end waits for the console to close: its last control message and the
// close status.
func (c *console) end(t *testing.T) (api.ConsoleMessage, websocket.StatusCode) {
	t.Helper()
	select {
	case <-c.done:
	case <-time.After(60 * time.Second):
		t.Fatal("the console did not close")
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	var last api.ConsoleMessage
	if len(c.texts) > 0 {
		last = c.texts[len(c.texts)-1]
	}
	return last, c.status
}

// cliOnTerminal runs kumo instance console on a terminal (a pty of the
// test's) as a person would.
func cliOnTerminal(t *testing.T, env []string, name string) {
	t.Helper()
	cmd := exec.Command(kumoBin, "instance", "console", name)
	cmd.Env = append(os.Environ(), env...)
	ptmx, err := pty.StartWithSize(cmd, &pty.Winsize{Cols: 100, Rows: 37})
	if err != nil {
		t.Fatal(err)
	}
	defer ptmx.Close()
	var mu sync.Mutex
	var out bytes.Buffer
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := ptmx.Read(buf)
			mu.Lock()
			out.Write(buf[:n])
			mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	at := 0
	waitFor := func(want string) {
		t.Helper()
		eventually(t, 60*time.Second, fmt.Sprintf("%q on the CLI's terminal", want), func() (bool, string) {
			mu.Lock()
			defer mu.Unlock()
			i := strings.Index(out.String()[at:], want)
			if i >= 0 {
				at += i + len(want)
			}
			return i >= 0, out.String()[at:]
		})
	}
	waitFor("detaches")
	ptmx.Write([]byte("stty size\r")) // typed ahead of the shell's prompt
	waitFor("37 100")
	pty.Setsize(ptmx, &pty.Winsize{Cols: 70, Rows: 20})
	// The new size reaches the shell shortly after SIGWINCH: ask until it
	// answers with it.
	eventually(t, 60*time.Second, "the shell to see the new size", func() (bool, string) {
		ptmx.Write([]byte("stty size\r"))
		time.Sleep(200 * time.Millisecond)
		mu.Lock()
		defer mu.Unlock()
		return strings.Contains(out.String()[at:], "20 70"), out.String()[at:]
	})
	ptmx.Write([]byte("\r~."))
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("kumo instance console after ~.: %v, want exit 0", err)
		}
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		t.Fatal("~. did not detach")
	}
	waitFor("Detached")
}

// cliVNC: kumo instance console --kind vnc --listen bridges the display
// to a local VNC viewer (RFBFrame here), until interrupted.
func cliVNC(t *testing.T, env []string, name string) {
	t.Helper()
	if r := kumo(t, env, "", "instance", "console", name, "--kind", "vnc", "--listen", "0.0.0.0:0"); r.code != 2 || !strings.Contains(r.err, "loopback") {
		t.Errorf("a VNC bridge on every address: exit %d %s, want a usage error", r.code, r.err)
	}
	cmd := exec.Command(kumoBin, "instance", "console", name, "--kind", "vnc", "--listen", "127.0.0.1:0")
	cmd.Env = append(os.Environ(), env...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	line, err := bufio.NewReader(stdout).ReadString('\n')
	_, rest, ok := strings.Cut(line, " at ")
	addr, _, _ := strings.Cut(rest, " ")
	if err != nil || !ok {
		t.Fatalf("the VNC bridge said %q, %v", line, err)
	}
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(90 * time.Second))
	if f, err := drivertest.RFBFrame(conn); err != nil || f.Lit() == 0 {
		t.Fatalf("a VNC viewer through the CLI: %v, %d lit pixels", err, f.Lit())
	}
	cmd.Process.Signal(os.Interrupt)
	if err := cmd.Wait(); err != nil {
		t.Errorf("the VNC bridge after Ctrl-C: %v, want exit 0", err)
	}
}
