package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kumocloud/kumo/client"
)

// TestContainers: real system containers (runc) from an imported tiny
// rootfs, through the CLI: lifecycle, user-data, no leftovers after
// terminate, and containers that outlive a kill -9 of the server and its
// agent, re-adopted on restart.
func TestContainers(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("runc containers need root; CI runs as root")
	}
	s := startServer(t, "--drivers", "container")
	root := []string{"KUMO_SOCKET=" + s.socket}
	dir := t.TempDir()
	img := filepath.Join(dir, "tiny-rootfs.tar.gz")
	must(t, root, "", "image", "build", "tiny-rootfs", "-f", img)
	must(t, root, "", "image", "import", img, "--name", "tiny", "--public")
	ud := filepath.Join(dir, "init.sh")
	os.WriteFile(ud, []byte("echo from-user-data > /root/hello\n"), 0o644)
	out := must(t, root, "", "instance", "create", "c1", "--type", "container", "--image", "tiny", "--flavor", "tiny", "--user-data", ud, "--wait")
	if !strings.Contains(out, "state: RUNNING") {
		t.Fatalf("create: %s", out)
	}
	c := client.Socket(s.socket)
	in, _ := instanceState(t, c, "default", "c1")
	if in.ImageSHA256 == "" {
		t.Error("the instance does not record its image's sha256")
	}
	agentDir := filepath.Join(s.dir, "agent", "container")
	instDir := filepath.Join(agentDir, "instances", in.ID)
	eventually(t, 15*time.Second, "user-data ran", func() (bool, string) {
		b, _ := os.ReadFile(filepath.Join(instDir, "rootfs/root/hello"))
		return strings.TrimSpace(string(b)) == "from-user-data", string(b)
	})
	if b, _ := os.ReadFile(filepath.Join(instDir, "rootfs/etc/hostname")); strings.TrimSpace(string(b)) != "c1" {
		t.Errorf("hostname %q", b)
	}
	runc := func(args ...string) string {
		out, _ := exec.Command("runc", append([]string{"--root", filepath.Join(agentDir, "runc")}, args...)...).CombinedOutput()
		return string(out)
	}
	for _, step := range []struct{ action, want, runc string }{
		{"suspend", "SUSPENDED", `"status": "paused"`}, {"resume", "RUNNING", `"status": "running"`},
		{"stop", "STOPPED", "does not exist"}, {"start", "RUNNING", `"status": "running"`},
		{"poweroff", "POWEROFF", "does not exist"}, {"start", "RUNNING", `"status": "running"`},
	} {
		if out := must(t, root, "", "instance", step.action, "c1", "--wait"); !strings.Contains(out, step.want) {
			t.Fatalf("%s: %s", step.action, out)
		}
		if st := runc("state", in.ID); !strings.Contains(st, step.runc) {
			t.Fatalf("after %s runc says %s", step.action, st)
		}
	}
	// exec and logs go through the API to the host's agent.
	if out := must(t, root, "", "instance", "exec", "c1", "--", "cat", "/etc/hostname"); strings.TrimSpace(out) != "c1" {
		t.Errorf("exec hostname: %q", out)
	}
	if out := must(t, root, "", "instance", "exec", "c1", "--", "ps"); !strings.Contains(out, "/sbin/init") {
		t.Errorf("exec ps: %q", out)
	}
	if r := kumo(t, root, "", "instance", "exec", "c1", "--", "sh", "-c", "echo oops; exit 3"); r.code != 3 || strings.TrimSpace(r.out) != "oops" {
		t.Errorf("exec exit status: %d %q %q", r.code, r.out, r.err)
	}
	// An interactive shell through the API (the console).
	if out := must(t, root, "echo console-says-$(hostname)\nexit\n", "instance", "console", "c1"); !strings.Contains(out, "console-says-c1") {
		t.Errorf("console: %q", out)
	}
	if out := must(t, root, "", "instance", "logs", "c1"); !strings.Contains(out, "kumo: ready") {
		t.Errorf("logs: %q", out)
	}
	// CPU time read from the container's cgroup reaches the API.
	eventually(t, 20*time.Second, "usage reported", func() (bool, string) {
		in, _ := instanceState(t, c, "default", "c1")
		return in.Usage != nil && in.Usage.CPUSeconds > 0, fmt.Sprint(in.Usage)
	})
	// The file written by user-data survived stop/start (the upper layer is kept).
	if b, _ := os.ReadFile(filepath.Join(instDir, "rootfs/root/hello")); strings.TrimSpace(string(b)) != "from-user-data" {
		t.Error("the container's filesystem was lost across stop/start")
	}

	// kill -9 of the server (and so of its agent): the container runs on.
	pidBefore := runc("state", in.ID)
	s.kill9()
	if st := runc("state", in.ID); !strings.Contains(st, `"status": "running"`) {
		t.Fatalf("the container died with the agent: %s", st)
	}
	s.start() // returns once the new agent has reconciled
	c = client.Socket(s.socket)
	in, _ = instanceState(t, c, "default", "c1")
	if in.State != "RUNNING" || runc("state", in.ID) != pidBefore {
		t.Errorf("after the restart: %s; runc %s (before %s)", in.State, runc("state", in.ID), pidBefore)
	}

	must(t, root, "", "instance", "terminate", "c1", "--wait")
	if out := runc("list", "-q"); strings.TrimSpace(out) != "" {
		t.Errorf("runc containers left: %s", out)
	}
	if mi, _ := os.ReadFile("/proc/self/mountinfo"); strings.Contains(string(mi), s.dir) {
		t.Error("mounts left after terminate")
	}
	if _, err := os.Stat(instDir); !os.IsNotExist(err) {
		t.Errorf("instance dir left: %v", err)
	}
	if _, err := os.Stat("/sys/fs/cgroup/memory/kumo/" + in.ID); !os.IsNotExist(err) {
		t.Error("memory cgroup left after terminate")
	}
	// A container from an image with no bytes fails with the reason.
	r := kumo(t, root, "", "instance", "create", "c2", "--type", "container", "--image", "nope", "--flavor", "tiny", "--wait")
	if r.code != 1 || !strings.Contains(r.err, "FAILED") || !strings.Contains(r.err, "no bytes in the image service") {
		t.Errorf("an unknown image: exit %d %s", r.code, r.err)
	}
}

