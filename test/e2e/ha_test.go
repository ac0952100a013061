package e2e

import (
	"context"
	"encoding/json"
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

// runcStatus is what runc says of a container in an agent's state dir
// ("" when it has none).
func runcStatus(agentDir, id string) string {
	out, err := exec.Command("runc", "--root", filepath.Join(agentDir, "container", "runc"), "state", id).Output()
	if err != nil {
		return ""
	}
	var st struct {
		Status string `json:"status"`
	}
	json.Unmarshal(out, &st)
	return st.Status
}

// TestHAFenceAndRecreate: a server and two container hosts, each in a
// network namespace of the test's. The network of the host running an
// --ha container is cut and stays cut: its agent stops the container
// itself (self-fencing), and after the fence timeout the server recreates
// it on the other host. When the network is back the old host removes
// its fenced copy: at every point it runs at most once, and at the end
// exactly once, on the new host, with the history saying why.
func TestHAFenceAndRecreate(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("hosts in namespaces and containers need root; CI runs as root")
	}
	if _, err := exec.LookPath("runc"); err != nil {
		t.Skip("runc is not installed (scripts/deps.sh installs it)")
	}
	h0, h1, h2 := testNamespace(t, "srv"), testNamespace(t, "ha1"), testNamespace(t, "ha2")
	for i, h := range []string{h1, h2} {
		dev := fmt.Sprintf("ul%d", i+1)
		ipIn(t, h0, "link", "add", dev, "type", "veth", "peer", "name", dev, "netns", h)
		ipIn(t, h0, "addr", "add", fmt.Sprintf("198.19.%d.1/24", i+1), "dev", dev)
		ipIn(t, h0, "link", "set", dev, "up")
		ipIn(t, h, "addr", "add", fmt.Sprintf("198.19.%d.2/24", i+1), "dev", dev)
		ipIn(t, h, "link", "set", dev, "up")
	}
	port := strings.Split(freeAddr(t), ":")[1]
	s := startServerIn(t, h0, "--listen", "0.0.0.0:"+port, "--host-grace", "3s", "--ha-fence-timeout", "12s")
	root := []string{"KUMO_SOCKET=" + s.socket}
	c := client.Socket(s.socket)
	startHost := func(i int) (*netAgent, string) {
		dir := t.TempDir()
		ns := []string{h1, h2}[i-1]
		a := &netAgent{t: t, stateDir: dir, args: []string{"--net=" + ns, kumoBin, "agent", "--server", fmt.Sprintf("https://198.19.%d.1:%s", i, port),
			"--join-token", joinToken(t, root), "--driver", "container", "--state-dir", dir, "--host-name", fmt.Sprintf("ha%d", i),
			"--vtep", fmt.Sprintf("198.19.%d.2", i), "--heartbeat", "1s", "--fence-grace", "3s"}}
		a.start()
		t.Cleanup(func() { a.kill9(); removeInstances(dir) })
		eventually(t, 30*time.Second, fmt.Sprintf("ha%d online", i), func() (bool, string) {
			h, err := c.Host(context.Background(), fmt.Sprintf("ha%d", i))
			return err == nil && h.State == api.HostOnline && h.FenceGraceSeconds == 3, fmt.Sprint(h, err) + a.out.String()
		})
		return a, dir
	}
	a1, dir1 := startHost(1)
	img := filepath.Join(t.TempDir(), "tiny-rootfs.tar.gz")
	must(t, root, "", "image", "build", "tiny-rootfs", "-f", img)
	must(t, root, "", "image", "import", img, "--name", "tiny", "--public")
	// Only ha1 is up: web goes there.
	must(t, root, "", "instance", "create", "web", "--image", "tiny", "--flavor", "tiny", "--ha", "--wait")
	in, _ := instanceState(t, c, "default", "web")
	if in.Host != "ha1" || !in.HA || runcStatus(dir1, in.ID) != "running" {
		t.Fatalf("web: %s on %s (ha %v), runc on ha1: %q", in.State, in.Host, in.HA, runcStatus(dir1, in.ID))
	}
	_, dir2 := startHost(2)
	once := func() string {
		s1, s2 := runcStatus(dir1, in.ID), runcStatus(dir2, in.ID)
		if s1 == "running" && s2 == "running" {
			t.Fatalf("web runs on both hosts")
		}
		return "ha1: " + s1 + ", ha2: " + s2
	}

	// Cut ha1 off and keep it so.
	ipIn(t, h1, "link", "set", "ul1", "down")
	eventually(t, 30*time.Second, "ha1's agent fences web", func() (bool, string) {
		st := once()
		return runcStatus(dir1, in.ID) != "running" && strings.Contains(a1.out.String(), "fencing: stopped an HA instance"), st + a1.out.String()
	})
	eventually(t, 90*time.Second, "web recreated and RUNNING on ha2", func() (bool, string) {
		st := once()
		in, _ = instanceState(t, c, "default", "web")
		return in.State == api.StateRunning && in.Host == "ha2" && runcStatus(dir2, in.ID) == "running", fmt.Sprintf("%s on %s; %s", in.State, in.Host, st)
	})
	hist, err := c.InstanceHistory(context.Background(), "default", "web")
	if err != nil {
		t.Fatal(err)
	}
	why := ""
	for _, h := range hist {
		if h.Actor == "ha" {
			why = h.Reason
		}
	}
	if !strings.Contains(why, "host ha1 lost") {
		t.Fatalf("the history does not say why web moved: %+v", hist)
	}

	// ha1 comes back: it removes its fenced copy and web stays on ha2.
	ipIn(t, h1, "link", "set", "ul1", "up")
	eventually(t, 90*time.Second, "ha1 back and its fenced copy gone", func() (bool, string) {
		st := once()
		h, err := c.Host(context.Background(), "ha1")
		return err == nil && h.State == api.HostOnline && runcStatus(dir1, in.ID) == "", st + a1.out.String()
	})
	in, _ = instanceState(t, c, "default", "web")
	if in.State != api.StateRunning || in.Host != "ha2" || runcStatus(dir2, in.ID) != "running" {
		t.Fatalf("after ha1 returned web is %s on %s (%s)", in.State, in.Host, once())
	}
	must(t, root, "", "instance", "terminate", "web", "--wait")
}
