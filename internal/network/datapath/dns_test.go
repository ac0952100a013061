package datapath

import (
	"net"
	"net/netip"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/vishvananda/netlink"
)

// ask sends one query from inside namespace ns to server:53 (over TCP or
// UDP; edns: with an EDNS0 record of that size) and sums the answer up:
// "NOERROR A 10.20.0.11", "NXDOMAIN", "NOERROR" (no records)...
func ask(ns, server, name string, qtype uint16, tcp bool, edns uint16) (string, *dns.Msg, error) {
	network := "udp"
	if tcp {
		network = "tcp"
	}
	var c net.Conn
	if err := inNamespace(ns, func() (err error) {
		c, err = net.DialTimeout(network, net.JoinHostPort(server, "53"), 2*time.Second)
		return err
	}); err != nil {
		return "", nil, err
	}
	co := &dns.Conn{Conn: c}
	defer co.Close()
	q := new(dns.Msg).SetQuestion(dns.Fqdn(name), qtype)
	if edns > 0 {
		q.SetEdns0(edns, false)
	}
	r, _, err := (&dns.Client{Net: network, Timeout: time.Second}).ExchangeWithConn(q, co)
	if err != nil {
		return "", nil, err
	}
	return summary(r), r, nil
}

// summary is an answer's rcode and A and PTR records.
func summary(r *dns.Msg) string {
	out := []string{dns.RcodeToString[r.Rcode]}
	for _, rr := range r.Answer {
		switch rr := rr.(type) {
		case *dns.A:
			out = append(out, "A "+rr.A.String())
		case *dns.PTR:
			out = append(out, "PTR "+rr.Ptr)
		}
	}
	return strings.Join(out, " ")
}

// resolve asks until an answer comes (the first packets wait on ARP; a
// server may be starting again) and returns its summary.
func resolve(t *testing.T, ns, server, name string, qtype uint16, tcp bool) string {
	t.Helper()
	var last error
	for i := 0; i < 5; i++ {
		got, _, err := ask(ns, server, name, qtype, tcp, 0)
		if err == nil {
			return got
		}
		last = err
	}
	t.Fatalf("%s asking %s for %s: %v", ns, server, name, last)
	return ""
}

