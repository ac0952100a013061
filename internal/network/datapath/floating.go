package datapath

import (
	"fmt"
	"net"
	"net/netip"
	"strconv"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Floating IPs: an external network is a bridge on each host with the
// uplink the admin names (no tunnel: it is the provider's layer 2). A
// tenant network whose instance on this host has floating IPs gets its
// router joined to that bridge (a veth, "ext" inside the router), holding
// the floating addresses, with a default route through the external
// gateway and NAT: DNAT of each floating address to its instance's fixed
// one, SNAT of the instance's traffic going out. The router does it on the
// host where the instance runs, so the address moves with the instance
// (announced by gratuitous ARP).

// Floating is a floating address and the fixed one it stands for.
type Floating struct {
	Floating, Fixed netip.Addr
}

// EnsureExternal makes (or repairs) an external network's bridge on this
// host, with uplink (a device of the host's namespace, "" for none) in it.
func (h *Host) EnsureExternal(n Network, uplink string) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if err := h.sysctls(); err != nil {
		return err
	}
	br, err := h.ensureLink(&netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: BridgeName(n.VNI)}})
	if err != nil {
		return err
	}
	if err := h.ensureAddrs(br, nil); err != nil {
		return err
	}
	if uplink != "" {
		up, err := h.nl.LinkByName(uplink)
		if err != nil {
			return fmt.Errorf("datapath: the uplink %q of external network %d: %w", uplink, n.VNI, err)
		}
		if err := h.plug(up, br); err != nil {
			return err
		}
	}
	return h.plug(br, nil)
}

func externalName(vni int64) string { return "ke" + strconv.FormatInt(vni, 10) }

// Router is what a tenant network's router on this host does beyond its
// network: egress NAT through the host, floating IPs of one external
// network.
type Router struct {
	Egress   bool
	External Network
	Floating []Floating
}

