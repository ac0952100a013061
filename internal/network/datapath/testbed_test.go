package datapath

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// testbed is a world of its own: a namespace per simulated host, joined
// by an underlay of veth pairs to a switch namespace (a bridge), and
// namespaces for instances. Nothing is sent outside it; all of it goes at
// the end of the test, also when it fails.
type testbed struct {
	t     testing.TB
	dir   string
	sw    string // the underlay switch's namespace
	hosts []*Host
	ports int
}

func requireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("network datapath tests need root (namespaces, bridges, nftables)")
	}
}

func newTestbed(t testing.TB, nhosts int) *testbed {
	requireRoot(t)
	dir, err := os.MkdirTemp("/run", "kumo-dp-test-")
	if err != nil {
		t.Fatal(err)
	}
	tb := &testbed{t: t, dir: dir}
	t.Cleanup(tb.close)
	tb.sw = tb.namespace("switch")
	swnl := tb.handle(tb.sw)
	defer swnl.Close()
	sw := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: "underlay"}}
	must(t, swnl.LinkAdd(sw))
	must(t, swnl.LinkSetUp(sw))
	for i := 0; i < nhosts; i++ {
		hns := tb.namespace(fmt.Sprintf("host%d", i))
		vtep := netip.AddrFrom4([4]byte{198, 18, 0, byte(i + 1)})
		tb.link(tb.sw, fmt.Sprintf("up%d", i), hns, "uplink", netip.Prefix{}, netip.PrefixFrom(vtep, 24))
		must(t, swnl.LinkSetMaster(linkIn(t, swnl, fmt.Sprintf("up%d", i)), sw))
		// The host's resolvers are the test's: none until it writes them.
		h, err := Open(Config{NetNS: hns, VTEP: vtep, NSDir: filepath.Join(dir, fmt.Sprintf("host%d-ns", i)),
			ResolvConf: filepath.Join(dir, fmt.Sprintf("host%d-resolv.conf", i))})
		if err != nil {
			t.Fatal(err)
		}
		tb.hosts = append(tb.hosts, h)
	}
	return tb
}

// namespace makes a namespace of the testbed.
func (tb *testbed) namespace(name string) string {
	p := filepath.Join(tb.dir, name)
	if err := NewNamespace(p); err != nil {
		tb.t.Fatal(err)
	}
	return p
}

func (tb *testbed) handle(ns string) *netlink.Handle {
	nl, err := handleIn(ns)
	if err != nil {
		tb.t.Fatal(err)
	}
	return nl
}

// link joins two namespaces by a veth pair, each end up and addressed
// (a zero prefix: no address).
func (tb *testbed) link(nsA, nameA, nsB, nameB string, addrA, addrB netip.Prefix) {
	a, b := tb.handle(nsA), tb.handle(nsB)
	defer a.Close()
	defer b.Close()
	bns, _ := netns.GetFromPath(nsB)
	defer bns.Close()
	must(tb.t, a.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: nameA}, PeerName: nameB, PeerNamespace: netlink.NsFd(bns)}))
	for _, e := range []struct {
		nl   *netlink.Handle
		name string
		addr netip.Prefix
	}{{a, nameA, addrA}, {b, nameB, addrB}} {
		l := linkIn(tb.t, e.nl, e.name)
		if e.addr.IsValid() {
			must(tb.t, e.nl.AddrAdd(l, &netlink.Addr{IPNet: &net.IPNet{IP: net.IP(e.addr.Addr().AsSlice()), Mask: net.CIDRMask(e.addr.Bits(), 32)}}))
		}
		must(tb.t, e.nl.LinkSetUp(l))
		if lo, err := e.nl.LinkByName("lo"); err == nil {
			e.nl.LinkSetUp(lo)
		}
	}
}

func (tb *testbed) close() {
	for _, h := range tb.hosts {
		h.Close()
	}
	// Instance and router namespaces first, the hosts' and the switch's
	// last (deeper paths first).
	var paths []string
	filepath.WalkDir(tb.dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			paths = append(paths, p)
		}
		return nil
	})
	for i := len(paths) - 1; i >= 0; i-- {
		RemoveNamespace(paths[i])
	}
	os.RemoveAll(tb.dir)
}

