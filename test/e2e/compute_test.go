package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kumocloud/kumo/api"
	"github.com/kumocloud/kumo/client"
)

// agentProc is a 'kumo agent' process with the sim driver.
type agentProc struct {
	t        *testing.T
	stateDir string
	args     []string
	cmd      *exec.Cmd
	out      *lockedBuffer
}

func startAgent(t *testing.T, s *server, token string, hosts int) *agentProc {
	a := &agentProc{t: t, stateDir: t.TempDir()}
	a.args = []string{"agent", "--server", s.url(), "--join-token", token, "--driver", "sim", "--sim-hosts", fmt.Sprint(hosts),
		"--state-dir", a.stateDir, "--heartbeat", "500ms", "--name", "e2e-agent", "--log-level", "warn"}
	a.start()
	t.Cleanup(a.stop)
	return a
}

func (a *agentProc) start() {
	a.out = &lockedBuffer{}
	a.cmd = exec.Command(kumoBin, a.args...)
	a.cmd.Stdout, a.cmd.Stderr = a.out, a.out
	if err := a.cmd.Start(); err != nil {
		a.t.Fatal(err)
	}
}

func (a *agentProc) kill9() {
	a.cmd.Process.Signal(syscall.SIGKILL)
	a.cmd.Wait()
	a.cmd = nil
}

func (a *agentProc) stop() {
	if a.cmd != nil {
		a.cmd.Process.Signal(syscall.SIGTERM)
		a.cmd.Wait()
		a.cmd = nil
	}
}