// SetRouter makes a tenant network's router on this host do exactly what
// r says: its egress link (egress.go), its external side holding the
// floating addresses, the policy routes and the NAT of both.
func (h *Host) SetRouter(vni int64, r Router) error {
	if err := h.setEgress(vni, r.Egress); err != nil {
		return err
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	rns := h.RouterNS(vni)
	if !mountedNS(rns) {
		if r.Egress || len(r.Floating) > 0 {
			return fmt.Errorf("datapath: network %d has no router here", vni)
		}
		return nil
	}
	var mac net.HardwareAddr
	if len(r.Floating) == 0 {
		if l, err := h.nl.LinkByName(externalName(vni)); err == nil {
			h.nl.LinkDel(l)
		}
	} else {
		br, err := h.nl.LinkByName(BridgeName(r.External.VNI))
		if err != nil {
			return fmt.Errorf("datapath: external network %d has no bridge here: %w", r.External.VNI, err)
		}
		var addrs []netip.Prefix
		for _, f := range r.Floating {
			addrs = append(addrs, netip.PrefixFrom(f.Floating, 32))
		}
		mac = vniMAC(0x02, vni)
		l, err := h.ensureVeth(externalName(vni), rns, "ext", mac, addrs, netip.Addr{})
		if err != nil {
			return err
		}
		if err := h.plug(l, br); err != nil {
			return err
		}
	}
	if err := routerRoutes(rns, r); err != nil {
		return err
	}
	if err := natTable(rns, r); err != nil {
		return err
	}
	if !r.Egress && len(r.Floating) == 0 {
		return nil
	}
	// The router forwards (its own network's traffic only: natTable's
	// filter), and tells the external network where its addresses are now.
	return inNamespace(rns, func() error {
		for _, f := range r.Floating {
			gratuitousARP("ext", mac, f.Floating)
		}
		return writeSysctl("net/ipv4/ip_forward", "1")
	})
}

// routerRoutes gives a router with floating IPs the external subnet on
// "ext", a table whose default route is the external gateway, and rules
// sending the floating IPs' fixed addresses to it.
func routerRoutes(rns string, r Router) error {
	nl, err := handleIn(rns)
	if err != nil {
		return err
	}
	defer nl.Close()
	if err := floatingRules(nl, r.Floating); err != nil {
		return err
	}
	if len(r.Floating) == 0 {
		return nil
	}
	l, err := nl.LinkByName("ext")
	if err != nil {
		return err
	}
	p := r.External.Prefix.Masked()
	dst := &net.IPNet{IP: net.IP(p.Addr().AsSlice()), Mask: net.CIDRMask(p.Bits(), 32)}
	for _, table := range []int{unix.RT_TABLE_MAIN, egressTable} {
		if err := nl.RouteReplace(&netlink.Route{LinkIndex: l.Attrs().Index, Scope: netlink.SCOPE_LINK, Dst: dst, Table: table}); err != nil {
			return fmt.Errorf("datapath: external subnet route: %w", err)
		}
	}
	if err := nl.RouteReplace(&netlink.Route{LinkIndex: l.Attrs().Index, Gw: net.IP(r.External.Gateway.AsSlice()), Table: egressTable}); err != nil {
		return fmt.Errorf("datapath: default route through %s: %w", r.External.Gateway, err)
	}
	return nil
}

// natTable replaces a router's "ip kumo-nat" table with the NAT of its
// floating addresses and of its egress (nothing: no table), and a filter
// that lets in from outside ("ext", "up") only what was DNATed to a
// floating IP's instance and replies: a neighbour routing the tenant's
// subnet through the router must not reach fixed addresses.
func natTable(rns string, r Router) error {
	fips := r.Floating
	ns, err := netns.GetFromPath(rns)
	if err != nil {
		return err
	}
	defer ns.Close()
	conn, err := nftConn(int(ns))
	if err != nil {
		return err
	}
	t := &nftables.Table{Family: nftables.TableFamilyIPv4, Name: "kumo-nat"}
	conn.AddTable(t)
	conn.DelTable(t)
	if len(fips) > 0 || r.Egress {
		conn.AddTable(t)
		accept := nftables.ChainPolicyAccept
		pre := conn.AddChain(&nftables.Chain{Name: "prerouting", Table: t, Type: nftables.ChainTypeNAT,
			Hooknum: nftables.ChainHookPrerouting, Priority: nftables.ChainPriorityNATDest, Policy: &accept})
		post := conn.AddChain(&nftables.Chain{Name: "postrouting", Table: t, Type: nftables.ChainTypeNAT,
			Hooknum: nftables.ChainHookPostrouting, Priority: nftables.ChainPriorityNATSource, Policy: &accept})
		for _, f := range fips {
			conn.AddRule(&nftables.Rule{Table: t, Chain: pre, Exprs: concat(
				payload(expr.PayloadBaseNetworkHeader, 16, 4), cmp(expr.CmpOpEq, f.Floating.AsSlice()),
				[]expr.Any{&expr.Immediate{Register: 1, Data: f.Fixed.AsSlice()},
					&expr.NAT{Type: expr.NATTypeDestNAT, Family: unix.NFPROTO_IPV4, RegAddrMin: 1}})})
			conn.AddRule(&nftables.Rule{Table: t, Chain: post, Exprs: concat(
				payload(expr.PayloadBaseNetworkHeader, 12, 4), cmp(expr.CmpOpEq, f.Fixed.AsSlice()),
				ifname(expr.MetaKeyOIFNAME, "ext\x00"),
				[]expr.Any{&expr.Immediate{Register: 1, Data: f.Floating.AsSlice()},
					&expr.NAT{Type: expr.NATTypeSourceNAT, Family: unix.NFPROTO_IPV4, RegAddrMin: 1}})})
		}
		if r.Egress {
			conn.AddRule(&nftables.Rule{Table: t, Chain: post, Exprs: concat(ifname(expr.MetaKeyOIFNAME, "up\x00"), []expr.Any{&expr.Masq{}})})
		}
		fwd := conn.AddChain(&nftables.Chain{Name: "forward", Table: t, Type: nftables.ChainTypeFilter,
			Hooknum: nftables.ChainHookForward, Priority: nftables.ChainPriorityFilter, Policy: &accept})
		for _, in := range []string{"ext", "up"} {
			conn.AddRule(&nftables.Rule{Table: t, Chain: fwd, Exprs: concat(iif(in), ctState(expr.CtStateBitESTABLISHED|expr.CtStateBitRELATED), verdict(expr.VerdictAccept))})
			conn.AddRule(&nftables.Rule{Table: t, Chain: fwd, Exprs: concat(iif(in), ctStatus(ipsDstNAT), verdict(expr.VerdictAccept))})
			conn.AddRule(&nftables.Rule{Table: t, Chain: fwd, Exprs: concat(iif(in), verdict(expr.VerdictDrop))})
		}
	}
	if err := conn.Flush(); err != nil {
		return fmt.Errorf("datapath: router NAT: %w", err)
	}
	return nil
}

// gratuitousARP announces that ip is at mac on the device dev of the
// calling thread's namespace (best effort: a lost announcement only
// delays the move until the neighbours ask).
func gratuitousARP(dev string, mac net.HardwareAddr, ip netip.Addr) {
	ifi, err := net.InterfaceByName(dev)
	if err != nil {
		return
	}
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW, int(htons(unix.ETH_P_ARP)))
	if err != nil {
		return
	}
	defer unix.Close(fd)
	bcast := net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}
	pkt := make([]byte, 0, 42)
	pkt = append(pkt, bcast...)
	pkt = append(pkt, mac...)
	pkt = append(pkt, 0x08, 0x06)                // ARP
	pkt = append(pkt, 0, 1, 0x08, 0, 6, 4, 0, 1) // Ethernet, IPv4, request
	pkt = append(pkt, mac...)
	pkt = append(pkt, ip.AsSlice()...)
	pkt = append(pkt, 0, 0, 0, 0, 0, 0)
	pkt = append(pkt, ip.AsSlice()...)
	to := &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ARP), Ifindex: ifi.Index, Halen: 6}
	copy(to.Addr[:], bcast)
	unix.Sendto(fd, pkt, 0, to)
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }
