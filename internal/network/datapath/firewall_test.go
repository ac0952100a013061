package datapath

import (
	"context"
	"net"
	"net/netip"
	"testing"
	"time"
)

func anywhere() []netip.Prefix { return []netip.Prefix{netip.MustParsePrefix("0.0.0.0/0")} }

func fwPort(in instance, vni int64, rules ...Rule) FirewallPort {
	return FirewallPort{VNI: vni, ID: in.port.ID, MAC: in.port.MAC, IP: in.port.IP, Gateway: netA.Gateway,
		Rules: append([]Rule{{Protocol: "any", Remotes: anywhere()}}, rules...)} // all egress, as a new group
}

// TestSecurityGroups: ingress is denied unless a rule opens it (by CIDR or
// by the remote's address, as a remote group resolves), replies pass, and
// changing the rules opens and closes a port.
func TestSecurityGroups(t *testing.T) {
	tb := newTestbed(t, 2)
	a0 := tb.plug(0, netA, "a0", "10.20.0.10")
	a2 := tb.plug(0, netA, "a2", "10.20.0.12")
	a1 := tb.plug(1, netA, "a1", "10.20.0.11")
	must(t, tb.hosts[0].SetPeers(netA.VNI, peersOf(tb, map[int][]instance{1: {a1}})))
	must(t, tb.hosts[1].SetPeers(netA.VNI, peersOf(tb, map[int][]instance{0: {a0, a2}})))
	for _, in := range []instance{a0, a1, a2} {
		serve(t, in.ns, in.port.IP.String()+":8080", in.ns)
		serve(t, in.ns, in.port.IP.String()+":9090", in.ns)
	}
	web := Rule{Ingress: true, Protocol: "tcp", PortMin: 8080, PortMax: 8080, Remotes: anywhere()}
	must(t, tb.hosts[0].ApplyFirewall([]FirewallPort{fwPort(a0, netA.VNI, web), fwPort(a2, netA.VNI)}))
	must(t, tb.hosts[1].ApplyFirewall([]FirewallPort{fwPort(a1, netA.VNI)}))
	check := func(what string, from instance, to string, open bool) {
		t.Helper()
		var err error
		if open {
			err = reaches(from.ns, to, "hello")
		} else {
			err = blocked(from.ns, to)
		}
		if err != nil {
			t.Errorf("%s: %v", what, err)
		}
	}
	check("across hosts to an opened port", a1, "10.20.0.10:8080", true)
	check("on one host to an opened port", a2, "10.20.0.10:8080", true)
	check("to a port no rule opens", a1, "10.20.0.10:9090", false)
	check("to an instance without ingress rules, across hosts", a0, "10.20.0.11:8080", false)
	check("to an instance without ingress rules, on one host", a0, "10.20.0.12:8080", false)

	// a1 opens 9090 to a0 alone (a remote group with one member).
	only := Rule{Ingress: true, Protocol: "tcp", PortMin: 9090, PortMax: 9090, Remotes: []netip.Prefix{netip.MustParsePrefix("10.20.0.10/32")}}
	must(t, tb.hosts[1].ApplyFirewall([]FirewallPort{fwPort(a1, netA.VNI, only)}))
	check("a rule opened it for a0", a0, "10.20.0.11:9090", true)
	check("but not for a2", a2, "10.20.0.11:9090", false)
	// And closes it again.
	must(t, tb.hosts[1].ApplyFirewall([]FirewallPort{fwPort(a1, netA.VNI)}))
	check("the rule was removed", a0, "10.20.0.11:9090", false)

	// Egress: a port whose groups allow no egress sends nothing new.
	must(t, tb.hosts[0].ApplyFirewall([]FirewallPort{fwPort(a0, netA.VNI, web), {VNI: netA.VNI, ID: a2.port.ID, MAC: a2.port.MAC, IP: a2.port.IP}}))
	check("egress denied", a2, "10.20.0.10:8080", false)
	must(t, tb.hosts[0].RemoveFirewall())
	check("no firewall", a2, "10.20.0.12:9090", true)
}

// TestAntiSpoofing: a port that sends from another address or MAC than
// its own is dropped; restored, it works again.
func TestAntiSpoofing(t *testing.T) {
	tb := newTestbed(t, 1)
	a0 := tb.plug(0, netA, "a0", "10.20.0.10")
	a1 := tb.plug(0, netA, "a1", "10.20.0.11")
	serve(t, a1.ns, "0.0.0.0:8080", "a1")
	open := Rule{Ingress: true, Protocol: "any", Remotes: anywhere()}
	must(t, tb.hosts[0].ApplyFirewall([]FirewallPort{fwPort(a0, netA.VNI, open), fwPort(a1, netA.VNI, open)}))
	if err := reaches(a0.ns, "10.20.0.11:8080", "hello from a1"); err != nil {
		t.Fatalf("before spoofing: %v", err)
	}
	nl := tb.handle(a0.ns)
	defer nl.Close()
	eth := linkIn(t, nl, "eth0")
	// Another address of the same subnet on a0's interface.
	spoofed := netip.MustParseAddr("10.20.0.99")
	must(t, nl.AddrAdd(eth, mustAddr("10.20.0.99/24")))
	err := inNamespace(a0.ns, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IP(spoofed.AsSlice())}}
		c, err := d.DialContext(ctx, "tcp4", "10.20.0.11:8080")
		if err == nil {
			c.Close()
		}
		return err
	})
	if err == nil {
		t.Errorf("a spoofed source address got through")
	}
	must(t, nl.AddrDel(eth, mustAddr("10.20.0.99/24")))
	// Another MAC.
	must(t, nl.LinkSetHardwareAddr(eth, net.HardwareAddr{2, 0, 0xde, 0xad, 0xbe, 0xef}))
	if err := blocked(a0.ns, "10.20.0.11:8080"); err != nil {
		t.Errorf("a spoofed MAC: %v", err)
	}
	must(t, nl.LinkSetHardwareAddr(eth, a0.port.MAC))
	if err := reaches(a0.ns, "10.20.0.11:8080", "hello from a1"); err != nil {
		t.Errorf("after restoring its MAC: %v", err)
	}
}
