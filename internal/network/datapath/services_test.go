package datapath

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// whoAmI is a metadata handler that answers with what it knows of the
// asker: the network and the address it came from.
var whoAmI = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	host, _, _ := net.SplitHostPort(r.RemoteAddr)
	fmt.Fprintf(w, "vni=%d ip=%s path=%s", RequestVNI(r), host, r.URL.Path)
})

// httpGet fetches a URL from inside a namespace. The connection is made
// on the thread that is in the namespace (an http.Client would dial from
// another goroutine, so from any namespace).
func httpGet(ns, url string) (string, error) {
	var body string
	err := inNamespace(ns, func() error {
		req, err := http.NewRequest("GET", url, nil)
		if err != nil {
			return err
		}
		c, err := net.DialTimeout("tcp4", req.URL.Host+":80", 2*time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(2 * time.Second))
		req.Close = true
		if err := req.Write(c); err != nil {
			return err
		}
		resp, err := http.ReadResponse(bufio.NewReader(c), req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		body = resp.Status + " " + string(b)
		return err
	})
	return body, err
}

// TestMetadataIdentifiesByPort: each instance gets answers about itself
// only - identified by its network and address, the same address on two
// networks being two instances.
func TestMetadataIdentifiesByPort(t *testing.T) {
	tb := newTestbed(t, 1)
	h := tb.hosts[0]
	a0 := tb.plug(0, netA, "a0", "10.20.0.10")
	b0 := tb.plug(0, netB, "b0", "10.20.0.10")
	a1 := tb.plug(0, netA, "a1", "10.20.0.11")
	must(t, h.EnsureServices(netA, nil, Zone{}, whoAmI, nil))
	must(t, h.EnsureServices(netB, nil, Zone{}, whoAmI, nil))
	t.Cleanup(func() { h.StopServices(netA.VNI); h.StopServices(netB.VNI) })
	for _, c := range []struct {
		in   instance
		want string
	}{{a0, "vni=100 ip=10.20.0.10"}, {b0, "vni=200 ip=10.20.0.10"}, {a1, "vni=100 ip=10.20.0.11"}} {
		got, err := httpGet(c.in.ns, "http://169.254.169.254/latest/meta-data/instance-id")
		if err != nil || !strings.Contains(got, c.want) {
			t.Errorf("%s: got %q, %v; want %q", c.in.ns, got, err, c.want)
		}
	}
}

// TestDHCP: a DHCP client on a port gets the port's address, the gateway,
// the MTU, the DNS server and the network's domain to search; a MAC that
// is no local port gets no answer.
func TestDHCP(t *testing.T) {
	busybox, err := exec.LookPath("busybox")
	if err != nil {
		t.Skip("busybox (busybox-static) is needed for its DHCP client; make deps installs it")
	}
	tb := newTestbed(t, 1)
	h := tb.hosts[0]
	n := netA
	n.DHCP, n.DNS, n.Domain = true, []netip.Addr{netip.MustParseAddr("10.20.0.1")}, "app.kumo.internal"
	a0 := tb.plug(0, n, "a0", "10.20.0.10")
	// The port's address is what DHCP must give back: take it off first.
	nl := tb.handle(a0.ns)
	defer nl.Close()
	must(t, nl.AddrDel(linkIn(t, nl, "eth0"), mustAddr("10.20.0.10/24")))
	must(t, h.ApplyFirewall([]FirewallPort{fwPort(a0, n.VNI)}))
	script := filepath.Join(t.TempDir(), "udhcpc.sh")
	must(t, os.WriteFile(script, []byte("#!/bin/sh\necho \"$1 ip=$ip mask=$mask router=$router dns=$dns mtu=$mtu host=$hostname domain=$domain search=$search\"\n"), 0o755))
	run := func() string {
		out, _ := exec.Command("nsenter", "--net="+a0.ns, busybox, "udhcpc", "-i", "eth0", "-n", "-q", "-f", "-t", "3", "-T", "1", "-s", script).CombinedOutput()
		return string(out)
	}
	// Not a known port: no answer.
	must(t, h.EnsureServices(n, nil, Zone{}, whoAmI, nil))
	t.Cleanup(func() { h.StopServices(n.VNI) })
	if out := run(); strings.Contains(out, "bound") {
		t.Errorf("an unknown MAC got a lease:\n%s", out)
	}
	must(t, h.EnsureServices(n, []Lease{{MAC: a0.port.MAC, IP: a0.port.IP, Hostname: "a0"}}, Zone{}, whoAmI, nil))
	out := run()
	for _, want := range []string{"bound ip=10.20.0.10", "mask=24", "router=10.20.0.1", "dns=10.20.0.1", "mtu=1450", "host=a0", "domain=app.kumo.internal", "search=app.kumo.internal"} {
		if !strings.Contains(out, want) {
			t.Errorf("the lease lacks %q:\n%s", want, out)
		}
	}
}
