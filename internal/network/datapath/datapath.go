// Package datapath is the host side of kumo's virtual networks (what
// Neutron's L2, L3 and DHCP agents do, in one place): per network and
// host one Linux bridge, a VXLAN device whose forwarding entries point at
// the other hosts with ports on the network, and a router namespace
// holding the distributed gateway (the same address and MAC on every
// host, so an instance that moves keeps a valid ARP entry); veth pairs
// into containers' network namespaces and TAP devices for VMs; nftables
// for isolation, security groups and anti-spoofing (firewall.go); DHCP,
// DNS (dns.go) and metadata (services.go); floating IPs through external
// networks' bridges (floating.go) and opt-in egress NAT (egress.go).
//
// Everything is level-triggered: Ensure* calls make the kernel match what
// they are given, changing nothing that is right and repairing what is
// wrong, so an agent restart re-runs them safely. All of it runs in the
// host's network namespace, which is the agent's own in production and a
// namespace per simulated host in tests.
//
// Device names: kbr<VNI> (bridge), kvx<VNI> (VXLAN), kp<port id> (the
// host end of a port).
package datapath

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// VXLANPort is the IANA VXLAN UDP port.
const VXLANPort = 4789

// vxlanOverhead is what VXLAN over IPv4 adds to a frame.
const vxlanOverhead = 50

// MetadataIP is the metadata service's address, on every bridge.
var MetadataIP = netip.MustParseAddr("169.254.169.254")

// Config says where a host's datapath lives.
type Config struct {
	// NetNS is the path of the host's network namespace; "" is the
	// agent's own.
	NetNS string
	// VTEP is this host's underlay address, where its tunnels start; the
	// other hosts send this network's frames to it.
	VTEP netip.Addr
	// NSDir is where the routers' namespaces are mounted (default
	// /run/kumo/netns).
	NSDir string
	// UnderlayMTU is the underlay's MTU (default 1500); tenant devices
	// get 50 bytes less, room for the VXLAN header.
	UnderlayMTU int
	// ResolvConf names the host's resolvers, to which networks allowed
	// out forward outside names (default /etc/resolv.conf).
	ResolvConf string
}

// Network is one virtual network as a host needs it.
type Network struct {
	VNI     int64
	Prefix  netip.Prefix
	Gateway netip.Addr
	DNS     []netip.Addr
	DHCP    bool
	// Domain is the network's DNS domain ("app.kumo.internal"), where its
	// DNS server answers its instances' names (dns.go).
	Domain string
}

// Port is one attachment of an instance to a network.
type Port struct {
	// ID names the host-side device (kp + its first 12 hex digits).
	ID  string
	MAC net.HardwareAddr
	IP  netip.Addr
	// NetNS is a container's network namespace: the port is a veth pair
	// whose far end goes in there as eth0, addressed with IP and a
	// default route through the gateway. Empty for a VM: the port is a
	// TAP device that QEMU opens by name.
	NetNS string
}

// Peer is another host with ports on a network: its VTEP and their MACs.
type Peer struct {
	VTEP netip.Addr
	MACs []net.HardwareAddr
}

// Host is one host's datapath.
type Host struct {
	cfg Config
	nl  *netlink.Handle
	ns  netns.NsHandle
	mtu int

	mu        sync.Mutex
	sysctlsOK bool

	svcMu     sync.Mutex
	svcs      map[int64]*services
	resolvers *hostResolvers
}

// Open prepares a host's datapath: a netlink handle in its namespace. The
// kernel settings virtual networks need there (bridged traffic through
// the inet firewall) are made with the first network, so a host without
// networks is left as it was.
func Open(cfg Config) (*Host, error) {
	if !cfg.VTEP.Is4() {
		return nil, fmt.Errorf("datapath: the host's VTEP address %q is not IPv4", cfg.VTEP)
	}
	if cfg.NSDir == "" {
		cfg.NSDir = "/run/kumo/netns"
	}
	if cfg.UnderlayMTU == 0 {
		cfg.UnderlayMTU = 1500
	}
	if cfg.ResolvConf == "" {
		cfg.ResolvConf = "/etc/resolv.conf"
	}
	h := &Host{cfg: cfg, mtu: cfg.UnderlayMTU - vxlanOverhead, resolvers: &hostResolvers{path: cfg.ResolvConf, netns: cfg.NetNS}}
	var err error
	if cfg.NetNS == "" {
		h.ns, err = netns.Get()
	} else {
		h.ns, err = netns.GetFromPath(cfg.NetNS)
	}
	if err != nil {
		return nil, fmt.Errorf("datapath: namespace %q: %w", cfg.NetNS, err)
	}
	if h.nl, err = netlink.NewHandleAt(h.ns); err != nil {
		h.ns.Close()
		return nil, fmt.Errorf("datapath: netlink: %w", err)
	}
	return h, nil
}

// Close releases the handles (the devices stay).
func (h *Host) Close() {
	h.nl.Close()
	h.ns.Close()
}

// VTEP is the host's tunnel endpoint address.
func (h *Host) VTEP() netip.Addr { return h.cfg.VTEP }

// NSDir is where this host's namespaces are mounted.
func (h *Host) NSDir() string { return h.cfg.NSDir }

// MTU is the MTU of tenant devices on this host.
func (h *Host) MTU() int { return h.mtu }

// sysctls makes bridged IPv4 pass the inet firewall (br_netfilter), per
// namespace. The host routes nothing for tenants (their routers do, in
// their namespaces), so its forwarding setting is left alone.
func (h *Host) sysctls() error {
	if h.sysctlsOK {
		return nil
	}
	return inNamespace(h.cfg.NetNS, func() error {
		for _, kv := range [][2]string{
			{"net/bridge/bridge-nf-call-iptables", "1"},
			{"net/bridge/bridge-nf-call-arptables", "0"},
		} {
			if err := writeSysctl(kv[0], kv[1]); err != nil {
				return err
			}
		}
		h.sysctlsOK = true
		return nil
	})
}

// BridgeName names a network's bridge (VXLANName and PortName name its
// VXLAN device and a port's).
func BridgeName(vni int64) string { return "kbr" + strconv.FormatInt(vni, 10) }
func VXLANName(vni int64) string  { return "kvx" + strconv.FormatInt(vni, 10) }
func PortName(id string) string {
	id = strings.ReplaceAll(id, "-", "")
	if len(id) > 12 {
		id = id[:12]
	}
	return "kp" + id
}

// GatewayMAC is the distributed gateway's MAC on a network: the same on
// every host (02:01 and the VNI), never one of a port's (02:00...).
func GatewayMAC(vni int64) net.HardwareAddr { return vniMAC(0x01, vni) }

// vniMAC is a router-side MAC of a network: 02, the kind of link
// (01 gateway, 02 external side, 03 egress link), 00 and the VNI.
func vniMAC(kind byte, vni int64) net.HardwareAddr {
	return net.HardwareAddr{0x02, kind, 0, byte(vni >> 16), byte(vni >> 8), byte(vni)}
}

// plug puts a link into a bridge (br nil: none) and brings it up, where
// it is not already.
func (h *Host) plug(l, br netlink.Link) error {
	if br != nil && l.Attrs().MasterIndex != br.Attrs().Index {
		if err := h.nl.LinkSetMaster(l, br); err != nil {
			return fmt.Errorf("datapath: %s into %s: %w", l.Attrs().Name, br.Attrs().Name, err)
		}
	}
	if l.Attrs().Flags&net.FlagUp == 0 {
		if err := h.nl.LinkSetUp(l); err != nil {
			return fmt.Errorf("datapath: %s up: %w", l.Attrs().Name, err)
		}
	}
	return nil
}

// EnsureNetwork makes (or repairs) a network's devices on this host: its
// bridge, its VXLAN device on the bridge, and its router namespace, joined
// to the bridge by a veth pair whose far end holds the gateway and the
// metadata addresses. The host itself has no address on any tenant
// network, so it routes nothing between them and tenants cannot reach it:
// isolation by construction (as Neutron's qrouter namespaces; this kernel
// has no VRFs). Networks with the same addresses live side by side.
func (h *Host) EnsureNetwork(n Network) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !n.Prefix.Addr().Is4() || !n.Gateway.Is4() || n.VNI <= 0 || n.VNI >= 1<<24 {
		return fmt.Errorf("datapath: network %d: a VNI of 1..2^24-1, an IPv4 prefix and gateway are needed", n.VNI)
	}
	if err := h.sysctls(); err != nil {
		return err
	}
	br, err := h.ensureLink(&netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: BridgeName(n.VNI), MTU: h.mtu}})
	if err != nil {
		return err
	}
	if err := h.ensureAddrs(br, nil); err != nil {
		return err
	}
	vx, err := h.ensureLink(&netlink.Vxlan{LinkAttrs: netlink.LinkAttrs{Name: VXLANName(n.VNI), MTU: h.mtu},
		VxlanId: int(n.VNI), SrcAddr: net.IP(h.cfg.VTEP.AsSlice()), Port: VXLANPort, Learning: false})
	if err != nil {
		return err
	}
	rns := h.RouterNS(n.VNI)
	if err := NewNamespace(rns); err != nil {
		return err
	}
	gw, err := h.ensureVeth(gatewayName(n.VNI), rns, "gw", GatewayMAC(n.VNI),
		[]netip.Prefix{netip.PrefixFrom(n.Gateway, n.Prefix.Bits()), netip.PrefixFrom(MetadataIP, 32)}, netip.Addr{})
	if err != nil {
		return err
	}
	for _, l := range []netlink.Link{gw, vx} {
		if err := h.plug(l, br); err != nil {
			return err
		}
	}
	if err := h.plug(br, nil); err != nil {
		return err
	}
	// Every host's gateway has the same MAC, so the bridge must not learn
	// it behind the VXLAN device from another host's router: a sticky
	// static entry keeps it on the local router's port.
	fdb := &netlink.Neigh{LinkIndex: gw.Attrs().Index, Family: unix.AF_BRIDGE, Flags: netlink.NTF_MASTER | netlink.NTF_STICKY,
		State: netlink.NUD_NOARP, HardwareAddr: GatewayMAC(n.VNI)}
	if err := h.nl.NeighSet(fdb); err != nil {
		return fmt.Errorf("datapath: gateway forwarding entry on %s: %w", br.Attrs().Name, err)
	}
	return nil
}

// RouterNS is the path of a network's router namespace on this host.
func (h *Host) RouterNS(vni int64) string {
	return filepath.Join(h.cfg.NSDir, "router-"+strconv.FormatInt(vni, 10))
}

func gatewayName(vni int64) string { return "kg" + strconv.FormatInt(vni, 10) }

// ensureLink returns the link named as want, creating it, or replacing one
// of another kind or with other VXLAN settings.
func (h *Host) ensureLink(want netlink.Link) (netlink.Link, error) {
	name := want.Attrs().Name
	l, err := h.nl.LinkByName(name)
	if err == nil && sameKind(l, want) {
		if l.Attrs().MTU != want.Attrs().MTU && want.Attrs().MTU > 0 {
			if err := h.nl.LinkSetMTU(l, want.Attrs().MTU); err != nil {
				return nil, fmt.Errorf("datapath: %s mtu: %w", name, err)
			}
		}
		return l, nil
	}
	if err == nil {
		if err := h.nl.LinkDel(l); err != nil {
			return nil, fmt.Errorf("datapath: replacing %s: %w", name, err)
		}
	} else if !isNotFound(err) {
		return nil, fmt.Errorf("datapath: %s: %w", name, err)
	}
	if err := h.nl.LinkAdd(want); err != nil {
		return nil, fmt.Errorf("datapath: creating %s (%s): %w", name, want.Type(), err)
	}
	l, err = h.nl.LinkByName(name)
	// Not every kind takes its MTU at creation (a TAP is made by ioctl).
	if err == nil && want.Attrs().MTU > 0 && l.Attrs().MTU != want.Attrs().MTU {
		if err := h.nl.LinkSetMTU(l, want.Attrs().MTU); err != nil {
			return nil, fmt.Errorf("datapath: %s mtu: %w", name, err)
		}
	}
	return l, err
}

