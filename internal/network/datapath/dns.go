package datapath

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/miekg/dns"
	"golang.org/x/net/netutil"
	"golang.org/x/sys/unix"
	"golang.org/x/time/rate"
)

// DNS of a network (what Neutron's dnsmasq answers): a server in each
// host's router of the network, at the gateway address, port 53, UDP and
// TCP. Its sockets are bound to the router's "gw" device, so nothing from
// the external network or the egress link ever reaches it: it is no open
// resolver, whatever routes a neighbour sets.
//
//   - Names of the network's instances, on every host: NAME and
//     NAME.<network domain> (A), and their addresses' PTR records. On a
//     shared network an instance of another project than the network's
//     owner is seen only by its own project's instances (own project first,
//     then the owner's: a tenant can neither shadow another's name for it
//     nor list another tenant's instances).
//   - Names under the domain's parent (kumo.internal: every network's) and
//     single-label names that are no instance's are NXDOMAIN, as are
//     reverse lookups in the network's own subnet: they are never
//     forwarded (dnsmasq's domain-needed and bogus-priv), so another
//     network's names resolve nowhere and nothing loops.
//   - Other names are forwarded to the host's resolvers (its resolv.conf)
//     when the network may go out (Zone.Forward, egress NAT); else REFUSED.
//     The forwarding sockets are opened in the host's namespace - the
//     agent's own - so loopback resolvers (systemd-resolved's 127.0.0.53, a
//     local dnsmasq) work, and the query never takes a tenant's path out.
//
// A tenant may flood it: each source address gets dnsPerSource queries a
// second, the network dnsPerNetwork, at most dnsForwards forwarded queries
// are in flight per network (more get SERVFAIL at once), TCP takes
// dnsTCPConns connections per network, each closed after 5 s idle or
// dnsTCPQueries queries; queries over the limits get no answer (answering
// would amplify).

// Name is an instance's name on a network, for the network's DNS server.
type Name struct {
	// Name is a DNS label (an instance's name).
	Name string
	IP   netip.Addr
	// Project is the instance's project if it is not the network owner's
	// (another project on a shared network): only instances of its own
	// project see it. "" is the owner's, seen by all.
	Project string
}

// Zone is what a network's DNS server knows besides the network.
type Zone struct {
	// Names are every instance port of the network, on any host.
	Names []Name
	// Forward: other names are asked of the host's resolvers (the
	// network may go out); otherwise they are REFUSED.
	Forward bool
}

const (
	dnsTTL        = 10 // seconds: instances come and go
	dnsPerSource  = 100
	dnsPerNetwork = 1000
	dnsSources    = 4096 // source addresses tracked; more start afresh
	dnsForwards   = 32
	dnsTCPConns   = 16
	dnsTCPQueries = 64
	// dnsUDPSize is the EDNS size read, advertised and asked upstream
	// (DNS flag day 2020: no fragments).
	dnsUDPSize = 1232
	// dnsForwardBudget bounds a forwarded query over all resolvers.
	dnsForwardBudget = 4 * time.Second
	maxResolvers     = 3 // as resolv.conf's MAXNS
)

// zone is a network's names, indexed; replaced whole on each update.
type zone struct {
	domain  string // the network's, fully qualified: "app.kumo.internal."
	parent  string // its parent: "kumo.internal."
	prefix  netip.Prefix
	forward bool
	byName  map[scopedName]netip.Addr
	byAddr  map[netip.Addr]Name
}

type scopedName struct{ project, name string }

func newZone(n Network, z Zone) *zone {
	out := &zone{prefix: n.Prefix.Masked(), forward: z.Forward,
		byName: make(map[scopedName]netip.Addr, len(z.Names)), byAddr: make(map[netip.Addr]Name, len(z.Names))}
	if d := strings.ToLower(strings.Trim(n.Domain, ".")); d != "" {
		if _, ok := dns.IsDomainName(d); ok {
			out.domain = dns.Fqdn(d)
			if i := strings.IndexByte(d, '.'); i > 0 {
				out.parent = dns.Fqdn(d[i+1:])
			}
		}
	}
	for _, nm := range z.Names {
		nm.Name = strings.ToLower(nm.Name)
		if !isLabel(nm.Name) || !nm.IP.Is4() || !out.prefix.Contains(nm.IP) {
			continue
		}
		out.byName[scopedName{nm.Project, nm.Name}] = nm.IP
		out.byAddr[nm.IP] = nm
	}
	return out
}

