package datapath

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"sort"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// FirewallPort is a local port as the firewall sees it: where it is, what
// it may send from, and its security rules.
type FirewallPort struct {
	VNI int64
	ID  string // the port id (its device is PortName(ID))
	MAC net.HardwareAddr
	IP  netip.Addr
	// Gateway is the network's gateway, whose DHCP answers pass.
	Gateway netip.Addr
	Rules   []Rule
}

// Rule allows traffic of a protocol ("tcp", "udp", "icmp" or "any") and,
// for tcp and udp, a destination port range (0-0: any), from (Ingress) or
// to the remotes.
type Rule struct {
	Ingress          bool
	Protocol         string
	PortMin, PortMax uint16
	Remotes          []netip.Prefix
}

const tableName = "kumo"

// ApplyFirewall replaces the host's kumo tables, in one netlink
// transaction (nothing is ever half-applied), with rules for these ports:
//
//   - inet kumo (bridged IPv4, seen through br_netfilter): a conntrack zone
//     per network, so tenants with the same addresses never share a flow;
//     replies (established, related) pass; then the sender's egress rules
//     if it is a local port, then the receiver's ingress rules if it is
//     one (default: deny ingress); traffic to the router or to another
//     host's port passes after the sender's egress check (that host checks
//     its own ports' ingress).
//   - bridge kumo: anti-spoofing (a port sends only from its MAC and
//     address, ARP included; DHCP from 0.0.0.0 is let through; no IPv6),
//     and a router's traffic never crosses the tunnel: every host answers
//     its own instances as the gateway.
func (h *Host) ApplyFirewall(ports []FirewallPort) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	sort.Slice(ports, func(i, j int) bool { return ports[i].ID < ports[j].ID })
	conn, err := nftConn(int(h.ns))
	if err != nil {
		return fmt.Errorf("datapath: nftables: %w", err)
	}
	inet := &nftables.Table{Family: nftables.TableFamilyINet, Name: tableName}
	br := &nftables.Table{Family: nftables.TableFamilyBridge, Name: tableName}
	for _, t := range []*nftables.Table{inet, br} {
		conn.AddTable(t)
		conn.DelTable(t)
		conn.AddTable(t)
	}
	accept := nftables.ChainPolicyAccept

	// Conntrack zones, set before conntrack sees the packet.
	raw := conn.AddChain(&nftables.Chain{Name: "zones", Table: inet, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookPrerouting, Priority: nftables.ChainPriorityRef(-310), Policy: &accept})
	vnis := map[int64]bool{}
	for _, p := range ports {
		vnis[p.VNI] = true
	}
	for vni := range vnis {
		l, err := h.nl.LinkByName(BridgeName(vni))
		if err != nil {
			continue
		}
		zone := make([]byte, 2)
		binary.NativeEndian.PutUint16(zone, uint16(l.Attrs().Index&0xffff))
		conn.AddRule(&nftables.Rule{Table: inet, Chain: raw, Exprs: concat(iif(BridgeName(vni)),
			[]expr.Any{&expr.Immediate{Register: 1, Data: zone}, &expr.Ct{Key: expr.CtKeyZONE, Register: 1, SourceRegister: true}})})
	}

	// Egress links from routers (egress.go): marked for the masquerade.
	mark := make([]byte, 4)
	binary.NativeEndian.PutUint32(mark, egressMark)
	conn.AddRule(&nftables.Rule{Table: inet, Chain: raw, Exprs: concat(iifPrefix("kn"),
		[]expr.Any{&expr.Immediate{Register: 1, Data: mark}, &expr.Meta{Key: expr.MetaKeyMARK, Register: 1, SourceRegister: true}})})
	// The host answers routers' egress links nothing but replies.
	input := conn.AddChain(&nftables.Chain{Name: "input", Table: inet, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookInput, Priority: nftables.ChainPriorityFilter, Policy: &accept})
	conn.AddRule(&nftables.Rule{Table: inet, Chain: input, Exprs: concat(iifPrefix("kn"), ctState(expr.CtStateBitESTABLISHED|expr.CtStateBitRELATED), verdict(expr.VerdictAccept))})
	conn.AddRule(&nftables.Rule{Table: inet, Chain: input, Exprs: concat(iifPrefix("kn"), verdict(expr.VerdictDrop))})
	post := conn.AddChain(&nftables.Chain{Name: "postrouting", Table: inet, Type: nftables.ChainTypeNAT,
		Hooknum: nftables.ChainHookPostrouting, Priority: nftables.ChainPriorityNATSource, Policy: &accept})
	conn.AddRule(&nftables.Rule{Table: inet, Chain: post, Exprs: concat([]expr.Any{&expr.Meta{Key: expr.MetaKeyMARK, Register: 1}},
		cmp(expr.CmpOpEq, mark), []expr.Any{&expr.Masq{}})})

	fwd := conn.AddChain(&nftables.Chain{Name: "forward", Table: inet, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookForward, Priority: nftables.ChainPriorityFilter, Policy: &accept})
	// One router's egress never reaches another's.
	conn.AddRule(&nftables.Rule{Table: inet, Chain: fwd, Exprs: concat(iifPrefix("kn"), oifPrefix("kn"), verdict(expr.VerdictDrop))})
	conn.AddRule(&nftables.Rule{Table: inet, Chain: fwd, Exprs: concat(iifPrefix("kbr"), ctState(expr.CtStateBitESTABLISHED|expr.CtStateBitRELATED), verdict(expr.VerdictAccept))})
	conn.AddRule(&nftables.Rule{Table: inet, Chain: fwd, Exprs: concat(iifPrefix("kbr"), ctState(expr.CtStateBitINVALID), verdict(expr.VerdictDrop))})
	for _, p := range ports {
		out := conn.AddChain(&nftables.Chain{Name: "out-" + PortName(p.ID), Table: inet})
		in := conn.AddChain(&nftables.Chain{Name: "in-" + PortName(p.ID), Table: inet})
		// DHCP answers come from the gateway to port 68, not as replies
		// conntrack can pair with the client's broadcast.
		if p.Gateway.IsValid() {
			conn.AddRule(&nftables.Rule{Table: inet, Chain: in, Exprs: concat(ipAddr(true, netip.PrefixFrom(p.Gateway, 32)),
				proto(Rule{Protocol: "udp", PortMin: 68, PortMax: 68}), verdict(expr.VerdictAccept))})
		}
		for _, r := range p.Rules {
			c, v := out, expr.VerdictReturn
			if r.Ingress {
				c, v = in, expr.VerdictAccept
			}
			for _, rem := range r.Remotes {
				conn.AddRule(&nftables.Rule{Table: inet, Chain: c, Exprs: concat(ipAddr(r.Ingress, rem), proto(r), verdict(v))})
			}
		}
		conn.AddRule(&nftables.Rule{Table: inet, Chain: out, Exprs: verdict(expr.VerdictDrop)})
		conn.AddRule(&nftables.Rule{Table: inet, Chain: in, Exprs: verdict(expr.VerdictDrop)})
		host := netip.PrefixFrom(p.IP, 32)
		conn.AddRule(&nftables.Rule{Table: inet, Chain: fwd, Exprs: concat(iif(BridgeName(p.VNI)), ipAddr(true, host), jump(out.Name))})
	}
	for _, p := range ports {
		conn.AddRule(&nftables.Rule{Table: inet, Chain: fwd, Exprs: concat(iif(BridgeName(p.VNI)), ipAddr(false, netip.PrefixFrom(p.IP, 32)), jump("in-"+PortName(p.ID)))})
	}

	// Layer 2: anti-spoofing and routers kept local.
	bpre := conn.AddChain(&nftables.Chain{Name: "prerouting", Table: br, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookPrerouting, Priority: nftables.ChainPriorityRef(-200), Policy: &accept})
	for _, p := range ports {
		dev := PortName(p.ID)
		add := func(e ...[]expr.Any) {
			conn.AddRule(&nftables.Rule{Table: br, Chain: bpre, Exprs: concat(append([][]expr.Any{iif(dev)}, e...)...)})
		}
		add(etherSaddr(p.MAC, expr.CmpOpNeq), verdict(expr.VerdictDrop))
		add(etherType(unix.ETH_P_ARP), arpSender(p.MAC, p.IP), verdict(expr.VerdictAccept))
		add(etherType(unix.ETH_P_ARP), arpSender(p.MAC, netip.IPv4Unspecified()), verdict(expr.VerdictAccept)) // address probes
		add(etherType(unix.ETH_P_ARP), verdict(expr.VerdictDrop))
		add(etherType(unix.ETH_P_IP), payload(expr.PayloadBaseNetworkHeader, 12, 4), cmp(expr.CmpOpEq, p.IP.AsSlice()), verdict(expr.VerdictAccept))
		add(etherType(unix.ETH_P_IP), payload(expr.PayloadBaseNetworkHeader, 12, 4), cmp(expr.CmpOpEq, []byte{0, 0, 0, 0}),
			payload(expr.PayloadBaseNetworkHeader, 9, 1), cmp(expr.CmpOpEq, []byte{unix.IPPROTO_UDP}),
			payload(expr.PayloadBaseTransportHeader, 2, 2), cmp(expr.CmpOpEq, be16(67)), verdict(expr.VerdictAccept))
		add(verdict(expr.VerdictDrop))
	}
	bfwd := conn.AddChain(&nftables.Chain{Name: "forward", Table: br, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookForward, Priority: nftables.ChainPriorityRef(-200), Policy: &accept})
	conn.AddRule(&nftables.Rule{Table: br, Chain: bfwd, Exprs: concat(iifPrefix("kg"), oifPrefix("kvx"), verdict(expr.VerdictDrop))})
	conn.AddRule(&nftables.Rule{Table: br, Chain: bfwd, Exprs: concat(iifPrefix("kvx"), oifPrefix("kg"), verdict(expr.VerdictDrop))})
	if err := conn.Flush(); err != nil {
		return fmt.Errorf("datapath: nftables: %w", err)
	}
	return nil
}