func sameKind(have, want netlink.Link) bool {
	if have.Type() != want.Type() {
		return false
	}
	if wv, ok := want.(*netlink.Vxlan); ok {
		hv := have.(*netlink.Vxlan)
		return hv.VxlanId == wv.VxlanId && hv.SrcAddr.Equal(wv.SrcAddr) && hv.Port == wv.Port && hv.Learning == wv.Learning
	}
	return true
}

// ensureAddrs makes a link hold exactly these IPv4 addresses.
func (h *Host) ensureAddrs(l netlink.Link, want []netip.Prefix) error {
	have, err := h.nl.AddrList(l, unix.AF_INET)
	if err != nil {
		return err
	}
	return syncAddrs(h.nl, l, have, want)
}

func syncAddrs(nl *netlink.Handle, l netlink.Link, have []netlink.Addr, want []netip.Prefix) error {
	keep := map[netip.Prefix]bool{}
	for _, a := range have {
		p := toPrefix(a.IPNet)
		if contains(want, p) {
			keep[p] = true
			continue
		}
		if err := nl.AddrDel(l, &a); err != nil {
			return fmt.Errorf("datapath: removing %s from %s: %w", p, l.Attrs().Name, err)
		}
	}
	for _, p := range want {
		if keep[p] {
			continue
		}
		a := &netlink.Addr{IPNet: &net.IPNet{IP: net.IP(p.Addr().AsSlice()), Mask: net.CIDRMask(p.Bits(), 32)}}
		if err := nl.AddrAdd(l, a); err != nil && !errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("datapath: adding %s to %s: %w", p, l.Attrs().Name, err)
		}
	}
	return nil
}

func toPrefix(n *net.IPNet) netip.Prefix {
	a, _ := netip.AddrFromSlice(n.IP.To4())
	ones, _ := n.Mask.Size()
	return netip.PrefixFrom(a, ones)
}

func contains(ps []netip.Prefix, p netip.Prefix) bool {
	for _, q := range ps {
		if q == p {
			return true
		}
	}
	return false
}

func macEqual(a, b net.HardwareAddr) bool { return a.String() == b.String() }

func isNotFound(err error) bool {
	var nf netlink.LinkNotFoundError
	return errors.As(err, &nf) || errors.Is(err, unix.ENODEV)
}

// SetPeers makes a network's VXLAN forwarding entries match the other
// hosts with ports on it: one all-zeros entry per host (broadcast, ARP and
// unknown unicast go to each, head-end replication) and one entry per
// remote port's MAC (unicast goes straight to its host). Stale entries go.
func (h *Host) SetPeers(vni int64, peers []Peer) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	vx, err := h.nl.LinkByName(VXLANName(vni))
	if err != nil {
		return fmt.Errorf("datapath: network %d has no VXLAN device here: %w", vni, err)
	}
	type entry struct{ mac, ip string }
	want := map[entry]bool{}
	zero := net.HardwareAddr{0, 0, 0, 0, 0, 0}
	for _, p := range peers {
		if p.VTEP == h.cfg.VTEP || !p.VTEP.Is4() {
			continue
		}
		want[entry{zero.String(), p.VTEP.String()}] = true
		for _, m := range p.MACs {
			want[entry{m.String(), p.VTEP.String()}] = true
		}
	}
	have, err := h.nl.NeighList(vx.Attrs().Index, unix.AF_BRIDGE)
	if err != nil {
		return err
	}
	for _, n := range have {
		if n.IP == nil { // the device's own (local) entries
			continue
		}
		e := entry{n.HardwareAddr.String(), n.IP.String()}
		if want[e] {
			delete(want, e)
			continue
		}
		if err := h.nl.NeighDel(&n); err != nil && !errors.Is(err, unix.ENOENT) {
			return fmt.Errorf("datapath: removing forwarding entry %s -> %s: %w", e.mac, e.ip, err)
		}
	}
	for e := range want {
		mac, _ := net.ParseMAC(e.mac)
		n := &netlink.Neigh{LinkIndex: vx.Attrs().Index, Family: unix.AF_BRIDGE, Flags: netlink.NTF_SELF,
			State: netlink.NUD_PERMANENT, HardwareAddr: mac, IP: net.ParseIP(e.ip)}
		if err := h.nl.NeighAppend(n); err != nil && !errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("datapath: forwarding entry %s -> %s: %w", e.mac, e.ip, err)
		}
	}
	return nil
}

