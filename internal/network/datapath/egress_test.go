package datapath

import (
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"
)

// TestEgressNAT: off, an instance reaches nothing beyond its network;
// on, it reaches a server past the host's default route, seen as the
// host's address; it never reaches the host itself; off again, closed.
func TestEgressNAT(t *testing.T) {
	tb := newTestbed(t, 1)
	h := tb.hosts[0]
	wan := tb.namespace("wan")
	tb.link(h.cfg.NetNS, "wan0", wan, "eth0", netip.MustParsePrefix("192.0.2.1/24"), netip.MustParsePrefix("192.0.2.2/24"))
	hnl := tb.handle(h.cfg.NetNS)
	defer hnl.Close()
	must(t, hnl.RouteAdd(mustRoute(linkIn(t, hnl, "wan0").Attrs().Index, "192.0.2.2")))
	a0 := tb.plug(0, netA, "a0", "10.20.0.10")
	must(t, h.ApplyFirewall([]FirewallPort{fwPort(a0, netA.VNI)}))
	seen := make(chan string, 4)
	must(t, inNamespace(wan, func() error {
		l, err := net.Listen("tcp4", "192.0.2.2:9000")
		if err != nil {
			return err
		}
		t.Cleanup(func() { l.Close() })
		go func() {
			for {
				c, err := l.Accept()
				if err != nil {
					return
				}
				seen <- c.RemoteAddr().String()
				c.Close()
			}
		}()
		return nil
	}))
	serve(t, h.cfg.NetNS, "0.0.0.0:8443", "the host")
	if err := blocked(a0.ns, "192.0.2.2:9000"); err != nil {
		t.Errorf("egress off: %v", err)
	}
	must(t, h.SetRouter(netA.VNI, Router{Egress: true}))
	if _, err := dial(a0.ns, "192.0.2.2:9000", 2*time.Second); err != nil {
		t.Fatalf("egress on: %v", err)
	}
	select {
	case from := <-seen:
		if !strings.HasPrefix(from, "192.0.2.1:") {
			t.Errorf("the outside saw %s, want the host's address", from)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("the outside saw nothing")
	}
	hostEnd, _ := transfer(netA.VNI)
	for _, addr := range []string{"192.0.2.1:8443", hostEnd.String() + ":8443"} {
		if err := blocked(a0.ns, addr); err != nil {
			t.Errorf("a tenant reached the host at %s: %v", addr, err)
		}
	}
	must(t, h.SetRouter(netA.VNI, Router{}))
	if err := blocked(a0.ns, "192.0.2.2:9000"); err != nil {
		t.Errorf("egress off again: %v", err)
	}
}
