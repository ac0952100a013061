package datapath

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Egress NAT (opt-in, off by default): a tenant network's router on this
// host gets a way out through the host, as Incus's ipv4.nat does. A veth
// joins the router ("up") and the host (kn<VNI>) on a /30 of 100.64.0.0/10;
// the router masquerades its network behind its end (so tenants' equal
// subnets never meet in the host's routing table), and the host
// masquerades that behind its own address on its default route. The host
// accepts nothing from kn* but replies (firewall.go), and forwards nothing
// between them. Instances with a floating IP leave through it instead
// (policy routing in the router, floating.go).

// egressTable is the routing table of floating IPs' fixed addresses in a
// router; the main table's default route is the egress one.
const egressTable = 100

// egressMark marks packets from routers' egress links for the host's
// masquerade.
const egressMark = 0x6b75

func egressName(vni int64) string { return "kn" + strconv.FormatInt(vni, 10) }

// transfer is the /30 of a network's egress link on a host: the host's
// end and the router's.
func transfer(vni int64) (host, router netip.Addr) {
	base := binary.BigEndian.Uint32([]byte{100, 64, 0, 0}) + uint32(vni%(1<<20))*4
	return u32addr(base + 1), u32addr(base + 2)
}

func u32addr(v uint32) netip.Addr {
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], v)
	return netip.AddrFrom4(b)
}

// setEgress turns a tenant network's egress link on this host on or off
// (SetRouter adds the NAT).
func (h *Host) setEgress(vni int64, on bool) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	rns := h.RouterNS(vni)
	name := egressName(vni)
	if !on {
		if l, err := h.nl.LinkByName(name); err == nil {
			h.nl.LinkDel(l)
		}
		return nil
	}
	if !mountedNS(rns) {
		return fmt.Errorf("datapath: network %d has no router here", vni)
	}
	hostEnd, routerEnd := transfer(vni)
	if _, err := h.nl.LinkByName(name); err != nil {
		// Another network's link on the same /30 (VNIs equal modulo 2^20)
		// would make both unreachable: refuse instead.
		addrs, _ := h.nl.AddrList(nil, unix.AF_INET)
		for _, a := range addrs {
			if toPrefix(a.IPNet).Addr() == hostEnd {
				return fmt.Errorf("datapath: network %d: its egress link %s is taken by another network here", vni, hostEnd)
			}
		}
	}
	l, err := h.ensureVeth(name, rns, "up", vniMAC(0x03, vni), []netip.Prefix{netip.PrefixFrom(routerEnd, 30)}, netip.Addr{})
	if err != nil {
		return err
	}
	if err := h.ensureAddrs(l, []netip.Prefix{netip.PrefixFrom(hostEnd, 30)}); err != nil {
		return err
	}
	if err := h.plug(l, nil); err != nil {
		return err
	}
	if err := inNamespace(h.cfg.NetNS, func() error { return writeSysctl("net/ipv4/ip_forward", "1") }); err != nil {
		return err
	}
	nl, err := handleIn(rns)
	if err != nil {
		return err
	}
	defer nl.Close()
	up, err := nl.LinkByName("up")
	if err != nil {
		return err
	}
	if err := nl.RouteReplace(&netlink.Route{LinkIndex: up.Attrs().Index, Gw: net.IP(hostEnd.AsSlice())}); err != nil {
		return fmt.Errorf("datapath: the router's default route: %w", err)
	}
	return nil
}

// floatingRules makes a router's policy rules send each floating IP's
// fixed address out through table egressTable (the external network),
// and only those.
func floatingRules(nl *netlink.Handle, fips []Floating) error {
	want := map[netip.Addr]bool{}
	for _, f := range fips {
		want[f.Fixed] = true
	}
	rules, err := nl.RuleList(unix.AF_INET)
	if err != nil {
		return err
	}
	for _, r := range rules {
		if r.Table != egressTable {
			continue
		}
		if r.Src != nil {
			if a, ok := netip.AddrFromSlice(r.Src.IP.To4()); ok && want[a] {
				delete(want, a)
				continue
			}
		}
		r := r
		if err := nl.RuleDel(&r); err != nil && !errors.Is(err, unix.ENOENT) {
			return err
		}
	}
	for a := range want {
		r := netlink.NewRule()
		r.Family = unix.AF_INET
		r.Table = egressTable
		r.Priority = 100
		r.Src = &net.IPNet{IP: net.IP(a.AsSlice()), Mask: net.CIDRMask(32, 32)}
		if err := nl.RuleAdd(r); err != nil && !errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("datapath: policy rule for %s: %w", a, err)
		}
	}
	return nil
}