// AttachPort makes (or repairs) a port's devices and plugs them into the
// network's bridge: a TAP for a VM, a veth pair into the container's
// namespace otherwise. It returns the host-side device's name.
func (h *Host) AttachPort(n Network, p Port) (string, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	br, err := h.nl.LinkByName(BridgeName(n.VNI))
	if err != nil {
		return "", fmt.Errorf("datapath: network %d has no bridge here: %w", n.VNI, err)
	}
	name := PortName(p.ID)
	var l netlink.Link
	if p.NetNS == "" {
		// A persistent TAP that no fd of this process holds (QEMU opens it).
		l, err = h.ensureLink(&netlink.Tuntap{LinkAttrs: netlink.LinkAttrs{Name: name, MTU: h.mtu}, Mode: netlink.TUNTAP_MODE_TAP,
			Flags: netlink.TUNTAP_DEFAULTS | netlink.TUNTAP_NO_PI})
	} else {
		l, err = h.ensureVeth(name, p.NetNS, "eth0", p.MAC, []netip.Prefix{netip.PrefixFrom(p.IP, n.Prefix.Bits())}, n.Gateway)
	}
	if err != nil {
		return "", err
	}
	return name, h.plug(l, br)
}

// ensureVeth makes a veth pair whose far end is eth (in the namespace at
// path) with this MAC, exactly these addresses and, if gw is valid, a
// default route through it. A half pair, or a far end of another MAC, is
// made again.
func (h *Host) ensureVeth(name, path, eth string, mac net.HardwareAddr, addrs []netip.Prefix, gw netip.Addr) (netlink.Link, error) {
	cns, err := netns.GetFromPath(path)
	if err != nil {
		return nil, fmt.Errorf("datapath: namespace %s: %w", path, err)
	}
	defer cns.Close() // the veth's far end is made in it
	in, err := netlink.NewHandleAt(cns)
	if err != nil {
		return nil, err
	}
	defer in.Close()
	l, err := h.nl.LinkByName(name)
	far, ferr := in.LinkByName(eth)
	if err == nil && (ferr != nil || l.Type() != "veth") {
		h.nl.LinkDel(l)
		err = netlink.LinkNotFoundError{}
	}
	if err != nil {
		if !isNotFound(err) {
			return nil, err
		}
		if ferr == nil {
			in.LinkDel(far)
		}
		peer := "kc" + name[2:]
		v := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: name, MTU: h.mtu}, PeerName: peer,
			PeerHardwareAddr: mac, PeerNamespace: netlink.NsFd(cns)}
		if err := h.nl.LinkAdd(v); err != nil {
			return nil, fmt.Errorf("datapath: veth %s: %w", name, err)
		}
		if far, err = in.LinkByName(peer); err != nil {
			return nil, err
		}
		if err := in.LinkSetName(far, eth); err != nil {
			return nil, fmt.Errorf("datapath: naming %s: %w", eth, err)
		}
		if l, err = h.nl.LinkByName(name); err != nil {
			return nil, err
		}
	}
	if !macEqual(far.Attrs().HardwareAddr, mac) {
		if err := in.LinkSetHardwareAddr(far, mac); err != nil {
			return nil, err
		}
	}
	if far.Attrs().MTU != h.mtu {
		in.LinkSetMTU(far, h.mtu)
	}
	have, err := in.AddrList(far, unix.AF_INET)
	if err != nil {
		return nil, err
	}
	if err := syncAddrs(in, far, have, addrs); err != nil {
		return nil, err
	}
	if lo, err := in.LinkByName("lo"); err == nil {
		in.LinkSetUp(lo)
	}
	if err := in.LinkSetUp(far); err != nil {
		return nil, err
	}
	if gw.IsValid() {
		route := &netlink.Route{LinkIndex: far.Attrs().Index, Gw: net.IP(gw.AsSlice())}
		if err := in.RouteReplace(route); err != nil {
			return nil, fmt.Errorf("datapath: default route in %s: %w", path, err)
		}
	}
	return l, nil
}