// isLabel says whether s is a host name label: letters, digits and '-'.
func isLabel(s string) bool {
	if s == "" || len(s) > 63 || s[0] == '-' || s[len(s)-1] == '-' {
		return false
	}
	for _, c := range []byte(s) {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

// lookup is the address a label names for an asker: its own project's
// instance, else the network owner's.
func (z *zone) lookup(label string, asker netip.Addr) (netip.Addr, bool) {
	if p := z.byAddr[asker].Project; p != "" {
		if ip, ok := z.byName[scopedName{p, label}]; ok {
			return ip, true
		}
	}
	ip, ok := z.byName[scopedName{"", label}]
	return ip, ok
}

// ptr is the name of an address, if the asker may see it.
func (z *zone) ptr(addr, asker netip.Addr) (string, bool) {
	nm, ok := z.byAddr[addr]
	if !ok || nm.Project != "" && nm.Project != z.byAddr[asker].Project {
		return "", false
	}
	return nm.Name + "." + z.domain, true
}

// answer is the reply to a query this network answers itself, nil for a
// name to forward (or refuse).
func (z *zone) answer(req *dns.Msg, asker netip.Addr) *dns.Msg {
	q := req.Question[0]
	name := strings.ToLower(q.Name)
	m := new(dns.Msg)
	m.SetReply(req)
	m.Authoritative = true
	if q.Qclass != dns.ClassINET && q.Qclass != dns.ClassANY {
		m.Rcode = dns.RcodeRefused
		return m
	}
	if label, ok := z.local(name); ok {
		if label == "" { // the domain itself: it exists, holding nothing
			return m
		}
		ip, ok := z.lookup(label, asker)
		switch {
		case !ok:
			m.Rcode = dns.RcodeNameError
		case q.Qtype == dns.TypeA || q.Qtype == dns.TypeANY:
			m.Answer = []dns.RR{&dns.A{Hdr: rrHeader(q.Name, dns.TypeA), A: ip.AsSlice()}}
		}
		return m
	}
	if addr, ok := reverseName(name); ok && z.prefix.Contains(addr) {
		target, ok := z.ptr(addr, asker)
		switch {
		case !ok:
			m.Rcode = dns.RcodeNameError
		case q.Qtype == dns.TypePTR || q.Qtype == dns.TypeANY:
			m.Answer = []dns.RR{&dns.PTR{Hdr: rrHeader(q.Name, dns.TypePTR), Ptr: target}}
		}
		return m
	}
	if dns.CountLabel(name) == 1 || z.parent != "" && dns.IsSubDomain(z.parent, name) {
		m.Rcode = dns.RcodeNameError
		return m
	}
	return nil
}

// local says whether a name is one of the network's: a single label, or
// one label under its domain ("" for the domain itself).
func (z *zone) local(name string) (string, bool) {
	if z.domain != "" {
		if name == z.domain {
			return "", true
		}
		if rest, ok := strings.CutSuffix(name, "."+z.domain); ok {
			return rest, isLabel(rest)
		}
	}
	if dns.CountLabel(name) == 1 {
		if l := strings.TrimSuffix(name, "."); isLabel(l) {
			return l, true
		}
	}
	return "", false
}

func rrHeader(name string, t uint16) dns.RR_Header {
	return dns.RR_Header{Name: name, Rrtype: t, Class: dns.ClassINET, Ttl: dnsTTL}
}

// reverseName is the address of a d.c.b.a.in-addr.arpa. name.
func reverseName(name string) (netip.Addr, bool) {
	rest, ok := strings.CutSuffix(name, ".in-addr.arpa.")
	parts := strings.Split(rest, ".")
	if !ok || len(parts) != 4 {
		return netip.Addr{}, false
	}
	var b [4]byte
	for i, p := range parts {
		v, err := strconv.ParseUint(p, 10, 8)
		if err != nil {
			return netip.Addr{}, false
		}
		b[3-i] = byte(v)
	}
	return netip.AddrFrom4(b), true
}

// dnsServer is one network's DNS server on this host.
type dnsServer struct {
	zone    atomic.Pointer[zone]
	udp     *dns.Server
	tcp     *dns.Server
	forward forwarder
	slots   chan struct{} // forwarded queries in flight
	all     *rate.Limiter
	mu      sync.Mutex
	sources map[netip.Addr]*rate.Limiter
}

// forwarder asks a query of a resolver within a deadline.
type forwarder interface {
	resolvers() []netip.AddrPort
	exchange(q *dns.Msg, to netip.AddrPort, tcp bool, deadline time.Time) (*dns.Msg, error)
}

// dnsListeners opens a network's DNS sockets at its gateway, bound to the
// router's "gw" device; to be called in the router's namespace.
func dnsListeners(gw netip.Addr) (net.PacketConn, net.Listener, error) {
	lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		var err error
		if cerr := c.Control(func(fd uintptr) { err = unix.BindToDevice(int(fd), "gw") }); cerr != nil {
			return cerr
		}
		return err
	}}
	addr := netip.AddrPortFrom(gw, 53).String()
	pc, err := lc.ListenPacket(context.Background(), "udp4", addr)
	if err != nil {
		return nil, nil, err
	}
	l, err := lc.Listen(context.Background(), "tcp4", addr)
	if err != nil {
		pc.Close()
		return nil, nil, err
	}
	return pc, netutil.LimitListener(l, dnsTCPConns), nil
}

