package e2e

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kumocloud/kumo/api"
	"github.com/kumocloud/kumo/internal/network/datapath"
)

// testNamespace makes a network namespace for the test, loopback up, and
// removes it at the end (also when the test fails).
func testNamespace(t *testing.T, name string) string {
	t.Helper()
	dir, err := os.MkdirTemp("/run", "kumo-e2e-ns-")
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, name)
	if err := datapath.NewNamespace(p); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { datapath.RemoveNamespace(p); os.RemoveAll(dir) })
	if out, err := exec.Command("nsenter", "--net="+p, "ip", "link", "set", "lo", "up").CombinedOutput(); err != nil {
		t.Fatalf("lo up: %v %s", err, out)
	}
	return p
}

// nics returns an instance's NICs.
func nics(t *testing.T, env []string, name string) []api.InstanceNIC {
	t.Helper()
	var in api.Instance
	if err := json.Unmarshal([]byte(must(t, env, "", "instance", "show", name, "-o", "json")), &in); err != nil {
		t.Fatal(err)
	}
	return in.NICs
}

// TestNetworks: instances on a virtual network through the CLI, against a
// server in a namespace of the test's own: containers get their port's
// address and reach each other as their security groups allow, rules open
// and close ports live, the metadata service tells each instance about
// itself, a VM gets its address by DHCP, another tenant's network with the
// same subnet is out of reach, and terminating everything leaves no device
// and frees the addresses.
func TestNetworks(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("networks need root (namespaces, bridges, nftables); CI runs as root")
	}
	vms := true
	if _, err := exec.LookPath("qemu-system-x86_64"); err != nil {
		vms = false
	}
	ns := testNamespace(t, "host0")
	// The outside world: a namespace holding the external network's
	// gateway, joined to the host's uplink.
	outside := testNamespace(t, "outside")
	for _, c := range [][]string{
		{"nsenter", "--net=" + ns, "ip", "link", "add", "uplink0", "type", "veth", "peer", "name", "eth0", "netns", outside},
		{"nsenter", "--net=" + outside, "ip", "addr", "add", "203.0.113.1/24", "dev", "eth0"},
		{"nsenter", "--net=" + outside, "ip", "link", "set", "eth0", "up"},
		// And the host's way out (egress NAT): its default route.
		{"nsenter", "--net=" + ns, "ip", "link", "add", "wan0", "type", "veth", "peer", "name", "wan", "netns", outside},
		{"nsenter", "--net=" + ns, "ip", "addr", "add", "192.0.2.1/24", "dev", "wan0"},
		{"nsenter", "--net=" + ns, "ip", "link", "set", "wan0", "up"},
		{"nsenter", "--net=" + ns, "ip", "route", "add", "default", "via", "192.0.2.2"},
		{"nsenter", "--net=" + outside, "ip", "addr", "add", "192.0.2.2/24", "dev", "wan"},
		{"nsenter", "--net=" + outside, "ip", "link", "set", "wan", "up"},
	} {
		if out, err := exec.Command(c[0], c[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%v: %v %s", c, err, out)
		}
	}
	s := startServerIn(t, ns, "--drivers", "container,qemu", "--qemu-accel", "tcg", "--uplink", "public=uplink0", "--egress-nat")
	t.Cleanup(func() { exec.Command("pkill", "-9", "-f", filepath.Join(s.dir, "agent", "qemu")).Run() })
	root := []string{"KUMO_SOCKET=" + s.socket}
	dir := t.TempDir()
	img := filepath.Join(dir, "tiny-rootfs.tar.gz")
	must(t, root, "", "image", "build", "tiny-rootfs", "-f", img)
	must(t, root, "", "image", "import", img, "--name", "tiny", "--public")

	t.Log(must(t, root, "", "network", "create", "app", "--subnet", "10.20.0.0/24", "--gateway", "10.20.0.1", "--dns", "10.20.0.1"))
	must(t, root, "", "security-group", "create", "web")
	must(t, root, "", "security-group", "rule", "add", "web", "--ingress", "--tcp", "8080", "--from", "0.0.0.0/0")
	if r := kumo(t, root, "", "security-group", "rule", "add", "web", "--ingress", "--tcp", "70000"); r.code != 1 || !strings.Contains(r.err, "1-65535") {
		t.Errorf("a bad port: exit %d %s", r.code, r.err)
	}
	serveScript := func(page string, ports ...string) string {
		p := filepath.Join(dir, page+".sh")
		body := "mkdir -p /www && echo " + page + "-page > /www/index.html\n"
		for _, port := range ports {
			body += "httpd -p " + port + " -h /www\n"
		}
		os.WriteFile(p, []byte(body), 0o644)
		return p
	}
	create := func(env []string, name string, args ...string) {
		t.Helper()
		out := must(t, env, "", append([]string{"instance", "create", name, "--type", "container", "--image", "tiny", "--flavor", "tiny", "--wait"}, args...)...)
		if !strings.Contains(out, "state: RUNNING") {
			t.Fatalf("create %s: %s", name, out)
		}
	}
	create(root, "c1", "--network", "app", "--security-group", "web", "--user-data", serveScript("c1", "8080", "9090"))
	create(root, "c2", "--network", "app", "--user-data", serveScript("c2", "8080"))
	c1, c2 := nics(t, root, "c1")[0], nics(t, root, "c2")[0]
	if c1.Port != "c1-eth0" || c1.SecurityGroups[0] != "web" || c2.SecurityGroups[0] != "default" || !strings.HasPrefix(c1.IP, "10.20.0.") {
		t.Fatalf("NICs: %+v %+v", c1, c2)
	}
	fetch := func(env []string, from, url string) (string, int) {
		// (busybox's wget -T crashes; timeout bounds a dropped SYN)
		r := kumo(t, env, "", "instance", "exec", from, "--", "timeout", "3", "wget", "-qO-", url)
		return r.out + r.err, r.code
	}
	expect := func(what string, env []string, from, url, want string, open bool) {
		t.Helper()
		eventually(t, 20*time.Second, what, func() (bool, string) {
			out, code := fetch(env, from, url)
			if open {
				return code == 0 && strings.Contains(out, want), out
			}
			return code != 0 && !strings.Contains(out, want), out
		})
	}
	// The address is in the container, from the start.
	if out := must(t, root, "", "instance", "exec", "c1", "--", "ip", "-4", "addr", "show", "eth0"); !strings.Contains(out, c1.IP+"/24") {
		t.Errorf("c1's eth0:\n%s", out)
	}
	expect("c2 -> c1:8080 (web allows it)", root, "c2", "http://"+c1.IP+":8080/", "c1-page", true)
	expect("c2 -> c1:9090 (no rule)", root, "c2", "http://"+c1.IP+":9090/", "c1-page", false)
	expect("c1 -> c2:8080 (default admits only its members)", root, "c1", "http://"+c2.IP+":8080/", "c2-page", false)
	must(t, root, "", "security-group", "rule", "add", "web", "--ingress", "--tcp", "9090", "--from-group", "default")
	expect("c2 -> c1:9090 once a rule admits group default", root, "c2", "http://"+c1.IP+":9090/", "c1-page", true)

	// Metadata: each its own.
	for _, c := range []struct{ name, path, want string }{
		{"c1", "local-ipv4", c1.IP}, {"c2", "local-ipv4", c2.IP}, {"c1", "hostname", "c1"},
	} {
		if out, code := fetch(root, c.name, "http://169.254.169.254/latest/meta-data/"+c.path); code != 0 || strings.TrimSpace(out) != c.want {
			t.Errorf("%s's metadata %s: %q (exit %d), want %q", c.name, c.path, out, code, c.want)
		}
	}
	if out, _ := fetch(root, "c2", "http://169.254.169.254/latest/user-data"); !strings.Contains(out, "c2-page") {
		t.Errorf("c2's user-data: %q", out)
	}
	// DNS at the gateway: instances' names, short and under the network's
	// domain.
	for _, name := range []string{"c2", "c2.app.kumo.internal"} {
		resolves(t, root, "c1", name, c2.IP)
	}
	// A floating IP: reachable from outside through c1's rules, and c1's
	// public address in its metadata.
	must(t, root, "", "network", "create", "public", "--subnet", "203.0.113.0/24", "--gateway", "203.0.113.1", "--external")
	var fip api.FloatingIP
	json.Unmarshal([]byte(must(t, root, "", "floating-ip", "create", "--network", "public", "-o", "json")), &fip)
	if !strings.HasPrefix(fip.IP, "203.0.113.") || fip.IP == "203.0.113.1" {
		t.Fatalf("floating IP %+v", fip)
	}
	if r := kumo(t, root, "", "floating-ip", "attach", fip.IP, "nosuch"); r.code != 1 || !strings.Contains(r.err, "not found") {
		t.Errorf("attach to no instance: exit %d %s", r.code, r.err)
	}
	must(t, root, "", "floating-ip", "attach", fip.IP, "c1")
	fromOutside := func(url string) (string, int) {
		out, err := exec.Command("nsenter", "--net="+outside, "timeout", "3", "busybox", "wget", "-qO-", url).CombinedOutput()
		code := 0
		if err != nil {
			code = 1
		}
		return string(out), code
	}
	eventually(t, 20*time.Second, "outside -> c1 through its floating IP", func() (bool, string) {
		out, code := fromOutside("http://" + fip.IP + ":8080/")
		return code == 0 && strings.Contains(out, "c1-page"), out
	})
	// A neighbour routing the tenant's subnet through the router does not
	// reach c1's fixed address, though c1's rules admit port 8080 from
	// anywhere: only the floating address leads in.
	if out, err := exec.Command("nsenter", "--net="+outside, "ip", "route", "add", "10.20.0.0/24", "via", fip.IP).CombinedOutput(); err != nil {
		t.Fatalf("route in outside: %v %s", err, out)
	}
	if out, code := fromOutside("http://" + c1.IP + ":8080/"); code == 0 {
		t.Errorf("outside reached a fixed address through the router: %s", out)
	}
	if out, _ := fetch(root, "c1", "http://169.254.169.254/latest/meta-data/public-ipv4"); strings.TrimSpace(out) != fip.IP {
		t.Errorf("c1's public-ipv4: %q", out)
	}
	if out := must(t, root, "", "floating-ip", "list"); !strings.Contains(out, fip.IP) || !strings.Contains(out, c1.IP) {
		t.Errorf("floating-ip list:\n%s", out)
	}
	must(t, root, "", "floating-ip", "detach", fip.IP)
	eventually(t, 20*time.Second, "detached: outside no longer reaches c1", func() (bool, string) {
		out, code := fromOutside("http://" + fip.IP + ":8080/")
		return code != 0, out
	})
	must(t, root, "", "floating-ip", "delete", fip.IP)

	// Egress NAT (on for this server): c2, without a floating IP, reaches a
	// server past the host's default route; the host itself it does not.
	www := t.TempDir()
	os.WriteFile(filepath.Join(www, "index.html"), []byte("outside-page\n"), 0o644)
	httpd := exec.Command("nsenter", "--net="+outside, "busybox", "httpd", "-f", "-p", "192.0.2.2:9000", "-h", www)
	if err := httpd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { httpd.Process.Kill(); httpd.Wait() })
	expect("c2 -> outside through egress NAT", root, "c2", "http://192.0.2.2:9000/", "outside-page", true)
	hostd := exec.Command("nsenter", "--net="+ns, "busybox", "httpd", "-f", "-p", "0.0.0.0:9100", "-h", www)
	if err := hostd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { hostd.Process.Kill(); hostd.Wait() })
	// The host's addresses: its own, and its end of the router's egress
	// link (the only next hop the router has towards it).
	link := strings.Fields(ipIn(t, ns, "-4", "-o", "addr", "show", "dev", "kn"+strconv.FormatInt(c2.VNI, 10)))
	if len(link) < 4 {
		t.Fatalf("no egress link for c2's network on the host: %v", link)
	}
	hostEnd, _, _ := strings.Cut(link[3], "/")
	for _, addr := range []string{"192.0.2.1", hostEnd} {
		if out, code := fetch(root, "c2", "http://"+addr+":9100/"); code == 0 {
			t.Errorf("a tenant reached a service of its host's at %s: %s", addr, out)
		}
	}

	// Stopped (host freed, ports unwired) and started again: the same
	// address, wired anew.
	for _, action := range []string{"stop", "start", "poweroff", "start"} {
		must(t, root, "", "instance", action, "c2", "--wait")
	}
	expect("c2 -> c1:8080 after stop/start and poweroff/start", root, "c2", "http://"+c1.IP+":8080/", "c1-page", true)

	ports := must(t, root, "", "port", "list", "--network", "app")
	if !strings.Contains(ports, "c1-eth0") || !strings.Contains(ports, c1.MAC) || !strings.Contains(ports, "c1 ") {
		t.Errorf("port list:\n%s", ports)
	}
	if r := kumo(t, root, "", "port", "delete", "c1-eth0"); r.code != 1 || !strings.Contains(r.err, "goes with it") {
		t.Errorf("deleting an instance's port: exit %d %s", r.code, r.err)
	}

	// Another tenant, the same subnet: its own world.
	must(t, root, "", "project", "create", "t2")
	t2 := append(root, "KUMO_PROJECT=t2")
	must(t, t2, "", "network", "create", "app", "--subnet", "10.20.0.0/24")
	create(t2, "x1", "--network", "app", "--user-data", serveScript("x1", "8080"))
	x1 := nics(t, t2, "x1")[0]
	if x1.VNI == c1.VNI {
		t.Fatalf("two networks share VNI %d", x1.VNI)
	}
	if out, _ := fetch(t2, "x1", "http://"+c1.IP+":8080/"); strings.Contains(out, "c1-page") {
		t.Errorf("another tenant reached c1: %s", out)
	}
	if out, _ := fetch(t2, "x1", "http://169.254.169.254/latest/meta-data/local-ipv4"); strings.TrimSpace(out) != x1.IP {
		t.Errorf("x1's metadata: %q", out)
	}
	// Its network's DNS server (the gateway by default) knows its names,
	// not the first tenant's.
	resolves(t, t2, "x1", "x1", x1.IP)
	if r := kumo(t, t2, "", "instance", "exec", "x1", "--", "timeout", "5", "nslookup", "c2.app.kumo.internal"); r.code == 0 || !strings.Contains(r.out+r.err, "NXDOMAIN") {
		t.Errorf("another tenant's instance resolved c2: exit %d %s%s", r.code, r.out, r.err)
	}

	if vms {
		must(t, root, "", "image", "build", "tiny-vm", "-f", filepath.Join(dir, "tiny-vm.tar.gz"), "--import", "--public")
		must(t, root, "", "instance", "create", "v1", "--type", "vm", "--image", "tiny-vm", "--flavor", "tiny", "--network", "app", "--wait")
		v1 := nics(t, root, "v1")[0]
		eventually(t, 90*time.Second, "v1 got its address by DHCP", func() (bool, string) {
			out := must(t, root, "", "instance", "logs", "v1", "--tail", "200")
			return strings.Contains(out, "kumo: eth0 "+v1.IP+"/24"), out
		})
		eventually(t, 20*time.Second, "c2 pings v1 (both in default)", func() (bool, string) {
			r := kumo(t, root, "", "instance", "exec", "c2", "--", "ping", "-c", "1", "-W", "2", v1.IP)
			return r.code == 0, r.out + r.err
		})
		must(t, root, "", "instance", "terminate", "v1", "--wait")
	}

	for _, c := range []struct {
		env  []string
		name string
	}{{root, "c1"}, {root, "c2"}, {t2, "x1"}} {
		must(t, c.env, "", "instance", "terminate", c.name, "--wait")
	}
	if out := must(t, root, "", "port", "list"); len(lines(out)) > 1 {
		t.Errorf("ports left after terminate:\n%s", out)
	}
	must(t, root, "", "network", "delete", "app")
	must(t, root, "", "network", "delete", "public")
	must(t, t2, "", "network", "delete", "app")
	eventually(t, 15*time.Second, "no network devices or namespaces left", func() (bool, string) {
		out, _ := exec.Command("nsenter", "--net="+ns, "ip", "-o", "link").CombinedOutput()
		left, _ := filepath.Glob(filepath.Join(s.dir, "agent", "netns", "*"))
		mounted := []string{}
		for _, p := range left {
			if b, _ := os.ReadFile("/proc/self/mountinfo"); strings.Contains(string(b), " "+p+" ") {
				mounted = append(mounted, p)
			}
		}
		return !strings.Contains(string(out), "kbr") && !strings.Contains(string(out), "kp") && len(mounted) == 0, string(out) + strings.Join(mounted, " ") + "\n" + s.out.String()
	})
}

// resolves waits until an instance resolves a name to an address through
// its network's DNS server (busybox's nslookup).
func resolves(t *testing.T, env []string, from, name, ip string) {
	t.Helper()
	eventually(t, 20*time.Second, from+" resolves "+name, func() (bool, string) {
		r := kumo(t, env, "", "instance", "exec", from, "--", "timeout", "5", "nslookup", name)
		return r.code == 0 && strings.Contains(r.out, "Address: "+ip+"\n"), r.out + r.err
	})
}
