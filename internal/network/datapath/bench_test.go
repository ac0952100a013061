package datapath

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"os/exec"
	"testing"
	"time"
)

// BenchmarkPortWiring: what the agent does to wire a container's port on
// a host whose network exists - the namespace, the veth pair with eth0
// addressed and routed, plugged into the bridge - and the firewall
// applied with every port so far (one transaction that replaces the
// whole ruleset, so it grows with N: the last apply is reported too).
func BenchmarkPortWiring(b *testing.B) {
	tb := newTestbed(b, 1)
	h := tb.hosts[0]
	wide := Network{VNI: 300, Prefix: netip.MustParsePrefix("10.20.0.0/16"), Gateway: netip.MustParseAddr("10.20.0.1")}
	if err := h.EnsureNetwork(wide); err != nil {
		b.Fatal(err)
	}
	var fw []FirewallPort
	var wiring, firewall, last time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		ip := netip.AddrFrom4([4]byte{10, 20, byte(1 + i/250), byte(2 + i%250)})
		t0 := time.Now()
		in := tb.plugPort(0, wide, fmt.Sprintf("w%d", i), ip)
		t1 := time.Now()
		fw = append(fw, fwPort(in, wide.VNI))
		if err := h.ApplyFirewall(fw); err != nil {
			b.Fatal(err)
		}
		last = time.Since(t1)
		wiring, firewall = wiring+t1.Sub(t0), firewall+last
	}
	b.ReportMetric(float64(wiring.Microseconds())/1000/float64(b.N), "ms/port-wiring")
	b.ReportMetric(float64(firewall.Microseconds())/1000/float64(b.N), "ms/firewall-apply")
	b.ReportMetric(float64(last.Microseconds())/1000, "ms/firewall-apply-at-N")
}

// iperf3 measures TCP throughput from the client namespace to a server at
// addr in the server namespace, in Gbit/s.
func iperf3(b *testing.B, server, client, addr string) float64 {
	srv := exec.Command("nsenter", "--net="+server, "iperf3", "-s", "-1", "-B", addr)
	if err := srv.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() { srv.Process.Kill(); srv.Wait() }()
	time.Sleep(300 * time.Millisecond)
	out, err := exec.Command("nsenter", "--net="+client, "iperf3", "-c", addr, "-t", "3", "-J").Output()
	if err != nil {
		b.Fatalf("iperf3: %v %s", err, out)
	}
	var r struct {
		End struct {
			SumReceived struct {
				BitsPerSecond float64 `json:"bits_per_second"`
			} `json:"sum_received"`
		} `json:"end"`
	}
	if err := json.Unmarshal(out, &r); err != nil {
		b.Fatal(err)
	}
	return r.End.SumReceived.BitsPerSecond / 1e9
}

// BenchmarkVXLANThroughput: TCP between two containers' namespaces on two
// simulated hosts, over kumo's datapath (veth, bridge, firewall, VXLAN,
// underlay veth, and back), against a bare veth pair between two
// namespaces, in one run; the ratio is what the datapath costs.
func BenchmarkVXLANThroughput(b *testing.B) {
	if _, err := exec.LookPath("iperf3"); err != nil {
		b.Skip("iperf3 is not installed (make deps installs it)")
	}
	tb := newTestbed(b, 2)
	a0 := tb.plug(0, netA, "a0", "10.20.0.10")
	a1 := tb.plug(1, netA, "a1", "10.20.0.11")
	open := Rule{Ingress: true, Protocol: "tcp", Remotes: anywhere()}
	for i, in := range []instance{a0, a1} {
		other := map[int][]instance{0: {a0}, 1: {a1}}
		delete(other, i)
		if err := tb.hosts[i].SetPeers(netA.VNI, peersOf(tb, other)); err != nil {
			b.Fatal(err)
		}
		if err := tb.hosts[i].ApplyFirewall([]FirewallPort{fwPort(in, netA.VNI, open)}); err != nil {
			b.Fatal(err)
		}
	}
	x, y := tb.namespace("bare-x"), tb.namespace("bare-y")
	tb.link(x, "eth0", y, "eth0", netip.MustParsePrefix("192.0.2.1/24"), netip.MustParsePrefix("192.0.2.2/24"))
	var kumo, bare float64
	for i := 0; i < b.N; i++ {
		kumo += iperf3(b, a1.ns, a0.ns, "10.20.0.11")
		bare += iperf3(b, y, x, "192.0.2.2")
	}
	b.ReportMetric(kumo/float64(b.N), "Gbit/s-kumo")
	b.ReportMetric(bare/float64(b.N), "Gbit/s-veth")
	b.ReportMetric(kumo/bare, "kumo/veth")
}
