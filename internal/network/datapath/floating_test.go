package datapath

import (
	"fmt"
	"net"
	"net/netip"
	"testing"

	"github.com/vishvananda/netlink"
)

var public = Network{VNI: 900, Prefix: netip.MustParsePrefix("203.0.113.0/24"), Gateway: netip.MustParseAddr("203.0.113.1")}

// withOutside adds the external world: a bridge in the switch namespace
// with an uplink from every host and an "outside" namespace that is the
// external gateway (203.0.113.1).
func (tb *testbed) withOutside() string {
	swnl := tb.handle(tb.sw)
	defer swnl.Close()
	ext := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: "public"}}
	must(tb.t, swnl.LinkAdd(ext))
	must(tb.t, swnl.LinkSetUp(ext))
	out := tb.namespace("outside")
	tb.link(tb.sw, "out0", out, "eth0", netip.Prefix{}, netip.MustParsePrefix("203.0.113.1/24"))
	must(tb.t, swnl.LinkSetMaster(linkIn(tb.t, swnl, "out0"), ext))
	for i, h := range tb.hosts {
		tb.link(tb.sw, fmt.Sprintf("ext%d", i), h.cfg.NetNS, "uplink-ext", netip.Prefix{}, netip.Prefix{})
		must(tb.t, swnl.LinkSetMaster(linkIn(tb.t, swnl, fmt.Sprintf("ext%d", i)), ext))
		must(tb.t, h.EnsureExternal(public, "uplink-ext"))
	}
	return out
}

// TestFloatingIP: a floating address reaches its instance from outside
// (DNAT, through the instance's security rules), the instance's own
// traffic leaves with it (SNAT), and when the instance moves to another
// host the address follows.
func TestFloatingIP(t *testing.T) {
	tb := newTestbed(t, 2)
	outside := tb.withOutside()
	fip := netip.MustParseAddr("203.0.113.10")
	a0 := tb.plug(0, netA, "a0", "10.20.0.10")
	serve(t, a0.ns, "0.0.0.0:8080", "a0 on host0")
	serve(t, outside, "203.0.113.1:9000", "outside")
	web := Rule{Ingress: true, Protocol: "tcp", PortMin: 8080, PortMax: 8080, Remotes: anywhere()}
	must(t, tb.hosts[0].ApplyFirewall([]FirewallPort{fwPort(a0, netA.VNI, web)}))
	// Egress on as well: the instance with a floating IP still leaves
	// through it (policy routing), not through the host.
	must(t, tb.hosts[0].SetRouter(netA.VNI, Router{Egress: true, External: public, Floating: []Floating{{Floating: fip, Fixed: a0.port.IP}}}))
	if err := reaches(outside, "203.0.113.10:8080", "hello from a0 on host0"); err != nil {
		t.Fatalf("outside -> floating IP: %v", err)
	}
	if err := blocked(outside, "203.0.113.10:9090"); err != nil {
		t.Errorf("a port no rule opens, through the floating IP: %v", err)
	}
	// A neighbour on the external network routing the tenant's subnet
	// through the router gets nowhere: only the floating address leads in.
	onl := tb.handle(outside)
	defer onl.Close()
	must(t, onl.RouteAdd(&netlink.Route{Dst: &net.IPNet{IP: net.IP{10, 20, 0, 0}, Mask: net.CIDRMask(24, 32)}, Gw: net.IP(fip.AsSlice())}))
	if err := blocked(outside, "10.20.0.10:8080"); err != nil {
		t.Errorf("the fixed address, routed through the router from outside: %v", err)
	}
	// The instance's own traffic leaves as the floating address: the
	// outside server sees it (it answers to whoever connects).
	seen := peersSeen(t, outside, "203.0.113.1:9001")
	if _, err := dial(a0.ns, "203.0.113.1:9001", 2e9); err != nil {
		t.Errorf("a0 -> outside: %v", err)
	}
	seenFrom(t, seen, "203.0.113.10:") // the floating address

	// The instance moves to host1 (same port, same address): the floating
	// IP goes with it.
	must(t, tb.hosts[0].SetRouter(netA.VNI, Router{}))
	must(t, tb.hosts[0].DetachPort(a0.port.ID))
	moved := a0.port
	moved.NetNS = tb.namespace("a0-moved")
	must(t, tb.hosts[1].EnsureNetwork(netA))
	if _, err := tb.hosts[1].AttachPort(netA, moved); err != nil {
		t.Fatal(err)
	}
	serve(t, moved.NetNS, "0.0.0.0:8080", "a0 on host1")
	must(t, tb.hosts[1].ApplyFirewall([]FirewallPort{fwPort(instance{port: moved}, netA.VNI, web)}))
	must(t, tb.hosts[1].SetRouter(netA.VNI, Router{External: public, Floating: []Floating{{Floating: fip, Fixed: moved.IP}}}))
	if err := reaches(outside, "203.0.113.10:8080", "hello from a0 on host1"); err != nil {
		t.Errorf("after the move: %v", err)
	}
	// Removing the network removes its external side too.
	must(t, tb.hosts[1].RemoveNetwork(netA.VNI))
	nl := tb.handle(tb.hosts[1].cfg.NetNS)
	defer nl.Close()
	if _, err := nl.LinkByName(externalName(netA.VNI)); err == nil {
		t.Errorf("the router's external veth stayed")
	}
}