// DetachPort removes a port's host-side device (a veth's far end goes
// with it).
func (h *Host) DetachPort(id string) error { return h.DetachDevice(PortName(id)) }

// DetachDevice removes a port device by its name (a stray one).
func (h *Host) DetachDevice(name string) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	l, err := h.nl.LinkByName(name)
	if isNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	return h.nl.LinkDel(l)
}

// RemoveNetwork removes a network's bridge, VXLAN device and router from
// this host (when its last port here has gone). It goes on past a device
// it cannot remove, so the router never outlives its bridge.
func (h *Host) RemoveNetwork(vni int64) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	var first error
	for _, name := range []string{egressName(vni), externalName(vni), gatewayName(vni), VXLANName(vni), BridgeName(vni)} {
		l, err := h.nl.LinkByName(name)
		if isNotFound(err) {
			continue
		}
		if err == nil {
			err = h.nl.LinkDel(l)
		}
		if err != nil && !isNotFound(err) && first == nil {
			first = fmt.Errorf("datapath: removing %s: %w", name, err)
		}
	}
	if err := RemoveNamespace(h.RouterNS(vni)); err != nil && first == nil {
		first = err
	}
	return first
}

// Routers lists the networks whose router namespace is on this host.
func (h *Host) Routers() []int64 {
	entries, _ := os.ReadDir(h.cfg.NSDir)
	var out []int64
	for _, e := range entries {
		if v, ok := strings.CutPrefix(e.Name(), "router-"); ok {
			if vni, err := strconv.ParseInt(v, 10, 64); err == nil {
				out = append(out, vni)
			}
		}
	}
	return out
}

// State is what exists on the host, in one listing of its links: networks
// by VNI, each with the ports plugged into its bridge (host-side device
// names) and whether each is up.
func (h *Host) State() (map[int64]map[string]bool, error) {
	links, err := h.nl.LinkList()
	if err != nil {
		return nil, err
	}
	out := map[int64]map[string]bool{}
	byIndex := map[int]int64{}
	for _, l := range links {
		if vni, ok := strings.CutPrefix(l.Attrs().Name, "kbr"); ok && l.Type() == "bridge" {
			if v, err := strconv.ParseInt(vni, 10, 64); err == nil {
				out[v] = map[string]bool{}
				byIndex[l.Attrs().Index] = v
			}
		}
	}
	for _, l := range links {
		if strings.HasPrefix(l.Attrs().Name, "kp") {
			if v, ok := byIndex[l.Attrs().MasterIndex]; ok {
				out[v][l.Attrs().Name] = l.Attrs().Flags&net.FlagUp != 0
			}
		}
	}
	return out, nil
}

// DefaultVTEP is the address tunnels start from when none is given: the
// first IPv4 address of the interface holding the default route, else
// 127.0.0.1 (a lone host, which tunnels to nobody).
func DefaultVTEP() netip.Addr {
	routes, err := netlink.RouteList(nil, unix.AF_INET)
	if err == nil {
		for _, r := range routes {
			if r.Dst != nil && r.Dst.String() != "0.0.0.0/0" {
				continue
			}
			l, err := netlink.LinkByIndex(r.LinkIndex)
			if err != nil {
				continue
			}
			addrs, _ := netlink.AddrList(l, unix.AF_INET)
			for _, a := range addrs {
				if ip, ok := netip.AddrFromSlice(a.IP.To4()); ok && ip.IsGlobalUnicast() {
					return ip
				}
			}
		}
	}
	return netip.MustParseAddr("127.0.0.1")
}
