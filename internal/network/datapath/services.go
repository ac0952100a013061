package datapath

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/server4"
)

// Lease is what DHCP hands a local port: its address, for a day, renewed
// as long as the port lives.
type Lease struct {
	MAC      net.HardwareAddr
	IP       netip.Addr
	Hostname string
}

const leaseTime = 24 * time.Hour

// services are the DHCP and metadata servers of one network on one host,
// both in its router namespace (so each socket belongs to one network:
// an address identifies one port there, pinned by anti-spoofing).
type services struct {
	net    Network
	mtu    int
	dhcp   *server4.Server
	meta   *http.Server
	mu     sync.Mutex
	leases map[string]Lease // by MAC
}

// EnsureServices starts (once) a network's DHCP server, answering only the
// local ports' MACs listed in leases, and its metadata service at
// 169.254.169.254:80 served by handler (which tells instances apart by
// their address); later calls only replace the leases.
func (h *Host) EnsureServices(n Network, leases []Lease, handler http.Handler, log *slog.Logger) error {
	h.svcMu.Lock()
	defer h.svcMu.Unlock()
	if h.svcs == nil {
		h.svcs = map[int64]*services{}
	}
	s := h.svcs[n.VNI]
	if s == nil {
		s = &services{net: n, mtu: h.mtu}
		err := inNamespace(h.RouterNS(n.VNI), func() error {
			if n.DHCP {
				srv, err := server4.NewServer("gw", &net.UDPAddr{IP: net.IPv4zero, Port: dhcpv4.ServerPort}, s.answer)
				if err != nil {
					return fmt.Errorf("dhcp server: %w", err)
				}
				s.dhcp = srv
			}
			l, err := net.Listen("tcp4", net.JoinHostPort(MetadataIP.String(), "80"))
			if err != nil {
				if s.dhcp != nil {
					s.dhcp.Close()
				}
				return fmt.Errorf("metadata service: %w", err)
			}
			s.meta = &http.Server{Handler: handler, ReadHeaderTimeout: 5 * time.Second,
				BaseContext: func(net.Listener) context.Context { return context.WithValue(context.Background(), vniKey{}, n.VNI) }}
			go s.meta.Serve(l)
			return nil
		})
		if err != nil {
			return fmt.Errorf("datapath: network %d: %w", n.VNI, err)
		}
		if s.dhcp != nil {
			go func() {
				if err := s.dhcp.Serve(); err != nil && log != nil && !errors.Is(err, net.ErrClosed) {
					log.Warn("dhcp server stopped", "vni", n.VNI, "err", err)
				}
			}()
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
	return nil
}

// StopServices stops a network's DHCP and metadata servers on this host.
func (h *Host) StopServices(vni int64) {
	h.svcMu.Lock()
	defer h.svcMu.Unlock()
	if s := h.svcs[vni]; s != nil {
		if s.dhcp != nil {
			s.dhcp.Close()
		}
		s.meta.Close()
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
