package datapath

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/server4"
	"github.com/insomniacslk/dhcp/rfc1035label"
	"golang.org/x/sys/unix"
)

// Lease is what DHCP hands a local port: its address, for a day, renewed
// as long as the port lives.
type Lease struct {
	MAC      net.HardwareAddr
	IP       netip.Addr
	Hostname string
}

const leaseTime = 24 * time.Hour

// services are the DHCP, DNS and metadata servers of one network on one
// host, all in its router namespace (so each socket belongs to one
// network: an address identifies one port there, pinned by
// anti-spoofing).
type services struct {
	net    Network
	router string // the router's namespace and gateway device they were started in
	mtu    int
	dhcp   *server4.Server
	dns    *dnsServer
	meta   *http.Server
	mu     sync.Mutex
	leases map[string]Lease // by MAC
	// died: a server stopped on its own; the next EnsureServices starts
	// them all again.
	died atomic.Bool
}

// EnsureServices starts a network's DHCP server, answering only the local
// ports' MACs listed in leases, its DNS server (dns.go) knowing zone, and
// its metadata service at 169.254.169.254:80 served by handler (which
// tells instances apart by their address); later calls replace the leases
// and the zone. Servers that died, or whose router namespace or gateway
// device was made again since they started (their sockets would hear
// nothing), are started again.
func (h *Host) EnsureServices(n Network, leases []Lease, zone Zone, handler http.Handler, log *slog.Logger) error {
	router, err := h.routerID(n.VNI)
	if err != nil {
		return fmt.Errorf("datapath: network %d: %w", n.VNI, err)
	}
	h.svcMu.Lock()
	defer h.svcMu.Unlock()
	if h.svcs == nil {
		h.svcs = map[int64]*services{}
	}
	s := h.svcs[n.VNI]
	if s != nil && (s.router != router || s.died.Load() || fmt.Sprint(s.net) != fmt.Sprint(n)) {
		if log != nil {
			log.Info("network services started again", "vni", n.VNI)
		}
		s.stop()
		s = nil
	}
	if s == nil {
		if s, err = h.startServices(n, router, zone, handler, log); err != nil {
			return fmt.Errorf("datapath: network %d: %w", n.VNI, err)
		}
		h.svcs[n.VNI] = s
	}
	m := map[string]Lease{}
	for _, l := range leases {
		m[l.MAC.String()] = l
	}
	s.mu.Lock()
	s.leases = m
	s.mu.Unlock()
	s.dns.zone.Store(newZone(n, zone))
	return nil
}

// routerID identifies a network's router namespace and gateway device
// as they are now.
func (h *Host) routerID(vni int64) (string, error) {
	rns := h.RouterNS(vni)
	var st unix.Stat_t
	if err := unix.Stat(rns, &st); err != nil {
		return "", fmt.Errorf("router namespace: %w", err)
	}
	nl, err := handleIn(rns)
	if err != nil {
		return "", err
	}
	defer nl.Close()
	gw, err := nl.LinkByName("gw")
	if err != nil {
		return "", fmt.Errorf("router gateway device: %w", err)
	}
	return fmt.Sprintf("%d:%d/%d", st.Dev, st.Ino, gw.Attrs().Index), nil
}

