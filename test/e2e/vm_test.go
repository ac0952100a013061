package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kumocloud/kumo/api"
	"github.com/kumocloud/kumo/client"
)

// ticks are the numbers the VM's counter printed on its console.
func ticks(t *testing.T, env []string, name string) []int {
	var out []int
	for _, l := range lines(must(t, env, "", "instance", "logs", name, "--tail", "1000")) {
		// The console is shared with the guest's shell: a tick may follow
		// a prompt on the same line.
		if i := strings.LastIndex(l, "tick "); i >= 0 {
			var v int
			if _, err := fmt.Sscanf(l[i:], "tick %d", &v); err == nil {
				out = append(out, v)
			}
		}
	}
	return out
}

// lastTick is the last number the counter printed (-1 for none).
func lastTick(t *testing.T, env []string, name string) int {
	n := ticks(t, env, name)
	if len(n) == 0 {
		return -1
	}
	return n[len(n)-1]
}

// TestVMs: real VMs (QEMU, TCG here) from tiny-vm built and imported
// through the CLI, next to a container on the same host: readiness, the
// serial console, suspend/resume, stop/start keeping the guest's memory
// (its counter goes on), an agent restart that leaves VMs running, and a
// terminate that leaves nothing.
func TestVMs(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("VMs' cgroups need root; CI runs as root")
	}
	if _, err := exec.LookPath("qemu-system-x86_64"); err != nil {
		t.Skip("qemu-system-x86_64 is not installed (make test installs it)")
	}
	s := startServer(t, "--drivers", "container,qemu")
	// VMs outlive their agent by design: a failed run must not leave any.
	t.Cleanup(func() { exec.Command("pkill", "-9", "-f", filepath.Join(s.dir, "agent", "qemu")).Run() })
	root := []string{"KUMO_SOCKET=" + s.socket}
	dir := t.TempDir()
	must(t, root, "", "image", "build", "tiny-vm", "-f", filepath.Join(dir, "tiny-vm.tar.gz"), "--import", "--public")
	// The agent joins once its KVM probe is done (up to 15 s), which a
	// warm tiny-vm cache may beat.
	eventually(t, 60*time.Second, "the host says it runs both kinds and which accel", func() (bool, string) {
		hosts := must(t, root, "", "host", "list", "-o", "json")
		return strings.Contains(hosts, `"ACCEL"`) && strings.Contains(hosts, `"ACCEL_REASON"`) && strings.Contains(hosts, `"vm"`) && strings.Contains(hosts, `"container"`), hosts
	})
	ud := filepath.Join(dir, "counter.sh")
	os.WriteFile(ud, []byte("#!/bin/sh\necho kumo-disk-marker | dd of=/dev/vda conv=notrunc 2>/dev/null; sync\n"+
		"(i=0; while :; do i=$((i+1)); echo \"tick $i\" >/dev/ttyS0; sleep 1; done) &\n"), 0o644)
	out := must(t, root, "", "instance", "create", "vm1", "--type", "vm", "--image", "tiny-vm", "--flavor", "tiny", "--user-data", ud, "--wait")
	if !strings.Contains(out, "state: RUNNING") {
		t.Fatalf("create: %s", out)
	}
	c := client.Socket(s.socket)
	eventually(t, 60*time.Second, "vm1 ready", func() (bool, string) {
		in, _ := instanceState(t, c, "default", "vm1")
		return in.Ready, fmt.Sprint(in.State, " ready=", in.Ready, " ", in.ReadyReason)
	})
	in, _ := instanceState(t, c, "default", "vm1")
	vmDir := filepath.Join(s.dir, "agent", "qemu", "instances", in.ID)
	pid := func() string {
		b, _ := os.ReadFile(filepath.Join(vmDir, "qemu.pid"))
		return strings.TrimSpace(string(b))
	}
	alive := func() bool { _, err := os.Stat("/proc/" + pid()); return pid() != "" && err == nil }
	if out := must(t, root, "", "instance", "logs", "vm1"); !strings.Contains(out, "kumo: ready (vm1)") {
		t.Fatalf("the console log lacks the readiness line with the hostname from the seed: %q", out)
	}
	// The serial console, interactive, through the API.
	if out := must(t, root, "\necho console-says-$(hostname)\n", "instance", "console", "vm1"); !strings.Contains(out, "console-says-vm1") {
		t.Errorf("console: %q", out)
	}
	// No guest agent: exec into a VM says so and what to use instead.
	if r := kumo(t, root, "", "instance", "exec", "vm1", "--", "true"); r.code != 1 || !strings.Contains(r.err, "use the console") {
		t.Errorf("exec into a VM: exit %d %s", r.code, r.err)
	}
	// A snapshot of the running VM's disk is an image; a VM made from it
	// finds on its disk what vm1 wrote there.
	out = must(t, root, "", "instance", "snapshot", "vm1", "--name", "vm1-snap", "-o", "json")
	if !strings.Contains(out, `"kind": "vm-kernel"`) || !strings.Contains(out, `"status": "active"`) {
		t.Fatalf("snapshot: %s", out)
	}
	if in, _ := instanceState(t, c, "default", "vm1"); in.State != "RUNNING" {
		t.Fatalf("vm1 is %s after its snapshot", in.State)
	}
	// The CLI waited for the operation that made it.
	ops, err := c.Operations(context.Background(), "default", client.ListOptions{})
	var snapOp api.Operation
	for _, op := range ops {
		if op.Kind == "instance.snapshot" && op.Resource == "/v1/projects/default/images/vm1-snap" {
			snapOp = op
		}
	}
	if err != nil || snapOp.Status != api.OpSucceeded || snapOp.Progress != 100 {
		t.Fatalf("the snapshot's operation: %+v %v (of %+v)", snapOp, err, ops)
	}
	reader := filepath.Join(dir, "reader.sh")
	os.WriteFile(reader, []byte("#!/bin/sh\necho \"found: $(head -c 16 /dev/vda)\" >/dev/ttyS0\n"+
		"echo \"swap-kib: $(awk 'NR==2 {print $3}' /proc/swaps)\" >/dev/ttyS0\n"), 0o644)
	// vm2's flavor has swap: a swap disk the guest uses.
	must(t, root, "", "flavor", "create", "swappy", "--vcpus", "1", "--memory", "256", "--disk", "1", "--swap", "64")
	must(t, root, "", "instance", "create", "vm2", "--type", "vm", "--image", "vm1-snap", "--flavor", "swappy", "--user-data", reader, "--wait")
	eventually(t, 60*time.Second, "vm2 reading vm1's disk and using its swap", func() (bool, string) {
		out := must(t, root, "", "instance", "logs", "vm2")
		return strings.Contains(out, "found: kumo-disk-marker") && strings.Contains(out, "swap-kib: 65") && !strings.Contains(out, "swap-kib: \n"), out
	})
	must(t, root, "", "instance", "terminate", "vm2", "--wait")
	if r := kumo(t, root, "", "instance", "snapshot", "vm1", "--name", "vm1-snap"); r.code != 1 || !strings.Contains(r.err, "already exists") {
		t.Errorf("a snapshot onto an existing image name: exit %d %s", r.code, r.err)
	}

	// A container on the same host, from the same server.
	img := filepath.Join(dir, "tiny-rootfs.tar.gz")
	must(t, root, "", "image", "build", "tiny-rootfs", "-f", img)
	must(t, root, "", "image", "import", img, "--name", "tiny")
	must(t, root, "", "instance", "create", "c1", "--type", "container", "--image", "tiny", "--flavor", "tiny", "--wait")
	if r := kumo(t, root, "", "instance", "snapshot", "c1", "--name", "c1-snap"); r.code != 1 || !strings.Contains(r.err, "snapshots are of VM disks") {
		t.Errorf("a snapshot of a container: exit %d %s", r.code, r.err)
	}
	if r := kumo(t, root, "", "image", "show", "c1-snap"); r.code != 1 {
		t.Error("a refused snapshot left an image")
	}

	for _, step := range []struct{ action, want string }{{"suspend", "SUSPENDED"}, {"resume", "RUNNING"}, {"reboot", "RUNNING"}} {
		if out := must(t, root, "", "instance", step.action, "vm1", "--wait"); !strings.Contains(out, step.want) {
			t.Fatalf("%s: %s", step.action, out)
		}
	}
	eventually(t, 60*time.Second, "the counter after the reboot", func() (bool, string) { n := lastTick(t, root, "vm1"); return n >= 2, fmt.Sprint(n) })

	// stop saves the VM's memory to disk and frees the host; start restores it.
	before := lastTick(t, root, "vm1")
	if out := must(t, root, "", "instance", "stop", "vm1", "--wait"); !strings.Contains(out, "STOPPED") {
		t.Fatalf("stop: %s", out)
	}
	if alive() {
		t.Fatal("QEMU still runs after stop")
	}
	if _, err := os.Stat(filepath.Join(vmDir, "state.bin")); err != nil {
		t.Fatalf("no saved state: %v", err)
	}
	time.Sleep(2 * time.Second)
	must(t, root, "", "instance", "start", "vm1", "--wait")
	eventually(t, 30*time.Second, "the counter going on", func() (bool, string) { n := lastTick(t, root, "vm1"); return n >= before+3, fmt.Sprint(n) })
	// Since the reboot (the last "tick 1") the count has no gap and no new
	// start: a restore that booted afresh would count from 1 again.
	n := ticks(t, root, "vm1")
	from := 0
	for i, v := range n {
		if v == 1 {
			from = i
		}
	}
	for i := from + 1; i < len(n); i++ {
		if n[i] != n[i-1]+1 {
			t.Fatalf("the counter jumped from %d to %d across stop/start (before stop: %d): %v", n[i-1], n[i], before, n[from:])
		}
	}
	if n[from] > before {
		t.Fatalf("the counter started again after stop/start (before stop it was at %d): %v", before, n[from:])
	}

	// kill -9 of the server and its agent: the VM runs on, and is re-adopted.
	pidBefore := pid()
	s.kill9()
	if !alive() {
		t.Fatal("the VM died with the agent")
	}
	s.start() // returns once the new agent has reconciled
	c = client.Socket(s.socket)
	in, _ = instanceState(t, c, "default", "vm1")
	if in.State != "RUNNING" || pid() != pidBefore {
		t.Fatalf("after the restart: %s, pid %s (before %s)", in.State, pid(), pidBefore)
	}
	must(t, root, "", "instance", "suspend", "vm1", "--wait") // QMP after re-adoption

	// The guest powers itself off: POWEROFF with the reason.
	must(t, root, "", "instance", "resume", "vm1", "--wait")
	must(t, root, "\npoweroff -f\n", "instance", "console", "vm1")
	eventually(t, 30*time.Second, "vm1 POWEROFF", func() (bool, string) {
		in, _ := instanceState(t, c, "default", "vm1")
		return in.State == "POWEROFF" && strings.Contains(in.Reason, "powered itself off"), string(in.State) + " " + in.Reason
	})

	must(t, root, "", "instance", "terminate", "vm1", "--wait")
	must(t, root, "", "instance", "terminate", "c1", "--wait")
	if _, err := os.Stat(vmDir); !os.IsNotExist(err) {
		t.Errorf("VM dir left after terminate: %v", err)
	}
	if out, _ := exec.Command("pgrep", "-f", vmDir).Output(); len(out) > 0 {
		t.Errorf("QEMU left: %s", out)
	}
	for _, c := range []string{"cpu,cpuacct", "memory", "pids"} {
		if _, err := os.Stat("/sys/fs/cgroup/" + c + "/kumo/" + in.ID); !os.IsNotExist(err) {
			t.Errorf("%s cgroup left after terminate", c)
		}
	}
	if _, err := os.Stat("/run/kumo/vm/" + in.ID); !os.IsNotExist(err) {
		t.Error("socket dir left after terminate")
	}
}
