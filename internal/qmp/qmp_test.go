package qmp

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// fakeQEMU answers like QEMU: a greeting, then one reply per command (an
// error for unknown ones); "stop" also emits a STOP event first.
func fakeQEMU(t *testing.T, nc net.Conn) {
	t.Helper()
	go func() {
		defer nc.Close()
		nc.Write([]byte(`{"QMP": {"version": {"qemu": {"micro": 2, "minor": 2, "major": 7}, "package": "Debian"}, "capabilities": ["oob"]}}` + "\n"))
		r := bufio.NewReader(nc)
		for {
			line, err := r.ReadBytes('\n')
			if err != nil {
				return
			}
			var req struct {
				Execute string `json:"execute"`
				ID      string `json:"id"`
			}
			json.Unmarshal(line, &req)
			id, _ := json.Marshal(req.ID)
			switch req.Execute {
			case "qmp_capabilities", "cont":
				nc.Write([]byte(`{"return": {}, "id": ` + string(id) + "}\n"))
			case "stop":
				nc.Write([]byte(`{"timestamp": {"seconds": 1, "microseconds": 2}, "event": "STOP"}` + "\n"))
				nc.Write([]byte(`{"return": {}, "id": ` + string(id) + "}\n"))
			case "query-status":
				nc.Write([]byte(`{"return": {"status": "paused", "running": false}, "id": ` + string(id) + "}\n"))
			case "quit":
				nc.Write([]byte(`{"return": {}, "id": ` + string(id) + "}\n"))
				return
			default:
				nc.Write([]byte(`{"error": {"class": "CommandNotFound", "desc": "The command ` + req.Execute + ` has not been found"}, "id": ` + string(id) + "}\n"))
			}
		}
	}()
}

func dialFake(t *testing.T) *Conn {
	a, b := net.Pipe()
	fakeQEMU(t, b)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := handshake(ctx, a)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestProtocol(t *testing.T) {
	c := dialFake(t)
	ctx := context.Background()
	if c.Version.Major != 7 || c.Version.Minor != 2 || c.Version.Package != "Debian" {
		t.Fatalf("version = %+v", c.Version)
	}
	if err := c.Execute(ctx, "stop", nil, nil); err != nil {
		t.Fatal(err)
	}
	if ev, err := c.WaitEvent(ctx, "STOP"); err != nil || ev.Timestamp.Seconds != 1 {
		t.Fatalf("STOP event: %+v %v", ev, err)
	}
	st, err := c.QueryStatus(ctx)
	if err != nil || st.Running || st.Status != "paused" {
		t.Fatalf("status = %+v, %v", st, err)
	}
	var qe *Error
	if err := c.Execute(ctx, "no-such", nil, nil); !errors.As(err, &qe) || qe.Class != "CommandNotFound" {
		t.Fatalf("unknown command: %v", err)
	}
	// A deadline of one call must not outlive it.
	short, cancelShort := context.WithTimeout(ctx, 30*time.Millisecond)
	if err := c.Execute(short, "cont", nil, nil); err != nil {
		t.Fatal(err)
	}
	cancelShort()
	time.Sleep(50 * time.Millisecond)
	if err := c.Execute(ctx, "cont", nil, nil); err != nil {
		t.Fatalf("a call after an earlier call's deadline passed: %v", err)
	}
	if err := c.Execute(ctx, "quit", nil, nil); err != nil {
		t.Fatal(err)
	}
	select {
	case <-c.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("connection not done after quit")
	}
	if err := c.Execute(ctx, "cont", nil, nil); err == nil {
		t.Fatal("command on a closed connection succeeded")
	}
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if _, err := c.WaitEvent(short, "RESUME"); err == nil {
		t.Fatal("WaitEvent on a closed connection succeeded")
	}
}

func TestNotQMP(t *testing.T) {
	a, b := net.Pipe()
	go func() { b.Write([]byte("SSH-2.0-OpenSSH\n")); b.Close() }()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := handshake(ctx, a); err == nil {
		t.Fatal("handshake with a non-QMP peer succeeded")
	}
}

// TestRealQEMU talks to a real qemu-system-x86_64 (no guest: -machine none).
func TestRealQEMU(t *testing.T) {
	bin, err := exec.LookPath("qemu-system-x86_64")
	if err != nil {
		t.Skip("qemu-system-x86_64 is not installed (make test installs it)")
	}
	sock := filepath.Join(t.TempDir(), "qmp.sock")
	cmd := exec.Command(bin, "-machine", "none", "-nodefaults", "-display", "none", "-S", "-qmp", "unix:"+sock+",server=on,wait=off")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var c *Conn
	for c == nil {
		if c, err = Dial(ctx, sock); err != nil {
			if ctx.Err() != nil {
				t.Fatalf("dial: %v", err)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	defer c.Close()
	if c.Version.Major < 5 {
		t.Fatalf("version %+v", c.Version)
	}
	st, err := c.QueryStatus(ctx)
	if err != nil || st.Status != "prelaunch" {
		t.Fatalf("status %+v %v", st, err)
	}
	// A file descriptor travels with a command; without one QEMU refuses.
	if err := c.Execute(ctx, "getfd", map[string]any{"fdname": "probe"}, nil); err == nil {
		t.Fatal("getfd without a descriptor succeeded")
	}
	f, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := c.ExecuteWithFile(ctx, "getfd", map[string]any{"fdname": "probe"}, nil, f); err != nil {
		t.Fatalf("getfd with a descriptor: %v", err)
	}
	if err := c.Execute(ctx, "closefd", map[string]any{"fdname": "probe"}, nil); err != nil {
		t.Fatalf("closefd of the descriptor QEMU got: %v", err)
	}
	if err := c.Execute(ctx, "quit", nil, nil); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("qemu exit: %v", err)
	}
}