// TestContainerInitExits: a container whose init ends leaves RUNNING for
// POWEROFF with the reason, and starts again.
func TestContainerInitExits(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("runc containers need root; CI runs as root")
	}
	s := startServer(t, "--drivers", "container")
	root := []string{"KUMO_SOCKET=" + s.socket}
	img := filepath.Join(t.TempDir(), "tiny.tar.gz")
	must(t, root, "", "image", "build", "tiny-rootfs", "-f", img)
	must(t, root, "", "image", "import", img, "--name", "tiny")
	must(t, root, "", "instance", "create", "c1", "--type", "container", "--image", "tiny", "--flavor", "tiny", "--wait")
	c := client.Socket(s.socket)
	in, _ := instanceState(t, c, "default", "c1")
	// PID 1 dies (as if it crashed).
	out, err := exec.Command("runc", "--root", filepath.Join(s.dir, "agent", "container", "runc"), "kill", in.ID, "KILL").CombinedOutput()
	if err != nil {
		t.Fatalf("runc kill: %v %s", err, out)
	}
	eventually(t, 20*time.Second, "c1 POWEROFF", func() (bool, string) {
		in, _ := instanceState(t, c, "default", "c1")
		return in.State == "POWEROFF" && strings.Contains(in.Reason, "PID 1 exited"), string(in.State) + " " + in.Reason
	})
	must(t, root, "", "instance", "terminate", "c1", "--wait")
}
