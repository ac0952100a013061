package datapath

import (
	"net"
	"net/netip"
	"testing"
)

var (
	netA = Network{VNI: 100, Prefix: netip.MustParsePrefix("10.20.0.0/24"), Gateway: netip.MustParseAddr("10.20.0.1")}
	// netB is another tenant's network with the same addresses.
	netB = Network{VNI: 200, Prefix: netip.MustParsePrefix("10.20.0.0/24"), Gateway: netip.MustParseAddr("10.20.0.1")}
)

// peersOf is what the control plane would say of a network's ports on
// other hosts.
func peersOf(tb *testbed, insts map[int][]instance) []Peer {
	var out []Peer
	for i, is := range insts {
		p := Peer{VTEP: tb.hosts[i].cfg.VTEP}
		for _, in := range is {
			p.MACs = append(p.MACs, in.port.MAC)
		}
		out = append(out, p)
	}
	return out
}

// TestCrossHostAndIsolation: instances on one network reach each other
// across two hosts over VXLAN; another tenant's network with the very same
// addresses, on the same hosts, reaches neither.
func TestCrossHostAndIsolation(t *testing.T) {
	tb := newTestbed(t, 2)
	a0 := tb.plug(0, netA, "a0", "10.20.0.10")
	a1 := tb.plug(1, netA, "a1", "10.20.0.11")
	b1 := tb.plug(1, netB, "b1", "10.20.0.10")
	b0 := tb.plug(0, netB, "b0", "10.20.0.12")
	for i := range tb.hosts {
		must(t, tb.hosts[i].SetPeers(netA.VNI, peersOf(tb, map[int][]instance{0: {a0}, 1: {a1}})))
		must(t, tb.hosts[i].SetPeers(netB.VNI, peersOf(tb, map[int][]instance{0: {b0}, 1: {b1}})))
	}
	serve(t, a1.ns, "10.20.0.11:8080", "a1")
	serve(t, a0.ns, "10.20.0.10:8080", "a0")
	serve(t, b1.ns, "10.20.0.10:8080", "b1")
	if err := reaches(a0.ns, "10.20.0.11:8080", "hello from a1"); err != nil {
		t.Errorf("a0 -> a1 across hosts: %v", err)
	}
	if err := reaches(a1.ns, "10.20.0.10:8080", "hello from a0"); err != nil {
		t.Errorf("a1 -> a0 across hosts: %v", err)
	}
	// b0 asks for 10.20.0.10 on its own network: b1 answers, never a0.
	if err := reaches(b0.ns, "10.20.0.10:8080", "hello from b1"); err != nil {
		t.Errorf("b0 -> b1 on the other tenant's network: %v", err)
	}
	if err := blocked(b0.ns, "10.20.0.11:8080"); err != nil {
		t.Errorf("b0 reached a1 on another network: %v", err)
	}
	// The gateway answers in the network's router namespace on each
	// host; the host itself is out of reach.
	serve(t, tb.hosts[0].RouterNS(netA.VNI), "10.20.0.1:8081", "router")
	if err := reaches(a0.ns, "10.20.0.1:8081", "hello from router"); err != nil {
		t.Errorf("a0 -> its gateway: %v", err)
	}
	serve(t, tb.hosts[0].cfg.NetNS, "0.0.0.0:8082", "host")
	for _, addr := range []string{"198.18.0.1:8082", "10.20.0.1:8082"} {
		if err := blocked(a0.ns, addr); err != nil {
			t.Errorf("a0 reached the host at %s: %v", addr, err)
		}
	}
}

// TestEnsureIsIdempotentAndRepairs: running setup again changes nothing
// that is right; a deleted bridge and stale forwarding entries are put
// right; removing the network leaves no device.
func TestEnsureIsIdempotentAndRepairs(t *testing.T) {
	tb := newTestbed(t, 2)
	h := tb.hosts[0]
	a0 := tb.plug(0, netA, "a0", "10.20.0.10")
	tb.plug(0, netB, "b0", "10.20.0.12")
	nl := tb.handle(h.cfg.NetNS)
	defer nl.Close()
	brB := linkIn(t, nl, BridgeName(netB.VNI)).Attrs().Index
	before := linkIn(t, nl, BridgeName(netA.VNI)).Attrs().Index
	must(t, h.EnsureNetwork(netA))
	if _, err := h.AttachPort(netA, a0.port); err != nil {
		t.Fatal(err)
	}
	if after := linkIn(t, nl, BridgeName(netA.VNI)).Attrs().Index; after != before {
		t.Errorf("a second EnsureNetwork replaced the bridge (%d -> %d)", before, after)
	}
	// Someone deletes a bridge: setup again repairs it and leaves the
	// other network alone.
	must(t, nl.LinkDel(linkIn(t, nl, BridgeName(netA.VNI))))
	must(t, h.EnsureNetwork(netA))
	if _, err := h.AttachPort(netA, a0.port); err != nil {
		t.Fatal(err)
	}
	if got := linkIn(t, nl, BridgeName(netB.VNI)).Attrs().Index; got != brB {
		t.Errorf("repairing network A touched network B's bridge")
	}
	st, err := h.State()
	must(t, err)
	if len(st[netA.VNI]) != 1 || !st[netA.VNI][PortName(a0.port.ID)] || len(st[netB.VNI]) != 1 {
		t.Errorf("after repair: %v", st)
	}
	// Forwarding entries follow the peers given, stale ones go.
	mac := net.HardwareAddr{2, 0, 10, 20, 0, 99}
	must(t, h.SetPeers(netA.VNI, []Peer{{VTEP: netip.MustParseAddr("198.18.0.2"), MACs: []net.HardwareAddr{mac}}, {VTEP: netip.MustParseAddr("198.18.0.3")}}))
	must(t, h.SetPeers(netA.VNI, []Peer{{VTEP: netip.MustParseAddr("198.18.0.3")}}))
	fdb, err := nl.NeighList(linkIn(t, nl, VXLANName(netA.VNI)).Attrs().Index, 7 /* AF_BRIDGE */)
	must(t, err)
	var got []string
	for _, n := range fdb {
		if n.IP != nil {
			got = append(got, n.HardwareAddr.String()+">"+n.IP.String())
		}
	}
	if len(got) != 1 || got[0] != "00:00:00:00:00:00>198.18.0.3" {
		t.Errorf("forwarding entries: %v", got)
	}
	must(t, h.DetachPort(a0.port.ID))
	must(t, h.RemoveNetwork(netA.VNI))
	st, _ = h.State()
	if _, ok := st[netA.VNI]; ok {
		t.Errorf("network A still on the host: %v", st)
	}
	if _, err := nl.LinkByName(VXLANName(netA.VNI)); err == nil {
		t.Errorf("the VXLAN device stayed")
	}
}