// nftConn is an nftables connection in a namespace whose socket can take
// the kernel's answer to a whole ruleset in one transaction: every
// message of the batch is acknowledged (rules are echoed back), which
// overflows the default receive buffer (ENOBUFS) with a few ports, and
// the batch itself outgrows the default send buffer with a few hundred.
func nftConn(nsFd int) (*nftables.Conn, error) {
	return nftables.New(nftables.WithNetNSFd(nsFd), nftables.WithSockOptions(func(c *netlink.Conn) error {
		raw, err := c.SyscallConn()
		if err != nil {
			return err
		}
		var serr error
		err = raw.Control(func(fd uintptr) {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 64<<20)
			if serr == nil { // the whole batch goes in one sendmsg
				serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, 64<<20)
			}
		})
		if err != nil {
			return err
		}
		return serr
	}))
}

// RemoveFirewall deletes the kumo tables.
func (h *Host) RemoveFirewall() error {
	conn, err := nftables.New(nftables.WithNetNSFd(int(h.ns)))
	if err != nil {
		return err
	}
	for _, f := range []nftables.TableFamily{nftables.TableFamilyINet, nftables.TableFamilyBridge} {
		t := &nftables.Table{Family: f, Name: tableName}
		conn.AddTable(t)
		conn.DelTable(t)
	}
	return conn.Flush()
}