func linkIn(t testing.TB, nl *netlink.Handle, name string) netlink.Link {
	t.Helper()
	l, err := nl.LinkByName(name)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return l
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// instance is a container-like namespace with a port on a network.
type instance struct {
	ns   string
	port Port
}

// plug makes an instance namespace on host i and attaches it.
func (tb *testbed) plug(i int, n Network, name string, ip string) instance {
	tb.t.Helper()
	must(tb.t, tb.hosts[i].EnsureNetwork(n))
	return tb.plugPort(i, n, name, netip.MustParseAddr(ip))
}

// plugPort attaches a new instance namespace to a network that exists.
func (tb *testbed) plugPort(i int, n Network, name string, a netip.Addr) instance {
	b := a.As4()
	tb.ports++
	p := Port{ID: fmt.Sprintf("%08x-%04x-4000-8000-%012d", b, tb.ports, i), MAC: net.HardwareAddr{2, 0, b[0], b[1], b[2], b[3]}, IP: a, NetNS: tb.namespace(name)}
	if _, err := tb.hosts[i].AttachPort(n, p); err != nil {
		tb.t.Fatal(err)
	}
	return instance{ns: p.NetNS, port: p}
}

// acceptIn listens on addr inside ns and hands every connection to
// answer (then closes it), until the test ends.
func acceptIn(t *testing.T, ns, addr string, answer func(net.Conn)) {
	t.Helper()
	var l net.Listener
	must(t, inNamespace(ns, func() (err error) { l, err = net.Listen("tcp4", addr); return err }))
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			answer(c)
			c.Close()
		}
	}()
}

// serve answers TCP connections on addr inside ns with "hello from
// <what>".
func serve(t *testing.T, ns, addr, what string) {
	t.Helper()
	acceptIn(t, ns, addr, func(c net.Conn) { io.WriteString(c, "hello from "+what) })
}

// dial connects from inside ns to addr and returns what the server said.
func dial(ns, addr string, timeout time.Duration) (string, error) {
	var out string
	err := inNamespace(ns, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		c, err := (&net.Dialer{}).DialContext(ctx, "tcp4", addr)
		if err != nil {
			return err
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(timeout))
		b, err := io.ReadAll(c)
		out = string(b)
		return err
	})
	return out, err
}

// reaches tries to connect a few times (ARP and forwarding entries take a
// moment) and says whether it got the server's greeting.
func reaches(ns, addr, want string) error {
	var last error
	for i := 0; i < 6; i++ {
		out, err := dial(ns, addr, 700*time.Millisecond)
		if err == nil && strings.Contains(out, want) {
			return nil
		}
		if err == nil {
			err = fmt.Errorf("got %q", out)
		}
		last = err
	}
	return last
}

// blocked says whether connections from ns to addr fail.
func blocked(ns, addr string) error {
	if out, err := dial(ns, addr, 700*time.Millisecond); err == nil {
		return fmt.Errorf("connected and got %q", out)
	}
	return nil
}

func mustAddr(s string) *netlink.Addr {
	a, err := netlink.ParseAddr(s)
	if err != nil {
		panic(err)
	}
	return a
}

func netListen(addr string) (net.Listener, error) { return net.Listen("tcp4", addr) }

// mustRoute is a default route through gw on the link.
func mustRoute(link int, gw string) *netlink.Route {
	return &netlink.Route{LinkIndex: link, Gw: net.ParseIP(gw)}
}

// peersSeen listens on addr inside ns and sends the address of every
// connection it accepts, until the test ends.
func peersSeen(t *testing.T, ns, addr string) <-chan string {
	t.Helper()
	seen := make(chan string, 8)
	acceptIn(t, ns, addr, func(c net.Conn) {
		select {
		case seen <- c.RemoteAddr().String():
		default:
		}
	})
	return seen
}

// seenFrom waits for a connection peersSeen reports and checks its source
// address.
func seenFrom(t *testing.T, seen <-chan string, wantPrefix string) {
	t.Helper()
	select {
	case from := <-seen:
		if !strings.HasPrefix(from, wantPrefix) {
			t.Errorf("the server saw %s, want %s...", from, wantPrefix)
		}
	case <-time.After(2 * time.Second):
		t.Errorf("the server saw no connection")
	}
}
