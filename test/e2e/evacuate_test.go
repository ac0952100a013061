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
)

// evacVMScript counts on the VM's console: a count that goes on after a
// move (instead of starting again at 1) is memory kept.
const evacVMScript = `#!/bin/sh
(i=0; while :; do i=$((i+1)); echo "tick $i tock" >/dev/ttyS0; sleep 1; done) &
`

// TestEvacuateHost: a host running three real VMs (QEMU, TCG) and two
// real containers (runc) is evacuated onto a second host, each host an
// agent of both drivers in a network namespace of its own. The VMs move
// live (their counters go on from where they were), the containers cold
// (a file written in each one's root filesystem is there after), the
// evacuated host ends disabled and empty, and nothing of the instances is
// left on it: no QEMU, no runc container, no instance directory.
func TestEvacuateHost(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("hosts in namespaces, VMs and containers need root; CI runs as root")
	}
	for _, bin := range []string{"qemu-system-x86_64", "runc"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Skipf("%s is not installed (scripts/deps.sh installs it)", bin)
		}
	}
	lh := startLinkedHosts(t, 2, "--host-grace", "5s")
	s, root, c := lh.s, lh.root, lh.c
	ctx := context.Background()
	dirs := map[string]string{}
	var agents []*netAgent
	startHost := func(i int) {
		name := fmt.Sprintf("ev%d", i)
		a := lh.startAgent(i, name, "--driver", "container,qemu", "--qemu-accel", "tcg", "--fence-grace", "0")
		dirs[name] = a.stateDir
		agents = append(agents, a)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Log(s.out.String())
			for _, a := range agents {
				t.Log(a.out.String())
			}
		}
	})
	startHost(1)
	dir := t.TempDir()
	must(t, root, "", "image", "build", "tiny-vm", "-f", filepath.Join(dir, "tiny-vm.tar.gz"), "--import", "--public")
	must(t, root, "", "image", "build", "tiny-rootfs", "-f", filepath.Join(dir, "tiny-rootfs.tar.gz"))
	must(t, root, "", "image", "import", filepath.Join(dir, "tiny-rootfs.tar.gz"), "--name", "tiny", "--public")
	ud := filepath.Join(dir, "count.sh")
	os.WriteFile(ud, []byte(evacVMScript), 0o644)
	vms, cts := []string{"vm1", "vm2", "vm3"}, []string{"ct1", "ct2"}
	for _, n := range vms {
		must(t, root, "", "instance", "create", n, "--type", "vm", "--image", "tiny-vm", "--flavor", "tiny", "--user-data", ud)
	}
	for _, n := range cts {
		must(t, root, "", "instance", "create", n, "--type", "container", "--image", "tiny", "--flavor", "tiny")
	}
	for _, n := range append(append([]string{}, vms...), cts...) {
		eventually(t, 240*time.Second, n+" RUNNING on ev1", func() (bool, string) {
			in, _ := instanceState(t, c, "default", n)
			return in.State == api.StateRunning && in.Host == "ev1", fmt.Sprint(in.State, " on ", in.Host)
		})
	}
	for _, n := range vms {
		eventually(t, 240*time.Second, n+" counting", func() (bool, string) {
			return lastTick(t, root, n) >= 2, fmt.Sprint(ticks(t, root, n))
		})
	}
	for _, n := range cts {
		must(t, root, "", "instance", "exec", n, "--", "sh", "-c", "echo kept-"+n+" > /root/kept && sync")
	}

	startHost(2)
	must(t, root, "", "host", "evacuate", "ev1")
	for _, n := range append(append([]string{}, vms...), cts...) {
		eventually(t, 180*time.Second, n+" RUNNING on ev2", func() (bool, string) {
			in, _ := instanceState(t, c, "default", n)
			return in.State == api.StateRunning && in.Host == "ev2" && in.Migration == nil, fmt.Sprint(in.State, " on ", in.Host, " ", in.Migration)
		})
	}
	for _, n := range vms {
		// The target's console begins when its QEMU starts: a guest that
		// kept its memory goes on counting from where it was.
		eventually(t, 120*time.Second, n+" counting on ev2 from where it was", func() (bool, string) {
			got := ticks(t, root, n)
			return len(got) >= 2 && got[0] > 1 && got[len(got)-1] > got[0], fmt.Sprint(got)
		})
		if h := must(t, root, "", "instance", "history", n); !strings.Contains(h, "live") {
			t.Errorf("%s did not move live:\n%s", n, h)
		}
	}
	for _, n := range cts {
		if got := strings.TrimSpace(must(t, root, "", "instance", "exec", n, "--", "cat", "/root/kept")); got != "kept-"+n {
			t.Errorf("%s's /root/kept on ev2: %q", n, got)
		}
	}
	h, err := c.Host(ctx, "ev1")
	if err != nil || h.Enabled || h.Instances != 0 || h.Allocated != (api.Size{}) {
		t.Fatalf("ev1 after its evacuation: %+v %v", h, err)
	}
	eventually(t, 60*time.Second, "nothing of the instances left on ev1", func() (bool, string) {
		out, _ := exec.Command("pgrep", "-f", filepath.Join(dirs["ev1"], "qemu")).Output()
		cs, _ := exec.Command("runc", "--root", filepath.Join(dirs["ev1"], "container", "runc"), "list", "-q").Output()
		vmDirs, _ := os.ReadDir(filepath.Join(dirs["ev1"], "qemu", "instances"))
		ctDirs, _ := os.ReadDir(filepath.Join(dirs["ev1"], "container", "instances"))
		return len(out) == 0 && len(strings.TrimSpace(string(cs))) == 0 && len(vmDirs) == 0 && len(ctDirs) == 0,
			fmt.Sprintf("qemu %q, runc %q, vm dirs %v, container dirs %v", out, cs, vmDirs, ctDirs)
	})
}