func concat(parts ...[]expr.Any) []expr.Any {
	var out []expr.Any
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

func verdict(k expr.VerdictKind) []expr.Any { return []expr.Any{&expr.Verdict{Kind: k}} }
func jump(chain string) []expr.Any {
	return []expr.Any{&expr.Verdict{Kind: expr.VerdictJump, Chain: chain}}
}

func cmp(op expr.CmpOp, data []byte) []expr.Any {
	return []expr.Any{&expr.Cmp{Op: op, Register: 1, Data: data}}
}

func payload(base expr.PayloadBase, off, n uint32) []expr.Any {
	return []expr.Any{&expr.Payload{DestRegister: 1, Base: base, Offset: off, Len: n}}
}

// iif matches an interface name (NUL-terminated, as the kernel keeps
// it); iifPrefix and oifPrefix match the start of one ("kbr": every
// bridge), since cmp compares only as many bytes as it is given.
func iif(name string) []expr.Any    { return ifname(expr.MetaKeyIIFNAME, name+"\x00") }
func iifPrefix(p string) []expr.Any { return ifname(expr.MetaKeyIIFNAME, p) }
func oifPrefix(p string) []expr.Any { return ifname(expr.MetaKeyOIFNAME, p) }
func ifname(key expr.MetaKey, data string) []expr.Any {
	return concat([]expr.Any{&expr.Meta{Key: key, Register: 1}}, cmp(expr.CmpOpEq, []byte(data)))
}

func be16(v uint16) []byte { b := make([]byte, 2); binary.BigEndian.PutUint16(b, v); return b }

// ctState matches connections in any of these states.
func ctState(bits uint32) []expr.Any { return ctBits(expr.CtKeySTATE, bits) }

// ctBits matches connections with any of these bits in a conntrack key
// (state, status).
func ctBits(key expr.CtKey, bits uint32) []expr.Any {
	mask := make([]byte, 4)
	binary.NativeEndian.PutUint32(mask, bits)
	return []expr.Any{&expr.Ct{Register: 1, Key: key},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: mask, Xor: make([]byte, 4)},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: make([]byte, 4)}}
}