// TestDNSNames: an instance resolves the names of its network's instances
// on every host, short and under the network's domain, and their
// addresses back; unknown names are NXDOMAIN, outside names REFUSED
// without egress. Another tenant's network with the same name, subnet and
// addresses resolves none of them. Updates, repair after the gateway was
// deleted by hand, and stop.
func TestDNSNames(t *testing.T) {
	tb := newTestbed(t, 2)
	a, b := netA, netB
	a.Domain, b.Domain = "app.kumo.internal", "app.kumo.internal" // two tenants' networks named app
	a0 := tb.plug(0, a, "a0", "10.20.0.10")
	a1 := tb.plug(1, a, "a1", "10.20.0.11")
	b0 := tb.plug(0, b, "b0", "10.20.0.10")
	zoneA := Zone{Names: []Name{{Name: "a0", IP: a0.port.IP}, {Name: "a1", IP: a1.port.IP}}}
	zoneB := Zone{Names: []Name{{Name: "b0", IP: b0.port.IP}}}
	for i, h := range tb.hosts {
		must(t, h.EnsureServices(a, nil, zoneA, whoAmI, nil))
		if i == 0 {
			must(t, h.EnsureServices(b, nil, zoneB, whoAmI, nil))
		}
	}
	t.Cleanup(func() {
		for _, h := range tb.hosts {
			h.StopServices(a.VNI)
			h.StopServices(b.VNI)
		}
	})
	const gw = "10.20.0.1"
	for _, c := range []struct {
		from  instance
		name  string
		qtype uint16
		tcp   bool
		want  string
	}{
		{a0, "a1", dns.TypeA, false, "NOERROR A 10.20.0.11"}, // on the other host
		{a0, "a1.app.kumo.internal", dns.TypeA, true, "NOERROR A 10.20.0.11"},
		{a0, "A1.App.Kumo.Internal", dns.TypeA, false, "NOERROR A 10.20.0.11"},
		{a1, "a0", dns.TypeA, false, "NOERROR A 10.20.0.10"}, // host1's router
		{a0, "11.0.20.10.in-addr.arpa", dns.TypePTR, false, "NOERROR PTR a1.app.kumo.internal."},
		{a0, "a1", dns.TypeAAAA, false, "NOERROR"}, // the name is there, with no IPv6 address
		{a0, "nosuch", dns.TypeA, false, "NXDOMAIN"},
		{a0, "nosuch.app.kumo.internal", dns.TypeA, true, "NXDOMAIN"},
		{a0, "99.0.20.10.in-addr.arpa", dns.TypePTR, false, "NXDOMAIN"},
		{a0, "a1.other.kumo.internal", dns.TypeA, false, "NXDOMAIN"},
		{a0, "www.example.com", dns.TypeA, false, "REFUSED"}, // not allowed out
		{a0, "www.example.com", dns.TypeA, true, "REFUSED"},
		// The other tenant's network: its own names only.
		{b0, "b0", dns.TypeA, false, "NOERROR A 10.20.0.10"},
		{b0, "a1", dns.TypeA, false, "NXDOMAIN"},
		{b0, "a1.app.kumo.internal", dns.TypeA, true, "NXDOMAIN"},
		{b0, "11.0.20.10.in-addr.arpa", dns.TypePTR, false, "NXDOMAIN"},
		{b0, "10.0.20.10.in-addr.arpa", dns.TypePTR, false, "NOERROR PTR b0.app.kumo.internal."},
	} {
		if got := resolve(t, c.from.ns, gw, c.name, c.qtype, c.tcp); got != c.want {
			t.Errorf("%s asks %s (%s, tcp %v): %q, want %q", c.from.ns[len(tb.dir)+1:], c.name, dns.TypeToString[c.qtype], c.tcp, got, c.want)
		}
	}

	// Names follow the zone given.
	h := tb.hosts[0]
	must(t, h.EnsureServices(a, nil, Zone{Names: []Name{{Name: "a0", IP: a0.port.IP}, {Name: "a2", IP: netip.MustParseAddr("10.20.0.12")}}}, whoAmI, nil))
	if got := resolve(t, a0.ns, gw, "a2", dns.TypeA, false); got != "NOERROR A 10.20.0.12" {
		t.Errorf("a2 after the update: %q", got)
	}
	if got := resolve(t, a0.ns, gw, "a1", dns.TypeA, false); got != "NXDOMAIN" {
		t.Errorf("a1 after it left: %q", got)
	}

	// The router's gateway device deleted by hand: made again, and DNS
	// with it.
	nl := tb.handle(h.cfg.NetNS)
	defer nl.Close()
	must(t, nl.LinkDel(linkIn(t, nl, gatewayName(a.VNI))))
	must(t, h.EnsureNetwork(a))
	must(t, h.EnsureServices(a, nil, zoneA, whoAmI, nil))
	if got := resolve(t, a0.ns, gw, "a1", dns.TypeA, false); got != "NOERROR A 10.20.0.11" {
		t.Errorf("after the gateway was made again: %q", got)
	}

	h.StopServices(a.VNI)
	if got, _, err := ask(a0.ns, gw, "a1", dns.TypeA, false, 0); err == nil {
		t.Errorf("stopped, the server still answers: %q", got)
	}
	if got := resolve(t, b0.ns, gw, "b0", dns.TypeA, false); got != "NOERROR A 10.20.0.10" {
		t.Errorf("the other network's DNS after the first's stopped: %q", got)
	}
}

// upstream is a resolver of the test's: it answers A queries for
// www.example.com with addr, for big.example.com with 100 addresses (cut
// to the asker's size over UDP), and counts the queries it gets.
type upstream struct{ queries atomic.Int32 }

func (u *upstream) serve(t *testing.T, ns, at string, addr string) {
	t.Helper()
	h := dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		u.queries.Add(1)
		m := new(dns.Msg).SetReply(r)
		q := r.Question[0]
		switch {
		case q.Name == "www.example.com." && q.Qtype == dns.TypeA:
			m.Answer = append(m.Answer, &dns.A{Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 60}, A: net.ParseIP(addr)})
		case q.Name == "big.example.com." && q.Qtype == dns.TypeA:
			for i := 1; i <= 100; i++ {
				m.Answer = append(m.Answer, &dns.A{Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 60}, A: net.IPv4(192, 0, 2, byte(i))})
			}
		default:
			m.Rcode = dns.RcodeNameError
		}
		if _, udp := w.RemoteAddr().(*net.UDPAddr); udp { // as real resolvers do
			size := dns.MinMsgSize
			if opt := r.IsEdns0(); opt != nil {
				size = int(opt.UDPSize())
				m.SetEdns0(opt.UDPSize(), false)
			}
			m.Truncate(size)
		}
		w.WriteMsg(m)
	})
	var pc net.PacketConn
	var l net.Listener
	must(t, inNamespace(ns, func() (err error) {
		if pc, err = net.ListenPacket("udp4", at+":53"); err != nil {
			return err
		}
		l, err = net.Listen("tcp4", at+":53")
		return err
	}))
	for _, srv := range []*dns.Server{{PacketConn: pc, Handler: h}, {Listener: l, Handler: h}} {
		started := make(chan struct{})
		srv.NotifyStartedFunc = func() { close(started) }
		go srv.ActivateAndServe()
		<-started
		t.Cleanup(func() { srv.Shutdown() })
	}
}

// TestDNSForwarding: outside names go to the host's resolvers (its
// resolv.conf, read again when it changes; a loopback one too: queries
// leave from the host's namespace) only when the network may go out;
// large answers are truncated over UDP and whole over TCP; the internal
// domain and single labels are never forwarded.
func TestDNSForwarding(t *testing.T) {
	tb := newTestbed(t, 1)
	h := tb.hosts[0]
	wan := tb.namespace("wan")
	tb.link(h.cfg.NetNS, "wan0", wan, "eth0", netip.MustParsePrefix("192.0.2.1/24"), netip.MustParsePrefix("192.0.2.2/24"))
	outside := &upstream{}
	outside.serve(t, wan, "192.0.2.2", "192.0.2.80")
	must(t, os.WriteFile(h.cfg.ResolvConf, []byte("nameserver 192.0.2.2\n"), 0o644))
	n := netA
	n.Domain = "app.kumo.internal"
	a0 := tb.plug(0, n, "a0", "10.20.0.10")
	const gw = "10.20.0.1"
	must(t, h.EnsureServices(n, nil, Zone{Names: []Name{{Name: "a0", IP: a0.port.IP}}}, whoAmI, nil))
	t.Cleanup(func() { h.StopServices(n.VNI) })
	if got := resolve(t, a0.ns, gw, "www.example.com", dns.TypeA, false); got != "REFUSED" {
		t.Errorf("not allowed out: %q", got)
	}
	if q := outside.queries.Load(); q != 0 {
		t.Errorf("not allowed out, the resolver got %d queries", q)
	}

	must(t, h.EnsureServices(n, nil, Zone{Names: []Name{{Name: "a0", IP: a0.port.IP}}, Forward: true}, whoAmI, nil))
	for _, tcp := range []bool{false, true} {
		if got := resolve(t, a0.ns, gw, "www.example.com", dns.TypeA, tcp); got != "NOERROR A 192.0.2.80" {
			t.Errorf("forwarded (tcp %v): %q", tcp, got)
		}
	}
	if got := resolve(t, a0.ns, gw, "a0", dns.TypeA, false); got != "NOERROR A 10.20.0.10" {
		t.Errorf("own names with forwarding on: %q", got)
	}
	// Large answers: cut to the asker's UDP size with TC set, whole over TCP.
	for _, c := range []struct {
		tcp       bool
		edns      uint16
		maxSize   int
		truncated bool
	}{{false, 0, 512, true}, {false, 4096, 1232, true}, {true, 0, 65535, false}} {
		_, r, err := ask(a0.ns, gw, "big.example.com", dns.TypeA, c.tcp, c.edns)
		if err != nil {
			t.Errorf("big answer (tcp %v, edns %d): %v", c.tcp, c.edns, err)
			continue
		}
		r.Compress = true // as it came
		if r.Len() > c.maxSize || r.Truncated != c.truncated || !c.truncated && len(r.Answer) != 100 {
			t.Errorf("big answer (tcp %v, edns %d): %d bytes, truncated %v, %d records", c.tcp, c.edns, r.Len(), r.Truncated, len(r.Answer))
		}
	}
	before := outside.queries.Load()
	for _, name := range []string{"x.other.kumo.internal", "intranet", "99.0.20.10.in-addr.arpa"} {
		if got := resolve(t, a0.ns, gw, name, dns.TypeA, false); got != "NXDOMAIN" {
			t.Errorf("%s: %q", name, got)
		}
	}
	if q := outside.queries.Load(); q != before {
		t.Errorf("internal names were forwarded (%d queries)", q-before)
	}

	// A resolver on the host's loopback (systemd-resolved's kind): the
	// query leaves from the host's namespace, so it is reached.
	local := &upstream{}
	local.serve(t, h.cfg.NetNS, "127.0.0.1", "198.51.100.7")
	must(t, os.WriteFile(h.cfg.ResolvConf, []byte("# the host's own\nnameserver 127.0.0.1\n"), 0o644))
	if got := resolve(t, a0.ns, gw, "www.example.com", dns.TypeA, false); got != "NOERROR A 198.51.100.7" {
		t.Errorf("through the host's loopback resolver: %q", got)
	}
}

