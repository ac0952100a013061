package network

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kumocloud/kumo/api"
	"github.com/kumocloud/kumo/internal/errs"
	"github.com/kumocloud/kumo/internal/quota"
	"github.com/kumocloud/kumo/internal/store"
	"github.com/kumocloud/kumo/internal/store/memstore"
)

func newSvc(t *testing.T, limit api.ResourceCounts) (*Service, store.Store) {
	st := memstore.New()
	for _, p := range []string{"p", "q"} {
		if _, err := st.Txn(context.Background(), nil, []store.Op{quota.InitOp(p, limit)}); err != nil {
			t.Fatal(err)
		}
	}
	return New(st, time.Now, &fakeInstances{}, false), st
}

// fakeInstances stands in for the compute service.
type fakeInstances struct {
	nics func(project, instance string) (string, []api.InstanceNIC, error)
}

func (f *fakeInstances) HostOf(project, instance string) string { return "" }
func (f *fakeInstances) GroupUsers(project, group string) int   { return 0 }
func (f *fakeInstances) InstanceNICs(_ context.Context, project, instance string) (string, []api.InstanceNIC, error) {
	if f.nics == nil {
		return "", nil, errs.NotFound("instance %q not found", instance)
	}
	return f.nics(project, instance)
}

var roomy = api.ResourceCounts{Networks: 10, Ports: 1000}

func TestSubnetChecks(t *testing.T) {
	svc, _ := newSvc(t, roomy)
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		req  api.NetworksPost
		want string // error substring; "" = accepted
	}{
		{"defaults", api.NetworksPost{Name: "a", CIDR: "10.20.0.0/24"}, ""},
		{"ipv6", api.NetworksPost{Name: "b", CIDR: "fd00::/64"}, "not an IPv4 prefix"},
		{"host bits", api.NetworksPost{Name: "b", CIDR: "10.20.0.5/24"}, "did you mean 10.20.0.0/24"},
		{"too big", api.NetworksPost{Name: "b", CIDR: "10.0.0.0/8"}, "16 to 29"},
		{"gateway outside", api.NetworksPost{Name: "b", CIDR: "10.20.0.0/24", Gateway: "10.21.0.1"}, "gateway 10.21.0.1 is not a host address"},
		{"gateway broadcast", api.NetworksPost{Name: "b", CIDR: "10.20.0.0/24", Gateway: "10.20.0.255"}, "not a host address"},
		{"pool outside", api.NetworksPost{Name: "b", CIDR: "10.20.0.0/24", Pools: []api.IPRange{{Start: "10.20.0.10", End: "10.20.1.5"}}}, "allocation_pools[0]"},
		{"bad dns", api.NetworksPost{Name: "b", CIDR: "10.20.0.0/24", DNS: []string{"dns.example"}}, "dns[0]"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n, err := svc.CreateNetwork(ctx, "p", tc.req)
			if tc.want == "" {
				if err != nil || n.Subnet.Gateway != "10.20.0.1" || !n.Subnet.DHCP || n.VNI < 1 || n.VNI >= 1<<24 || len(n.Subnet.DNS) != 1 || n.Subnet.DNS[0] != "10.20.0.1" ||
					len(n.Subnet.Pools) != 1 || n.Subnet.Pools[0] != (api.IPRange{Start: "10.20.0.1", End: "10.20.0.254"}) {
					t.Fatalf("%+v %v", n, err)
				}
				return
			}
			if !errors.Is(err, errs.ErrInvalid) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("%v, want a 400 with %q", err, tc.want)
			}
		})
	}
}

