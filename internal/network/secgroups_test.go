package network

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/kumocloud/kumo/api"
	"github.com/kumocloud/kumo/internal/errs"
)

func TestRuleChecks(t *testing.T) {
	svc, _ := newSvc(t, roomy)
	ctx := context.Background()
	if _, err := svc.CreateSecurityGroup(ctx, "p", api.SecurityGroupsPost{Name: "web"}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		rule api.SecurityRule
		want string // error substring; "" = accepted
	}{
		{"tcp port", api.SecurityRule{Direction: "ingress", Protocol: "TCP", PortMin: 80}, ""},
		{"udp range", api.SecurityRule{Direction: "ingress", Protocol: "udp", PortMin: 5000, PortMax: 5010, RemoteCIDR: "10.0.0.7/8"}, ""},
		{"the same again", api.SecurityRule{Direction: "ingress", Protocol: "tcp", PortMin: 80, PortMax: 80}, "already has this rule"},
		{"no direction", api.SecurityRule{Protocol: "tcp", PortMin: 80}, "use ingress or egress"},
		{"bad protocol", api.SecurityRule{Direction: "ingress", Protocol: "sctp"}, "use tcp, udp, icmp or any"},
		{"port out of range", api.SecurityRule{Direction: "ingress", Protocol: "tcp", PortMin: 70000}, "1-65535"},
		{"reversed range", api.SecurityRule{Direction: "ingress", Protocol: "tcp", PortMin: 90, PortMax: 80}, "1-65535"},
		{"icmp with ports", api.SecurityRule{Direction: "ingress", Protocol: "icmp", PortMin: 1}, "needs protocol tcp or udp"},
		{"bad cidr", api.SecurityRule{Direction: "egress", RemoteCIDR: "10.0.0.0/33"}, "not an IPv4 prefix"},
		{"both remotes", api.SecurityRule{Direction: "ingress", RemoteCIDR: "10.0.0.0/8", RemoteGroup: "web"}, "not both"},
		{"unknown group", api.SecurityRule{Direction: "ingress", RemoteGroup: "nope"}, "remote group \"nope\" not found"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g, err := svc.AddRule(ctx, "p", "web", tc.rule)
			if tc.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				last := g.Rules[len(g.Rules)-1]
				if last.ID == "" || last.Protocol != strings.ToLower(tc.rule.Protocol) || last.RemoteCIDR == "" || last.PortMax < last.PortMin {
					t.Fatalf("stored as %+v", last)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("%v, want an error with %q", err, tc.want)
			}
		})
	}
	g, _ := svc.GetSecurityGroup(ctx, "p", "web")
	if g.Rules[2].RemoteCIDR != "10.0.0.0/8" {
		t.Errorf("the CIDR is not masked: %+v", g.Rules[2])
	}
	if _, err := svc.DeleteRule(ctx, "p", "web", g.Rules[1].ID[:8]); err != nil {
		t.Errorf("delete by id prefix: %v", err)
	}
	if _, err := svc.DeleteRule(ctx, "p", "web", "nosuch"); !errors.Is(err, errs.ErrNotFound) {
		t.Errorf("delete of no rule: %v", err)
	}
}