func (h *Host) startServices(n Network, router string, zone Zone, handler http.Handler, log *slog.Logger) (*services, error) {
	s := &services{net: n, router: router, mtu: h.mtu}
	died := func(what string) func(error) {
		return func(err error) {
			s.died.Store(true)
			if log != nil {
				log.Warn(what+" stopped", "vni", n.VNI, "err", err)
			}
		}
	}
	var dnsPC net.PacketConn
	var dnsL, metaL net.Listener
	err := inNamespace(h.RouterNS(n.VNI), func() (err error) {
		defer func() {
			if err != nil && s.dhcp != nil {
				s.dhcp.Close()
			}
			if err != nil && dnsPC != nil {
				dnsPC.Close()
				dnsL.Close()
			}
		}()
		if n.DHCP {
			if s.dhcp, err = server4.NewServer("gw", &net.UDPAddr{IP: net.IPv4zero, Port: dhcpv4.ServerPort}, s.answer); err != nil {
				return fmt.Errorf("dhcp server: %w", err)
			}
		}
		if dnsPC, dnsL, err = dnsListeners(n.Gateway); err != nil {
			return fmt.Errorf("dns server: %w", err)
		}
		if metaL, err = net.Listen("tcp4", net.JoinHostPort(MetadataIP.String(), "80")); err != nil {
			return fmt.Errorf("metadata service: %w", err)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	s.meta = &http.Server{Handler: handler, ReadHeaderTimeout: 5 * time.Second,
		BaseContext: func(net.Listener) context.Context { return context.WithValue(context.Background(), vniKey{}, n.VNI) }}
	go func() {
		if err := s.meta.Serve(metaL); !errors.Is(err, http.ErrServerClosed) {
			died("metadata service")(err)
		}
	}()
	if s.dhcp != nil {
		go func() {
			if err := s.dhcp.Serve(); err != nil && !errors.Is(err, net.ErrClosed) {
				died("dhcp server")(err)
			}
		}()
	}
	s.dns = startDNS(dnsPC, dnsL, newZone(n, zone), h.resolvers, died("dns server"))
	return s, nil
}

func (s *services) stop() {
	if s.dhcp != nil {
		s.dhcp.Close()
	}
	s.dns.stop()
	s.meta.Close()
}

// StopServices stops a network's DHCP, DNS and metadata servers on this
// host.
func (h *Host) StopServices(vni int64) {
	h.svcMu.Lock()
	defer h.svcMu.Unlock()
	if s := h.svcs[vni]; s != nil {
		s.stop()
		delete(h.svcs, vni)
	}
}

// ServedNetworks lists the networks whose services run on this host.
func (h *Host) ServedNetworks() []int64 {
	h.svcMu.Lock()
	defer h.svcMu.Unlock()
	var out []int64
	for vni := range h.svcs {
		out = append(out, vni)
	}
	return out
}

type vniKey struct{}

// RequestVNI is the network a metadata request came from.
func RequestVNI(r *http.Request) int64 {
	v, _ := r.Context().Value(vniKey{}).(int64)
	return v
}

// answer is the DHCP handler: an offer or an ack of the port's own
// address to a known MAC, a NAK to a request for another, silence to
// MACs that are not local ports (their own host answers them).
func (s *services) answer(conn net.PacketConn, peer net.Addr, m *dhcpv4.DHCPv4) {
	if m.OpCode != dhcpv4.OpcodeBootRequest {
		return
	}
	s.mu.Lock()
	l, ok := s.leases[m.ClientHWAddr.String()]
	s.mu.Unlock()
	if !ok {
		return
	}
	var kind dhcpv4.MessageType
	switch m.MessageType() {
	case dhcpv4.MessageTypeDiscover:
		kind = dhcpv4.MessageTypeOffer
	case dhcpv4.MessageTypeRequest:
		kind = dhcpv4.MessageTypeAck
		want := m.RequestedIPAddress()
		if want == nil && !m.ClientIPAddr.IsUnspecified() {
			want = m.ClientIPAddr
		}
		if want != nil && !want.Equal(net.IP(l.IP.AsSlice())) {
			kind = dhcpv4.MessageTypeNak
		}
	default:
		return
	}
	gw := net.IP(s.net.Gateway.AsSlice())
	mods := []dhcpv4.Modifier{dhcpv4.WithMessageType(kind), dhcpv4.WithServerIP(gw), dhcpv4.WithOption(dhcpv4.OptServerIdentifier(gw))}
	if kind != dhcpv4.MessageTypeNak {
		var dns []net.IP
		for _, d := range s.net.DNS {
			dns = append(dns, net.IP(d.AsSlice()))
		}
		mtu := make([]byte, 2)
		mtu[0], mtu[1] = byte(s.mtu>>8), byte(s.mtu)
		mods = append(mods, dhcpv4.WithYourIP(net.IP(l.IP.AsSlice())), dhcpv4.WithNetmask(net.CIDRMask(s.net.Prefix.Bits(), 32)),
			dhcpv4.WithRouter(gw), dhcpv4.WithLeaseTime(uint32(leaseTime/time.Second)), dhcpv4.WithGeneric(dhcpv4.OptionInterfaceMTU, mtu))
		if len(dns) > 0 {
			mods = append(mods, dhcpv4.WithDNS(dns...))
		}
		// The network's domain, where its names are, when its own DNS
		// server is the instances' (another would not know it).
		if s.net.Domain != "" && slices.Contains(s.net.DNS, s.net.Gateway) {
			mods = append(mods, dhcpv4.WithOption(dhcpv4.OptDomainName(s.net.Domain)),
				dhcpv4.WithOption(dhcpv4.OptDomainSearch(&rfc1035label.Labels{Labels: []string{s.net.Domain}})))
		}
		if l.Hostname != "" {
			mods = append(mods, dhcpv4.WithOption(dhcpv4.OptHostName(l.Hostname)))
		}
	}
	reply, err := dhcpv4.NewReplyFromRequest(m, mods...)
	if err != nil {
		return
	}
	// The client has no address yet: broadcast on the network (the
	// bridge keeps it from other hosts).
	to := &net.UDPAddr{IP: net.IPv4bcast, Port: dhcpv4.ClientPort}
	if !m.ClientIPAddr.IsUnspecified() && kind == dhcpv4.MessageTypeAck {
		to.IP = m.ClientIPAddr
	}
	conn.WriteTo(reply.ToBytes(), to)
}