// startDNS serves DNS on the sockets until stop; died is called if a
// server stops on its own.
func startDNS(pc net.PacketConn, l net.Listener, z *zone, fw forwarder, died func(error)) *dnsServer {
	d := newDNSServer(fw)
	d.zone.Store(z)
	idle := func() time.Duration { return 5 * time.Second }
	d.udp = &dns.Server{PacketConn: pc, Handler: d, UDPSize: dnsUDPSize}
	d.tcp = &dns.Server{Listener: l, Handler: d, ReadTimeout: 2 * time.Second, WriteTimeout: 2 * time.Second,
		IdleTimeout: idle, MaxTCPQueries: dnsTCPQueries}
	for _, srv := range []*dns.Server{d.udp, d.tcp} {
		started := make(chan struct{})
		srv.NotifyStartedFunc = func() { close(started) }
		done := make(chan error, 1)
		go func() {
			err := srv.ActivateAndServe()
			done <- err
			select {
			case <-started:
				if err != nil { // nil: shut down
					died(err)
				}
			default:
			}
		}()
		// Shutdown refuses a server that has not started: wait for it.
		select {
		case <-started:
		case err := <-done:
			died(err)
		}
	}
	return d
}

func newDNSServer(fw forwarder) *dnsServer {
	return &dnsServer{forward: fw, slots: make(chan struct{}, dnsForwards),
		all: rate.NewLimiter(dnsPerNetwork, 2*dnsPerNetwork), sources: map[netip.Addr]*rate.Limiter{}}
}

// stop shuts the servers down, waiting a moment for queries in flight.
func (d *dnsServer) stop() {
	for _, srv := range []*dns.Server{d.udp, d.tcp} {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		srv.ShutdownContext(ctx)
		cancel()
	}
	d.udp.PacketConn.Close()
	d.tcp.Listener.Close()
}

// admit applies the rate limits to a query from src.
func (d *dnsServer) admit(src netip.Addr) bool {
	d.mu.Lock()
	lim := d.sources[src]
	if lim == nil {
		if len(d.sources) >= dnsSources {
			clear(d.sources)
		}
		lim = rate.NewLimiter(dnsPerSource, 2*dnsPerSource)
		d.sources[src] = lim
	}
	d.mu.Unlock()
	return lim.Allow() && d.all.Allow()
}

// ServeDNS answers one query.
func (d *dnsServer) ServeDNS(w dns.ResponseWriter, req *dns.Msg) {
	var src netip.Addr
	tcp := false
	switch a := w.RemoteAddr().(type) {
	case *net.UDPAddr:
		src = a.AddrPort().Addr().Unmap()
	case *net.TCPAddr:
		src, tcp = a.AddrPort().Addr().Unmap(), true
	}
	z := d.zone.Load()
	// Only the network's own ports ask (the socket is on its device;
	// anti-spoofing pins their addresses).
	if !z.prefix.Contains(src) || !d.admit(src) || len(req.Question) != 1 {
		return
	}
	resp := z.answer(req, src)
	if resp == nil && z.forward {
		resp = d.forwarded(req, tcp)
	} else if resp == nil {
		resp = new(dns.Msg).SetRcode(req, dns.RcodeRefused)
	}
	size := dns.MaxMsgSize
	if opt := req.IsEdns0(); opt != nil {
		resp.SetEdns0(dnsUDPSize, opt.Do())
		if !tcp {
			size = max(min(int(opt.UDPSize()), dnsUDPSize), dns.MinMsgSize)
		}
	} else if !tcp {
		size = dns.MinMsgSize
	}
	resp.Truncate(size)
	w.WriteMsg(resp)
}