// TestAgentView: an agent sees, for each network with ports on its hosts,
// the other hosts' VTEPs and MACs, and its own ports with rules whose
// remote groups resolved to their members' addresses; networks without
// local ports are not in its view.
func TestAgentView(t *testing.T) {
	svc, _ := newSvc(t, roomy)
	ctx := context.Background()
	svc.CreateSecurityGroup(ctx, "p", api.SecurityGroupsPost{Name: "web"})
	svc.EnsureDefaultGroup(ctx, "p")
	if _, err := svc.AddRule(ctx, "p", "web", api.SecurityRule{Direction: "ingress", Protocol: "tcp", PortMin: 5432, RemoteGroup: "default"}); err != nil {
		t.Fatal(err)
	}
	nic := func(vni int64, ip string, groups ...string) api.InstanceNIC {
		return api.InstanceNIC{VNI: vni, CIDR: "10.20.0.0/24", Gateway: "10.20.0.1", IP: ip, MAC: "02:00:" + ip, PortID: "port-" + ip, SecurityGroups: groups}
	}
	placed := []PlacedNIC{
		{Host: "h1", Project: "p", Instance: "db", InstanceID: "i-db", NIC: nic(7, "10.20.0.5", "web")},
		{Host: "h2", Project: "p", Instance: "app1", InstanceID: "i-app1", NIC: nic(7, "10.20.0.6", "default")},
		{Host: "h3", Project: "p", Instance: "app2", InstanceID: "i-app2", NIC: nic(7, "10.20.0.7", "default")},
		{Host: "h2", Project: "p", Instance: "other", InstanceID: "i-o", NIC: nic(9, "10.20.0.8", "default")},
	}
	v, err := svc.AgentView(ctx, map[string]bool{"h1": true}, placed, map[string]string{"h1": "198.18.0.1", "h2": "198.18.0.2", "h3": "198.18.0.3"}, "")
	if err != nil {
		t.Fatal(err)
	}
	if len(v.Networks) != 1 || v.Networks[0].VNI != 7 {
		t.Fatalf("networks: %+v", v.Networks)
	}
	n := v.Networks[0]
	if len(n.Peers) != 2 || n.Peers[0].VTEP != "198.18.0.2" || n.Peers[0].MACs[0] != "02:00:10.20.0.6" || n.Peers[1].VTEP != "198.18.0.3" {
		t.Errorf("peers: %+v", n.Peers)
	}
	if len(n.Ports) != 1 || n.Ports[0].InstanceID != "i-db" {
		t.Fatalf("local ports: %+v", n.Ports)
	}
	var db api.ResolvedRule
	for _, r := range n.Ports[0].Rules {
		if r.PortMin == 5432 {
			db = r
		}
	}
	// Members on this network only: 10.20.0.8 is on another one.
	if strings.Join(db.Remotes, ",") != "10.20.0.6/32,10.20.0.7/32" {
		t.Errorf("the remote group resolved to %v", db.Remotes)
	}
}

// TestFloatingIPFollowsInstanceID: a floating IP reaches the agent's view
// for the instance it was attached to, by id: a later instance of the same
// name (the first ended and its detach was lost) does not inherit it.
func TestFloatingIPFollowsInstanceID(t *testing.T) {
	svc, _ := newSvc(t, api.ResourceCounts{Networks: 10, Ports: 10, FloatingIPs: 5})
	ctx := context.Background()
	if _, err := svc.CreateNetwork(ctx, "p", api.NetworksPost{Name: "public", CIDR: "203.0.113.0/24", External: true}); err != nil {
		t.Fatal(err)
	}
	f, err := svc.CreateFloatingIP(ctx, "p", api.FloatingIPsPost{Network: "public"})
	if err != nil {
		t.Fatal(err)
	}
	nic := api.InstanceNIC{VNI: 7, CIDR: "10.20.0.0/24", Gateway: "10.20.0.1", IP: "10.20.0.5", MAC: "02:00:0a:14:00:05", Port: "db-eth0", PortID: "port-db"}
	attachedTo := "i-old"
	svc.instances.(*fakeInstances).nics = func(string, string) (string, []api.InstanceNIC, error) {
		return attachedTo, []api.InstanceNIC{nic}, nil
	}
	if _, err := svc.AttachFloatingIP(ctx, "p", f.IP, "db"); err != nil {
		t.Fatal(err)
	}
	view := func() api.AgentPort {
		v, err := svc.AgentView(ctx, map[string]bool{"h1": true}, []PlacedNIC{{Host: "h1", Project: "p", Instance: "db", InstanceID: "i-db", NIC: nic}}, nil, "")
		if err != nil || len(v.Networks) != 1 || len(v.Networks[0].Ports) != 1 {
			t.Fatalf("view: %+v %v", v, err)
		}
		return v.Networks[0].Ports[0]
	}
	if p := view(); p.FloatingIP != "" {
		t.Errorf("a new instance named db inherited %s", p.FloatingIP)
	}
	attachedTo = "i-db"
	if _, err := svc.AttachFloatingIP(ctx, "p", f.IP, "db"); err != nil {
		t.Fatal(err)
	}
	if p := view(); p.FloatingIP != f.IP || p.FloatingVNI == 0 {
		t.Errorf("attached to i-db, the view says %q (vni %d)", p.FloatingIP, p.FloatingVNI)
	}
}