// TestDNSOnlyOnItsNetwork: the DNS server hears only its network's
// device: a host routing the gateway address through the router's
// egress link gets no answer.
func TestDNSOnlyOnItsNetwork(t *testing.T) {
	tb := newTestbed(t, 1)
	h := tb.hosts[0]
	n := netA
	n.Domain = "app.kumo.internal"
	a0 := tb.plug(0, n, "a0", "10.20.0.10")
	must(t, h.SetRouter(n.VNI, Router{Egress: true}))
	must(t, h.EnsureServices(n, nil, Zone{Names: []Name{{Name: "a0", IP: a0.port.IP}}, Forward: true}, whoAmI, nil))
	t.Cleanup(func() { h.StopServices(n.VNI) })
	if got := resolve(t, a0.ns, "10.20.0.1", "a0", dns.TypeA, false); got != "NOERROR A 10.20.0.10" {
		t.Fatalf("from the network: %q", got)
	}
	// The host sends to the gateway address through the egress link,
	// from an address of the tenant's subnet.
	nl := tb.handle(h.cfg.NetNS)
	defer nl.Close()
	kn := linkIn(t, nl, egressName(n.VNI))
	must(t, nl.AddrAdd(kn, mustAddr("10.20.0.99/32")))
	_, routerEnd := transfer(n.VNI)
	must(t, nl.RouteAdd(&netlink.Route{LinkIndex: kn.Attrs().Index, Dst: &net.IPNet{IP: net.IPv4(10, 20, 0, 1), Mask: net.CIDRMask(32, 32)},
		Gw: net.IP(routerEnd.AsSlice()), Src: net.IPv4(10, 20, 0, 99)}))
	// (and the router sends its answers back the same way)
	rnl := tb.handle(h.RouterNS(n.VNI))
	defer rnl.Close()
	hostEnd, _ := transfer(n.VNI)
	must(t, rnl.RouteAdd(&netlink.Route{LinkIndex: linkIn(t, rnl, "up").Attrs().Index, Dst: &net.IPNet{IP: net.IPv4(10, 20, 0, 99), Mask: net.CIDRMask(32, 32)},
		Gw: net.IP(hostEnd.AsSlice())}))
	for _, tcp := range []bool{false, true} {
		if got, _, err := ask(h.cfg.NetNS, "10.20.0.1", "a0", dns.TypeA, tcp, 0); err == nil {
			t.Errorf("from the egress side (tcp %v): %q", tcp, got)
		}
	}
}