func TestPorts(t *testing.T) {
	svc, _ := newSvc(t, roomy)
	ctx := context.Background()
	if _, err := svc.CreateNetwork(ctx, "p", api.NetworksPost{Name: "small", CIDR: "10.9.0.0/29", Gateway: "10.9.0.1"}); err != nil {
		t.Fatal(err)
	}
	// A /29 has 6 host addresses; the gateway takes one.
	seen := map[string]bool{}
	for i := 0; i < 5; i++ {
		p, err := svc.CreatePort(ctx, "p", api.PortsPost{Name: fmt.Sprintf("p%d", i), Network: "small"})
		if err != nil {
			t.Fatal(err)
		}
		ip := netip.MustParseAddr(p.IP)
		if seen[p.IP] || p.IP == "10.9.0.1" || !netip.MustParsePrefix("10.9.0.0/29").Contains(ip) || p.MAC != MAC(ip) {
			t.Fatalf("port %+v", p)
		}
		seen[p.IP] = true
	}
	_, err := svc.CreatePort(ctx, "p", api.PortsPost{Name: "p5", Network: "small"})
	if !errors.Is(err, errs.ErrConflict) || !strings.Contains(err.Error(), "no free address") {
		t.Fatalf("a full subnet: %v", err)
	}
	// Deleting a port frees its address for the next one.
	p0, _ := svc.GetPort(ctx, "p", "p0")
	if err := svc.DeletePort(ctx, "p", "p0"); err != nil {
		t.Fatal(err)
	}
	p5, err := svc.CreatePort(ctx, "p", api.PortsPost{Name: "p5", Network: "small"})
	if err != nil || p5.IP != p0.IP {
		t.Fatalf("after a delete: %+v %v (freed %s)", p5, err, p0.IP)
	}
	// A fixed address: taken, outside, the gateway.
	if _, err := svc.CreatePort(ctx, "p", api.PortsPost{Name: "x", Network: "small", IP: p5.IP}); !errors.Is(err, errs.ErrConflict) || !strings.Contains(err.Error(), "taken") {
		t.Fatalf("a taken address: %v", err)
	}
	for _, ip := range []string{"10.9.0.1", "10.9.0.7", "10.9.1.2"} {
		if _, err := svc.CreatePort(ctx, "p", api.PortsPost{Name: "x", Network: "small", IP: ip}); !errors.Is(err, errs.ErrInvalid) {
			t.Fatalf("address %s: %v", ip, err)
		}
	}
	if MAC(netip.MustParseAddr("10.20.0.5")) != "02:00:0a:14:00:05" {
		t.Fatal("MAC derivation")
	}
	// A network with ports cannot go; without, it can, and its name is free.
	if err := svc.DeleteNetwork(ctx, "p", "small"); !errors.Is(err, errs.ErrConflict) || !strings.Contains(err.Error(), "5 ports") {
		t.Fatalf("deleting a network with ports: %v", err)
	}
	if _, err := svc.CreatePort(ctx, "p", api.PortsPost{Name: "after-refusal", Network: "small", IP: "10.9.0.6"}); err != nil && !strings.Contains(err.Error(), "taken") {
		t.Fatalf("a refused delete left the network closed: %v", err)
	}
	ps, _ := svc.ListPorts(ctx, "p", "small")
	for _, p := range ps {
		if err := svc.DeletePort(ctx, "p", p.Name); err != nil {
			t.Fatal(err)
		}
	}
	if err := svc.DeleteNetwork(ctx, "p", "small"); err != nil {
		t.Fatal(err)
	}
	if _, err := svc.CreateNetwork(ctx, "p", api.NetworksPost{Name: "small", CIDR: "10.9.0.0/29"}); err != nil {
		t.Fatal(err)
	}
}

// TestConcurrentPorts: 200 ports created at once get 200 distinct
// addresses, and the quota counts exactly them.
func TestConcurrentPorts(t *testing.T) {
	svc, st := newSvc(t, roomy)
	ctx := context.Background()
	if _, err := svc.CreateNetwork(ctx, "p", api.NetworksPost{Name: "app", CIDR: "10.20.0.0/24"}); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	ips := make([]string, 200)
	errsSeen := make([]error, 200)
	for i := range ips {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p, err := svc.CreatePort(ctx, "p", api.PortsPost{Name: fmt.Sprintf("c%d", i), Network: "app"})
			ips[i], errsSeen[i] = p.IP, err
		}()
	}
	wg.Wait()
	distinct := map[string]bool{}
	for i, ip := range ips {
		if errsSeen[i] != nil {
			t.Fatalf("port %d: %v", i, errsSeen[i])
		}
		distinct[ip] = true
	}
	if len(distinct) != 200 {
		t.Fatalf("%d distinct addresses for 200 ports", len(distinct))
	}
	q, _, _ := quota.Get(ctx, st, "p")
	if q.Usage.Ports != 200 || q.Usage.Networks != 1 {
		t.Fatalf("usage %+v", q.Usage)
	}
}

func TestQuotaAndSharing(t *testing.T) {
	svc, _ := newSvc(t, api.ResourceCounts{Networks: 1, Ports: 1})
	ctx := context.Background()
	if _, err := svc.CreateNetwork(ctx, "p", api.NetworksPost{Name: "pub", CIDR: "10.30.0.0/24", Shared: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := svc.CreateNetwork(ctx, "p", api.NetworksPost{Name: "two", CIDR: "10.31.0.0/24"}); !errors.Is(err, errs.ErrQuotaExceeded) {
		t.Fatalf("a network over quota: %v", err)
	}
	if _, err := svc.CreateNetwork(ctx, "p", api.NetworksPost{Name: "pub", CIDR: "10.31.0.0/24"}); err == nil {
		t.Fatal("a second network of one name")
	}
	// Another project uses the shared network as owner/name, and sees it.
	if _, err := svc.CreatePort(ctx, "q", api.PortsPost{Name: "qp", Network: "p/pub"}); err != nil {
		t.Fatal(err)
	}
	if ns, _ := svc.ListNetworks(ctx, "q"); len(ns) != 1 || ns[0].Name != "pub" {
		t.Fatalf("q sees %+v", ns)
	}
	if _, err := svc.CreatePort(ctx, "q", api.PortsPost{Name: "qp2", Network: "p/pub"}); !errors.Is(err, errs.ErrQuotaExceeded) {
		t.Fatalf("a port over quota: %v", err)
	}
	// A private network of p is not q's to see.
	svc2, _ := newSvc(t, roomy)
	svc2.CreateNetwork(ctx, "p", api.NetworksPost{Name: "priv", CIDR: "10.32.0.0/24"})
	if _, err := svc2.CreatePort(ctx, "q", api.PortsPost{Name: "x", Network: "p/priv"}); !errors.Is(err, errs.ErrNotFound) {
		t.Fatalf("a private network from another project: %v", err)
	}
}