// ipsDstNAT is conntrack's "destination NATed" status bit.
const ipsDstNAT = 1 << 5

// ctStatus matches connections with any of these status bits.
func ctStatus(bits uint32) []expr.Any { return ctBits(expr.CtKeySTATUS, bits) }

// ipAddr matches an IPv4 packet's source (src) or destination address
// against a prefix.
func ipAddr(src bool, p netip.Prefix) []expr.Any {
	off := uint32(16)
	if src {
		off = 12
	}
	out := concat([]expr.Any{&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1}}, cmp(expr.CmpOpEq, []byte{unix.NFPROTO_IPV4}),
		payload(expr.PayloadBaseNetworkHeader, off, 4))
	if p.Bits() == 0 {
		return out
	}
	if p.Bits() < 32 {
		out = append(out, &expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: net.CIDRMask(p.Bits(), 32), Xor: make([]byte, 4)})
	}
	return append(out, cmp(expr.CmpOpEq, p.Masked().Addr().AsSlice())...)
}

// proto matches a rule's protocol and destination port range.
func proto(r Rule) []expr.Any {
	var num byte
	switch r.Protocol {
	case "tcp":
		num = unix.IPPROTO_TCP
	case "udp":
		num = unix.IPPROTO_UDP
	case "icmp":
		num = unix.IPPROTO_ICMP
	default:
		return nil
	}
	out := concat([]expr.Any{&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1}}, cmp(expr.CmpOpEq, []byte{num}))
	if (num == unix.IPPROTO_TCP || num == unix.IPPROTO_UDP) && r.PortMin > 0 {
		out = append(out, payload(expr.PayloadBaseTransportHeader, 2, 2)...)
		out = append(out, &expr.Range{Op: expr.CmpOpEq, Register: 1, FromData: be16(r.PortMin), ToData: be16(r.PortMax)})
	}
	return out
}

func etherType(t uint16) []expr.Any {
	return concat([]expr.Any{&expr.Meta{Key: expr.MetaKeyPROTOCOL, Register: 1}}, cmp(expr.CmpOpEq, be16(t)))
}

func etherSaddr(mac net.HardwareAddr, op expr.CmpOp) []expr.Any {
	return concat(payload(expr.PayloadBaseLLHeader, 6, 6), cmp(op, mac))
}

// arpSender matches an ARP packet whose sender hardware and protocol
// addresses are these.
func arpSender(mac net.HardwareAddr, ip netip.Addr) []expr.Any {
	return concat(payload(expr.PayloadBaseNetworkHeader, 8, 6), cmp(expr.CmpOpEq, mac),
		payload(expr.PayloadBaseNetworkHeader, 14, 4), cmp(expr.CmpOpEq, ip.AsSlice()))
}
