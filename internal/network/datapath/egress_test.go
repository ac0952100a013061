package datapath

import (
	"net/netip"
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
	seen := peersSeen(t, wan, "192.0.2.2:9000")
	serve(t, h.cfg.NetNS, "0.0.0.0:8443", "the host")
	if err := blocked(a0.ns, "192.0.2.2:9000"); err != nil {
		t.Errorf("egress off: %v", err)
	}
	must(t, h.SetRouter(netA.VNI, Router{Egress: true}))
	if _, err := dial(a0.ns, "192.0.2.2:9000", 2*time.Second); err != nil {
		t.Fatalf("egress on: %v", err)
	}
	seenFrom(t, seen, "192.0.2.1:") // the host's address
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
