// Package e2e drives a real 'kumo server' process, built from this tree,
// through the CLI binary and the Go client - as a user would.
package e2e

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/kumocloud/kumo/api"
	"github.com/kumocloud/kumo/client"
	"github.com/kumocloud/kumo/internal/driver/local"
)

var kumoBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "kumo-e2e-bin")
	if err != nil {
		panic(err)
	}
	kumoBin = filepath.Join(dir, "kumo")
	build := exec.Command("go", "build", "-o", kumoBin, "../../cmd/kumo")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building kumo:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// server is one running 'kumo server' process.
type server struct {
	t             *testing.T
	dir, socket   string
	addr          string
	cmd           *exec.Cmd
	out           *lockedBuffer
	AdminPassword string
	Fingerprint   string
	extraArgs     []string
	// netns, when set, is the network namespace the server (and so its
	// agent and datapath) runs in.
	netns string
	// agentCannotJoin: the next start's local agent is not expected to
	// join (its credential was taken away): start waits for the socket only.
	agentCannotJoin bool
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func freeAddr(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// startServer starts a server with its data in a new temp dir.
func startServer(t *testing.T, extraArgs ...string) *server {
	return startServerIn(t, "", extraArgs...)
}

// startServerIn starts a server in a network namespace ("" for this
// process's own).
func startServerIn(t *testing.T, netns string, extraArgs ...string) *server {
	s := &server{t: t, dir: t.TempDir(), addr: freeAddr(t), extraArgs: extraArgs, netns: netns}
	s.socket = filepath.Join(s.dir, "kumo.sock")
	t.Cleanup(func() { removeInstances(filepath.Join(s.dir, "agent")) })
	s.start()
	t.Cleanup(s.stop)
	return s
}

var (
	passwordRE    = regexp.MustCompile(`password "([0-9a-f]+)"`)
	fingerprintRE = regexp.MustCompile(`CA fingerprint ([0-9a-f]{64})`)
)

// start (re)starts the process on the same data dir and waits until the
// socket answers /readyz.
func (s *server) start() {
	s.t.Helper()
	s.out = &lockedBuffer{}
	spawn := func() {
		args := append([]string{"server", "--data-dir", s.dir, "--listen", s.addr, "--socket", s.socket, "--log-level", "warn"}, s.extraArgs...)
		if s.netns != "" {
			args = append([]string{"--net=" + s.netns, kumoBin}, args...)
			s.cmd = exec.Command("nsenter", args...)
		} else {
			s.cmd = exec.Command(kumoBin, args...)
		}
		s.cmd.Stdout, s.cmd.Stderr = s.out, s.out
		if err := s.cmd.Start(); err != nil {
			s.t.Fatal(err)
		}
	}
	startedAt := time.Now()
	spawn()
	c := client.Socket(s.socket)
	deadline := time.Now().Add(60 * time.Second)
	for retries := 0; ; {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_, err := c.ServerInfo(ctx)
		cancel()
		if err == nil {
			break
		}
		// freeAddr's port was free when it looked, and another process
		// (an outgoing connection's ephemeral port) took it since: seen
		// in CI. The server exits; it starts again on another one (its
		// output, the first start's credentials in it, is kept).
		if retries < 3 && strings.Count(s.out.String(), "address already in use") > retries {
			s.cmd.Wait()
			retries++
			s.out.Write([]byte("harness: the listen address was taken; starting again on another\n"))
			s.addr = freeAddr(s.t)
			spawn()
			continue
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("server did not come up in 60 s: %v\n%s", err, s.out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	// A server with a local agent: its host must have joined, or the
	// test's first create may find no host (the agent joins a moment
	// after the socket answers; a qemu driver probes KVM first). After a
	// restart the host record says ONLINE from before the kill: what
	// counts is that this start's agent has reconciled (its heartbeat
	// says when).
	if slices.Contains(s.extraArgs, "--drivers") && !s.agentCannotJoin {
		deadline := time.Now().Add(3 * time.Minute) // the probe may fetch its kernel first
		for {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			hs, err := c.Hosts(ctx)
			cancel()
			if err == nil && len(hs) > 0 && hs[0].State == api.HostOnline && hs[0].ReconciledAt.After(startedAt) {
				break
			}
			if time.Now().After(deadline) {
				s.t.Fatalf("the server's local host did not join in 3 minutes: %v\n%s", err, s.out.String())
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	out := s.out.String()
	if m := passwordRE.FindStringSubmatch(out); m != nil {
		s.AdminPassword = m[1]
	}
	if m := fingerprintRE.FindStringSubmatch(out); m != nil {
		s.Fingerprint = m[1]
	}
}

// kill9 kills the server process with SIGKILL.
func (s *server) kill9() {
	s.cmd.Process.Signal(syscall.SIGKILL)
	s.cmd.Wait()
	s.cmd = nil
}

// stop sends SIGTERM and waits for a graceful exit.
func (s *server) stop() {
	if s.cmd == nil {
		return
	}
	s.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- s.cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			s.t.Errorf("server did not exit cleanly on SIGTERM: %v\n%s", err, s.out.String())
		}
	case <-time.After(30 * time.Second):
		s.cmd.Process.Kill()
		s.t.Errorf("server did not stop within 30 s of SIGTERM")
	}
	s.cmd = nil
}

func (s *server) url() string { return "https://" + s.addr }

// remote returns a client over HTTPS with the CA pinned.
func (s *server) remote(t *testing.T, token string) *client.Client {
	c, err := client.Remote(s.url(), token, s.Fingerprint)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// adminToken logs the bootstrap admin in over HTTPS.
func (s *server) adminToken(t *testing.T) string {
	tok, err := s.remote(t, "").Login(context.Background(), api.TokensPost{Username: "admin", Password: s.AdminPassword})
	if err != nil {
		t.Fatal(err)
	}
	return tok.Secret
}

// result of one CLI run.
type result struct {
	out, err string
	code     int
}

// kumo runs the CLI with env (KEY=VALUE...) and stdin.
func kumo(t *testing.T, env []string, stdin string, args ...string) result {
	t.Helper()
	cmd := exec.Command(kumoBin, args...)
	// Only what the test says: no KUMO_* from the caller's shell, no home
	// directory (kumo must be scriptable without one).
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "KUMO_") && !strings.HasPrefix(kv, "HOME=") && !strings.HasPrefix(kv, "XDG_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, env...)
	cmd.Stdin = strings.NewReader(stdin)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return result{o.String(), e.String(), code}
}

// must runs the CLI and fails the test unless it exits 0.
func must(t *testing.T, env []string, stdin string, args ...string) string {
	t.Helper()
	r := kumo(t, env, stdin, args...)
	if r.code != 0 {
		t.Fatalf("kumo %s: exit %d\n%s%s", strings.Join(args, " "), r.code, r.out, r.err)
	}
	return r.out
}

func lines(s string) []string {
	var out []string
	sc := bufio.NewScanner(strings.NewReader(s))
	for sc.Scan() {
		if l := strings.TrimSpace(sc.Text()); l != "" {
			out = append(out, l)
		}
	}
	return out
}

// removeInstances ends what an agent with its state in dir may have left
// when a test failed: instances outlive their agent by design, so
// containers, VMs, their mounts (rootfs overlays, namespaces) would stay
// on the machine.
func removeInstances(dir string) {
	runcRoot := filepath.Join(dir, "container", "runc")
	if out, err := exec.Command("runc", "--root", runcRoot, "list", "-q").Output(); err == nil {
		for _, id := range strings.Fields(string(out)) {
			exec.Command("runc", "--root", runcRoot, "delete", "--force", id).Run()
		}
	}
	exec.Command("pkill", "-9", "-f", filepath.Join(dir, "qemu")).Run()
	// A killed VM's cgroup stays (its agent would have removed it), empty
	// once the process is gone; runc removes a deleted container's.
	// The driver's own removal (it waits for a process still leaving).
	ids, _ := filepath.Glob(filepath.Join(dir, "qemu", "instances", "*"))
	for _, id := range ids {
		local.Cgroups{}.Remove(filepath.Base(id))
	}
	b, _ := os.ReadFile("/proc/self/mountinfo")
	var mounts []string
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) > 4 && strings.HasPrefix(f[4], dir+"/") {
			mounts = append(mounts, f[4])
		}
	}
	sort.Slice(mounts, func(i, j int) bool { return len(mounts[i]) > len(mounts[j]) })
	for _, m := range mounts {
		syscall.Unmount(m, syscall.MNT_DETACH)
	}
}