// eventually polls cond every 100 ms for up to d.
//
// d is a floor of patience, not a verdict on speed: on a busy machine
// (CI runs on two shared cores) everything takes longer, so no wait is
// shorter than 90 s; a wait that succeeds returns at once anyway.
func eventually(t *testing.T, d time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	d = max(d, 90*time.Second)
	deadline := time.Now().Add(d)
	last := ""
	for time.Now().Before(deadline) {
		ok, state := cond()
		if ok {
			return
		}
		last = state
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("%s: not within %s (last: %s)", what, d, last)
}

func joinToken(t *testing.T, root []string) string {
	var tok api.JoinToken
	if err := json.Unmarshal([]byte(must(t, root, "", "host", "join-token", "create", "-o", "json")), &tok); err != nil || !strings.HasPrefix(tok.Token, "kumo-join.") {
		t.Fatalf("join token: %+v %v", tok, err)
	}
	return tok.Token
}

func instanceState(t *testing.T, c *client.Client, project, name string) (api.Instance, bool) {
	in, err := c.Instance(context.Background(), project, name)
	return in, err == nil
}

// TestComputeCLI: an agent process with simulated hosts joins; instances
// go through their lifecycle from the CLI; anti-affinity and requirements
// hold; a host that disappears takes its instances to UNKNOWN (not DONE)
// and back to RUNNING when it returns.
func TestComputeCLI(t *testing.T) {
	s := startServer(t, "--host-grace", "4s")
	root := []string{"KUMO_SOCKET=" + s.socket}
	c := client.Socket(s.socket)
	ag := startAgent(t, s, joinToken(t, root), 4)
	eventually(t, 30*time.Second, "4 hosts online", func() (bool, string) {
		out := kumo(t, root, "", "host", "list").out
		return strings.Count(out, "ONLINE") == 4, out
	})

	must(t, root, "", "instance", "create", "web-1", "--flavor", "small", "--image", "tiny", "--type", "container",
		"--requirements", `RACK = "r2"`, "--rank", "FREE_CPU", "--wait")
	in, _ := instanceState(t, c, "default", "web-1")
	if in.State != api.StateRunning || in.Host != "sim-0001" {
		t.Fatalf("web-1: %s on %s; want RUNNING on sim-0001 (the only RACK r2 host)", in.State, in.Host)
	}
	hist := must(t, root, "", "instance", "history", "web-1")
	for _, st := range []string{"PENDING", "PROLOG", "BOOT", "RUNNING", "scheduler", "agent:e2e-agent"} {
		if !strings.Contains(hist, st) {
			t.Errorf("history lacks %s:\n%s", st, hist)
		}
	}
	for _, step := range []struct{ action, want string }{
		{"suspend", "SUSPENDED"}, {"resume", "RUNNING"}, {"reboot", "RUNNING"}, {"stop", "STOPPED"},
		{"start", "RUNNING"}, {"poweroff", "POWEROFF"}, {"start", "RUNNING"},
	} {
		out := must(t, root, "", "instance", step.action, "web-1", "--wait")
		if !strings.Contains(out, step.want) {
			t.Fatalf("%s: %s, want %s", step.action, out, step.want)
		}
	}
	r := kumo(t, root, "", "instance", "resume", "web-1")
	if r.code != 1 || !strings.Contains(r.err, "it is RUNNING; allowed now: stop, suspend, poweroff, reboot, terminate") {
		t.Errorf("a wrong action: exit %d %s", r.code, r.err)
	}
	for _, bad := range []struct {
		args []string
		want string
	}{
		{[]string{"instance", "create", "x", "--image", "i", "--requirements", `RACK = "r1`}, "column 8"},
		{[]string{"instance", "create", "x", "--image", "i", "--flavor", "nope"}, `flavor "nope" not found`},
		{[]string{"instance", "create", "x", "--image", "i", "--server-group", "nope"}, `server group "nope" not found`},
		{[]string{"instance", "create", "x", "--image", "i", "--type", "lxc"}, "use vm or container"},
	} {
		if r := kumo(t, root, "", bad.args...); r.code != 1 || !strings.Contains(r.err, bad.want) {
			t.Errorf("kumo %v: exit %d %q, want %q", bad.args, r.code, r.err, bad.want)
		}
	}

	// Hard anti-affinity: four members on four hosts; the fifth waits with the reason.
	must(t, root, "", "server-group", "create", "db", "--policy", "anti-affinity")
	for i := 1; i <= 4; i++ {
		must(t, root, "", "instance", "create", fmt.Sprint("db-", i), "--image", "pg", "--flavor", "tiny", "--server-group", "db", "--wait")
	}
	r = kumo(t, root, "", "instance", "create", "db-5", "--image", "pg", "--flavor", "tiny", "--server-group", "db", "--wait")
	if r.code != 1 || !strings.Contains(r.err, "0/4 hosts: 4 anti-affinity: group default/db already there") {
		t.Errorf("fifth member: exit %d %s", r.code, r.err)
	}
	hostsUsed := map[string]bool{}
	for i := 1; i <= 4; i++ {
		in, _ := instanceState(t, c, "default", fmt.Sprint("db-", i))
		hostsUsed[in.Host] = true
	}
	if len(hostsUsed) != 4 {
		t.Errorf("anti-affinity members share hosts: %v", hostsUsed)
	}
	ex := must(t, root, "", "instance", "explain", "db-5")
	if !strings.Contains(ex, "anti-affinity") || strings.Count(ex, "false") != 4 {
		t.Errorf("explain:\n%s", ex)
	}
	// Capacity appears: terminating a member lets the fifth in.
	must(t, root, "", "instance", "terminate", "db-1", "--wait")
	eventually(t, 20*time.Second, "db-5 placed once db-1 is gone", func() (bool, string) {
		in, _ := instanceState(t, c, "default", "db-5")
		return in.State == api.StateRunning, string(in.State) + " " + in.Reason
	})
	if out := must(t, root, "", "instance", "list", "--all"); !strings.Contains(out, "DONE") {
		t.Errorf("instance list --all lacks the DONE one:\n%s", out)
	}
	p, _ := c.Project(context.Background(), "default")
	if p.Usage.Instances != 5 || p.Usage.VCPUs != 5 {
		t.Errorf("usage %+v, want 5 instances and vcpus (web-1, db-2..db-5)", p.Usage)
	}

	// The agent dies: its hosts go OFFLINE, their instances UNKNOWN - not
	// DONE, not rescheduled. It comes back: they return to RUNNING.
	ag.kill9()
	eventually(t, 30*time.Second, "web-1 UNKNOWN", func() (bool, string) {
		in, _ := instanceState(t, c, "default", "web-1")
		return in.State == api.StateUnknown, string(in.State)
	})
	if out := must(t, root, "", "host", "list"); strings.Count(out, "OFFLINE") != 4 {
		t.Errorf("hosts after the agent died:\n%s", out)
	}
	ag.start()
	eventually(t, 30*time.Second, "web-1 back to RUNNING", func() (bool, string) {
		in, _ := instanceState(t, c, "default", "web-1")
		return in.State == api.StateRunning && in.Host == "sim-0001", string(in.State)
	})
	eventually(t, 10*time.Second, "hosts online again", func() (bool, string) {
		out := kumo(t, root, "", "host", "list").out
		return strings.Count(out, "ONLINE") == 4, out
	})
	if !strings.Contains(must(t, root, "", "instance", "history", "web-1"), "UNKNOWN") {
		t.Error("history does not show the UNKNOWN spell")
	}
	// Disabled hosts take nothing new.
	must(t, root, "", "host", "disable", "sim-0000", "sim-0001", "sim-0002", "sim-0003")
	r = kumo(t, root, "", "instance", "create", "late", "--image", "i", "--flavor", "tiny", "--wait")
	if r.code != 1 || !strings.Contains(r.err, "0/4 hosts: 4 disabled") {
		t.Errorf("create with every host disabled: exit %d %s", r.code, r.err)
	}
	must(t, root, "", "host", "enable", "sim-0002")
	eventually(t, 20*time.Second, "late placed on the enabled host", func() (bool, string) {
		in, _ := instanceState(t, c, "default", "late")
		return in.State == api.StateRunning && in.Host == "sim-0002", string(in.State) + " " + in.Host
	})
	if _, err := os.Stat(filepath.Join(ag.stateDir, "agent.json")); err != nil {
		t.Errorf("agent credential not kept: %v", err)
	}
}