// forwarded is the host's resolvers' answer to a query, asked afresh
// (the tenant's header and extra records stay here), over the transport
// it came by: a truncated answer over UDP tells the client to ask again
// over TCP.
func (d *dnsServer) forwarded(req *dns.Msg, tcp bool) *dns.Msg {
	m := new(dns.Msg)
	m.SetReply(req)
	m.RecursionAvailable = true
	select {
	case d.slots <- struct{}{}:
		defer func() { <-d.slots }()
	default:
		m.Rcode = dns.RcodeServerFailure
		return m
	}
	q := new(dns.Msg)
	q.SetQuestion(req.Question[0].Name, req.Question[0].Qtype)
	q.CheckingDisabled = req.CheckingDisabled
	do := false
	if opt := req.IsEdns0(); opt != nil {
		do = opt.Do()
	}
	q.SetEdns0(dnsUDPSize, do)
	deadline := time.Now().Add(dnsForwardBudget)
	m.Rcode = dns.RcodeServerFailure
	for _, up := range d.forward.resolvers() {
		if time.Now().After(deadline) {
			break
		}
		r, err := d.forward.exchange(q, up, tcp, deadline)
		if err != nil || len(r.Question) != 1 || !strings.EqualFold(r.Question[0].Name, q.Question[0].Name) || r.Question[0].Qtype != q.Question[0].Qtype {
			continue
		}
		m.Rcode, m.Answer, m.Ns, m.Truncated, m.AuthenticatedData = r.Rcode, r.Answer, r.Ns, r.Truncated, r.AuthenticatedData
		m.Extra = nil
		for _, rr := range r.Extra {
			if rr.Header().Rrtype != dns.TypeOPT {
				m.Extra = append(m.Extra, rr)
			}
		}
		if r.Rcode != dns.RcodeServerFailure && r.Rcode != dns.RcodeRefused {
			break
		}
	}
	return m
}

// hostResolvers are the host's resolvers from its resolv.conf, read
// again when the file changes.
type hostResolvers struct {
	path   string
	netns  string // the host's namespace, where queries are sent from
	mu     sync.Mutex
	stamp  string
	cached []netip.AddrPort
}

func (r *hostResolvers) resolvers() []netip.AddrPort {
	r.mu.Lock()
	defer r.mu.Unlock()
	st, err := os.Stat(r.path)
	if err != nil {
		r.stamp, r.cached = "", nil
		return nil
	}
	stamp := st.ModTime().String() + "/" + strconv.FormatInt(st.Size(), 10)
	if stamp == r.stamp {
		return r.cached
	}
	r.stamp, r.cached = stamp, nil
	cfg, err := dns.ClientConfigFromFile(r.path)
	if err != nil {
		return nil
	}
	port, err := strconv.ParseUint(cfg.Port, 10, 16)
	if err != nil {
		port = 53
	}
	for _, s := range cfg.Servers {
		if a, err := netip.ParseAddr(s); err == nil && !a.IsUnspecified() && len(r.cached) < maxResolvers {
			r.cached = append(r.cached, netip.AddrPortFrom(a, uint16(port)))
		}
	}
	return r.cached
}

// exchange asks one resolver, from the host's namespace, under a fresh
// query id.
func (r *hostResolvers) exchange(q *dns.Msg, to netip.AddrPort, tcp bool, deadline time.Time) (*dns.Msg, error) {
	network := "udp"
	if tcp {
		network = "tcp"
	}
	var c net.Conn
	err := inNamespace(r.netns, func() (err error) {
		c, err = (&net.Dialer{Deadline: deadline}).Dial(network, to.String())
		return err
	})
	if err != nil {
		return nil, err
	}
	co := &dns.Conn{Conn: c}
	defer co.Close()
	q = q.Copy()
	q.Id = dns.Id()
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	resp, _, err := (&dns.Client{Net: network, UDPSize: dnsUDPSize}).ExchangeWithConnContext(ctx, q, co)
	if err == nil && !resp.Response {
		err = errors.New("not a response")
	}
	return resp, err
}