// TestZoneAnswers: who sees which name on a shared network - an
// instance of another project than the owner's is seen only by its own
// project, which sees its own names first, then the owner's.
func TestZoneAnswers(t *testing.T) {
	ip := netip.MustParseAddr
	n := Network{Prefix: netip.MustParsePrefix("10.9.0.0/24"), Domain: "shared.kumo.internal"}
	z := newZone(n, Zone{Names: []Name{
		{Name: "web", IP: ip("10.9.0.10")}, {Name: "db", IP: ip("10.9.0.11")}, // the owner's
		{Name: "web", IP: ip("10.9.0.20"), Project: "x"}, {Name: "api", IP: ip("10.9.0.21"), Project: "x"},
		{Name: "api", IP: ip("10.9.0.30"), Project: "y"},
		{Name: "Bad_Name", IP: ip("10.9.0.40")}, {Name: "far", IP: ip("10.8.0.1")}, // never served
	}})
	owner, x, y, stranger := ip("10.9.0.10"), ip("10.9.0.21"), ip("10.9.0.30"), ip("10.9.0.99")
	for _, c := range []struct {
		asker netip.Addr
		name  string
		qtype uint16
		want  string
	}{
		{owner, "web", dns.TypeA, "NOERROR A 10.9.0.10"},
		{owner, "api.shared.kumo.internal", dns.TypeA, "NXDOMAIN"},
		{owner, "21.0.9.10.in-addr.arpa", dns.TypePTR, "NXDOMAIN"},
		{x, "web", dns.TypeA, "NOERROR A 10.9.0.20"}, // its own first
		{x, "db", dns.TypeA, "NOERROR A 10.9.0.11"},  // then the owner's
		{x, "api", dns.TypeA, "NOERROR A 10.9.0.21"},
		{x, "21.0.9.10.in-addr.arpa", dns.TypePTR, "NOERROR PTR api.shared.kumo.internal."},
		{x, "30.0.9.10.in-addr.arpa", dns.TypePTR, "NXDOMAIN"},
		{y, "api", dns.TypeA, "NOERROR A 10.9.0.30"},
		{y, "web", dns.TypeA, "NOERROR A 10.9.0.10"},
		{stranger, "api", dns.TypeA, "NXDOMAIN"},
		{stranger, "web.shared.kumo.internal", dns.TypeA, "NOERROR A 10.9.0.10"},
		{owner, "shared.kumo.internal", dns.TypeA, "NOERROR"},
		{owner, "bad_name", dns.TypeA, "NXDOMAIN"},
		{owner, "far", dns.TypeA, "NXDOMAIN"},
		{owner, "web.x.shared.kumo.internal", dns.TypeA, "NXDOMAIN"},
		{owner, "example.com", dns.TypeA, "forward"},
		{owner, "1.0.8.10.in-addr.arpa", dns.TypePTR, "forward"}, // not the network's subnet
	} {
		req := new(dns.Msg).SetQuestion(dns.Fqdn(c.name), c.qtype)
		got := "forward"
		if m := z.answer(req, c.asker); m != nil {
			got = summary(m)
		}
		if got != c.want {
			t.Errorf("%s asks %s: %q, want %q", c.asker, c.name, got, c.want)
		}
	}
}

// TestDNSRateLimit: a source gets its burst and then the rate; the
// network as a whole its own limit, whatever the number of sources. The
// bounds grow with the time the loop took, so a slow machine passes too.
func TestDNSRateLimit(t *testing.T) {
	d := newDNSServer(nil)
	src := netip.MustParseAddr("10.20.0.10")
	start := time.Now()
	ok := 0
	for i := 0; i < 1000; i++ {
		if d.admit(src) {
			ok++
		}
	}
	if max := 2*dnsPerSource + int(time.Since(start).Seconds()*dnsPerSource) + 1; ok < 2*dnsPerSource || ok > max {
		t.Errorf("one source: %d of 1000 admitted, want %d to %d", ok, 2*dnsPerSource, max)
	}
	d = newDNSServer(nil)
	start, ok = time.Now(), 0
	for i := 0; i < 10000; i++ {
		if d.admit(netip.AddrFrom4([4]byte{10, 20, byte(i >> 8), byte(i)})) {
			ok++
		}
	}
	if max := 2*dnsPerNetwork + int(time.Since(start).Seconds()*dnsPerNetwork) + 1; ok < 2*dnsPerNetwork || ok > max {
		t.Errorf("10000 sources: %d admitted, want %d to %d", ok, 2*dnsPerNetwork, max)
	}
}
