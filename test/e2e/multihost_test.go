package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kumocloud/kumo/client"
)

// netAgent is a 'kumo agent' process in a namespace of the test's.
type netAgent struct {
	t        *testing.T
	cmd      *exec.Cmd
	args     []string
	out      *lockedBuffer
	stateDir string
}

func (a *netAgent) start() {
	a.out = &lockedBuffer{}
	a.cmd = exec.Command("nsenter", a.args...)
	a.cmd.Stdout, a.cmd.Stderr = a.out, a.out
	if err := a.cmd.Start(); err != nil {
		a.t.Fatal(err)
	}
}

func (a *netAgent) kill9() {
	if a.cmd != nil {
		a.cmd.Process.Signal(syscall.SIGKILL)
		a.cmd.Wait()
		a.cmd = nil
	}
}

// ipIn runs ip(8) in a namespace.
func ipIn(t *testing.T, ns string, args ...string) string {
	t.Helper()
	out, err := exec.Command("nsenter", append([]string{"--net=" + ns, "ip"}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("ip %v in %s: %v %s", args, ns, err, out)
	}
	return string(out)
}

// ifindex is a device's index in a namespace ("" when it has none).
func ifindex(t *testing.T, ns, dev string) string {
	out, err := exec.Command("nsenter", "--net="+ns, "ip", "-o", "link", "show", "dev", dev).CombinedOutput()
	if err != nil {
		return ""
	}
	idx, _, _ := strings.Cut(string(out), ":")
	return idx
}

// TestNetworksAcrossHosts: two hosts, each a namespace of the test's
// joined by a veth underlay, one running the server and its agent, the
// other a joined agent. Instances of one network on the two hosts reach
// each other over VXLAN (ping and TCP), with forwarding entries the
// control plane keeps; an agent restart repairs a deleted bridge without
// touching another network's; terminating everything leaves no device.
func TestNetworksAcrossHosts(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("networks need root (namespaces, bridges, nftables); CI runs as root")
	}
	h0, h1 := testNamespace(t, "host0"), testNamespace(t, "host1")
	ipIn(t, h0, "link", "add", "under0", "type", "veth", "peer", "name", "under0", "netns", h1)
	ipIn(t, h0, "addr", "add", "198.18.0.1/24", "dev", "under0")
	ipIn(t, h0, "link", "set", "under0", "up")
	ipIn(t, h1, "addr", "add", "198.18.0.2/24", "dev", "under0")
	ipIn(t, h1, "link", "set", "under0", "up")
	s := startServerIn(t, h0, "--drivers", "container", "--vtep", "198.18.0.1", "--listen", "0.0.0.0:"+strings.Split(freeAddr(t), ":")[1])
	root := []string{"KUMO_SOCKET=" + s.socket}
	port := ""
	for _, l := range strings.Split(s.out.String(), "\n") {
		if i := strings.Index(l, "serving https://0.0.0.0:"); i >= 0 {
			port = strings.Fields(l[i+len("serving https://0.0.0.0:"):])[0]
		}
	}
	if port == "" {
		t.Fatalf("no listener in the server's output:\n%s", s.out.String())
	}
	agentDir := t.TempDir()
	a := &netAgent{t: t, stateDir: agentDir, args: []string{"--net=" + h1, kumoBin, "agent", "--server", "https://198.18.0.1:" + port,
		"--join-token", joinToken(t, root), "--driver", "container", "--state-dir", agentDir, "--host-name", "host1", "--vtep", "198.18.0.2", "--heartbeat", "1s"}}
	a.start()
	t.Cleanup(func() { a.kill9(); removeInstances(agentDir) })
	eventually(t, 30*time.Second, "both hosts online", func() (bool, string) {
		out := must(t, root, "", "host", "list")
		return strings.Count(out, "ONLINE") == 2, out + a.out.String()
	})
	dir := t.TempDir()
	img := filepath.Join(dir, "tiny-rootfs.tar.gz")
	must(t, root, "", "image", "build", "tiny-rootfs", "-f", img)
	must(t, root, "", "image", "import", img, "--name", "tiny", "--public")
	must(t, root, "", "network", "create", "app", "--subnet", "10.20.0.0/24")
	must(t, root, "", "network", "create", "other", "--subnet", "10.30.0.0/24")
	must(t, root, "", "server-group", "create", "spread", "--policy", "anti-affinity")
	ud := filepath.Join(dir, "serve.sh")
	os.WriteFile(ud, []byte("mkdir -p /www && hostname > /www/index.html && httpd -p 8080 -h /www\n"), 0o644)
	for _, in := range []struct{ name, net string }{{"a0", "app"}, {"a1", "app"}} {
		must(t, root, "", "instance", "create", in.name, "--image", "tiny", "--flavor", "tiny", "--network", in.net,
			"--server-group", "spread", "--user-data", ud, "--wait")
	}
	// b: on the other network, on host1.
	must(t, root, "", "instance", "create", "b", "--image", "tiny", "--flavor", "tiny", "--network", "other",
		"--requirements", `NAME = "host1"`, "--wait")
	a0, a1 := nics(t, root, "a0")[0], nics(t, root, "a1")[0]
	hostOf := func(name string) string {
		out := must(t, root, "", "instance", "list")
		for _, l := range lines(out) {
			if f := strings.Fields(l); len(f) > 3 && f[0] == name {
				return f[3]
			}
		}
		return ""
	}
	if hostOf("a0") == hostOf("a1") {
		t.Fatalf("a0 and a1 on one host:\n%s", must(t, root, "", "instance", "list"))
	}
	eventually(t, 20*time.Second, "a0 pings a1 on the other host", func() (bool, string) {
		r := kumo(t, root, "", "instance", "exec", "a0", "--", "ping", "-c", "1", "-W", "2", a1.IP)
		return r.code == 0, r.out + r.err
	})
	eventually(t, 20*time.Second, "a1 -> a0 over TCP", func() (bool, string) {
		r := kumo(t, root, "", "instance", "exec", "a1", "--", "timeout", "3", "wget", "-qO-", "http://"+a0.IP+":8080/")
		return r.code == 0 && strings.Contains(r.out, "a0"), r.out + r.err
	})
	// DNS (the networks' default server, at the gateway): each host's
	// router knows the instance on the other; the other network's router
	// does not.
	resolves(t, root, "a0", "a1", a1.IP)
	resolves(t, root, "a1", "a0.app.kumo.internal", a0.IP)
	if r := kumo(t, root, "", "instance", "exec", "b", "--", "timeout", "5", "nslookup", "a1"); r.code == 0 || !strings.Contains(r.out+r.err, "NXDOMAIN") {
		t.Errorf("b on another network resolved a1: exit %d %s%s", r.code, r.out, r.err)
	}
	// Not allowed out: outside names are refused, not forwarded.
	if r := kumo(t, root, "", "instance", "exec", "a0", "--", "timeout", "5", "nslookup", "www.example.com"); r.code == 0 || !strings.Contains(r.out+r.err, "REFUSED") {
		t.Errorf("an outside name without egress: exit %d %s%s", r.code, r.out, r.err)
	}
	// Without --egress-nat nothing past the network is reachable: not the
	// hosts' own addresses either.
	if r := kumo(t, root, "", "instance", "exec", "a1", "--", "timeout", "3", "wget", "-qO-", "http://198.18.0.1:"+port+"/v1"); r.code == 0 {
		t.Errorf("a tenant reached the server's API: %s", r.out)
	}
	fdb := ipIn(t, h1, "-d", "link", "show")
	if !strings.Contains(fdb, "local 198.18.0.2") {
		t.Errorf("host1's VXLAN device does not start at its VTEP:\n%s", fdb)
	}

	// Agent restart repairs a deleted bridge; the other network's bridge
	// is left as it was.
	b := nics(t, root, "b")[0]
	appBr, otherBr := "kbr"+strconv.FormatInt(a1.VNI, 10), "kbr"+strconv.FormatInt(b.VNI, 10)
	before := ifindex(t, h1, otherBr)
	bPort := "kp" + strings.ReplaceAll(b.PortID, "-", "")[:12]
	bPortBefore := ifindex(t, h1, bPort)
	if before == "" || ifindex(t, h1, appBr) == "" {
		t.Fatalf("host1 lacks %s or %s:\n%s", appBr, otherBr, ipIn(t, h1, "-o", "link"))
	}
	a.kill9()
	ipIn(t, h1, "link", "del", appBr)
	a.start()
	eventually(t, 30*time.Second, "the restarted agent repaired the bridge and a0 reaches a1 again", func() (bool, string) {
		r := kumo(t, root, "", "instance", "exec", "a0", "--", "timeout", "3", "wget", "-qO-", "http://"+a1.IP+":8080/")
		return r.code == 0 && strings.Contains(r.out, "a1"), r.out + r.err + a.out.String()
	})
	if ifindex(t, h1, otherBr) != before || bPortBefore == "" || ifindex(t, h1, bPort) != bPortBefore {
		t.Errorf("the restart replaced %s or b's port %s, which were right", otherBr, bPort)
	}

	// kill -9 of the server (and its agent) and a restart: host1's agent
	// leaves every port plugged meanwhile and after.
	onH1 := a1
	if hostOf("a0") == "host1" {
		onH1 = a0
	}
	a1Port := "kp" + strings.ReplaceAll(onH1.PortID, "-", "")[:12]
	a1Before := ifindex(t, h1, a1Port)
	s.kill9()
	time.Sleep(3 * time.Second) // the scenario: host1's agent runs network rounds without a server
	restarted := time.Now()
	s.start()
	eventually(t, 30*time.Second, "a0 reaches a1 after the server's restart", func() (bool, string) {
		r := kumo(t, root, "", "instance", "exec", "a0", "--", "timeout", "3", "wget", "-qO-", "http://"+a1.IP+":8080/")
		return r.code == 0 && strings.Contains(r.out, "a1"), r.out + r.err
	})
	eventually(t, 60*time.Second, "host1's network synced with the restarted server", func() (bool, string) {
		h, err := client.Socket(s.socket).Host(context.Background(), "host1")
		return err == nil && h.NetworkSyncedAt.After(restarted), fmt.Sprint(h.NetworkSyncedAt, err)
	})
	if a1Before == "" || ifindex(t, h1, a1Port) != a1Before || ifindex(t, h1, bPort) != bPortBefore {
		t.Errorf("a server restart replugged ports on host1 (%s: %s -> %s)", a1Port, a1Before, ifindex(t, h1, a1Port))
	}

	for _, n := range []string{"a0", "a1", "b"} {
		must(t, root, "", "instance", "terminate", n, "--wait")
	}
	eventually(t, 20*time.Second, "no tenant devices left on either host", func() (bool, string) {
		l0, l1 := ipIn(t, h0, "-o", "link"), ipIn(t, h1, "-o", "link")
		return !strings.Contains(l0+l1, "kbr") && !strings.Contains(l0+l1, " kp"), l0 + l1
	})
}
