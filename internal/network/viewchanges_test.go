package network

import (
	"context"
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/kumocloud/kumo/api"
)

// TestAgentViewOfALiveMigration: while a live migration transfers, its
// target's agent has the port as a local one (rules, lease: ready when
// the guest is activated there) and still sends to the source; every
// other host sends to the source alone. The view's version is the same
// for the same view (whatever order the ports come in, names left out
// or not) and changes when the port moves.
func TestAgentViewOfALiveMigration(t *testing.T) {
	svc, _ := newSvc(t, roomy)
	ctx := context.Background()
	svc.EnsureDefaultGroup(ctx, "p")
	nic := func(ip string) api.InstanceNIC {
		return api.InstanceNIC{VNI: 7, CIDR: "10.20.0.0/24", Gateway: "10.20.0.1", IP: ip, MAC: "02:00:" + ip, PortID: "port-" + ip, SecurityGroups: []string{"default"}}
	}
	vteps := map[string]string{"h1": "198.18.0.1", "h2": "198.18.0.2", "h3": "198.18.0.3"}
	vm := PlacedNIC{Host: "h1", Target: "h2", Project: "p", Instance: "vm", InstanceID: "i-vm", NIC: nic("10.20.0.5")}
	peer := PlacedNIC{Host: "h3", Project: "p", Instance: "peer", InstanceID: "i-peer", NIC: nic("10.20.0.6")}
	other := PlacedNIC{Host: "h3", Project: "p", Instance: "other", InstanceID: "i-other", NIC: nic("10.20.0.7")}
	view := func(host string, known string, placed ...PlacedNIC) api.AgentNetworks {
		t.Helper()
		v, err := svc.AgentView(ctx, map[string]bool{host: true}, placed, vteps, known)
		if err != nil || len(v.Networks) != 1 {
			t.Fatalf("%s's view: %+v %v", host, v, err)
		}
		return v
	}
	macsTo := func(v api.AgentNetworks) map[string][]string {
		out := map[string][]string{}
		for _, p := range v.Networks[0].Peers {
			out[p.Host] = p.MACs
		}
		return out
	}
	ports := func(v api.AgentNetworks) []string {
		var out []string
		for _, p := range v.Networks[0].Ports {
			out = append(out, p.Instance+"@"+p.Host)
		}
		return out
	}

	target := view("h2", "", vm, peer)
	if got := ports(target); !slices.Equal(got, []string{"vm@h2"}) || len(target.Networks[0].Ports[0].Rules) == 0 {
		t.Errorf("the target's local ports: %v %+v", got, target.Networks[0].Ports)
	}
	if got := macsTo(target); !slices.Equal(got["h1"], []string{vm.NIC.MAC}) || !slices.Equal(got["h3"], []string{peer.NIC.MAC}) {
		t.Errorf("the target's peers: %v", got)
	}
	third := view("h3", "", vm, peer, other)
	if got := macsTo(third); len(got) != 1 || !slices.Equal(got["h1"], []string{vm.NIC.MAC}) {
		t.Errorf("h3 sends the migrating port elsewhere than to its source: %v", got)
	}
	source := view("h1", "", vm, peer)
	if got := ports(source); !slices.Equal(got, []string{"vm@h1"}) {
		t.Errorf("the source's local ports: %v", got)
	}

	// One view, one version.
	if again := view("h3", third.NamesVersion, other, peer, vm); again.Version != third.Version || again.Networks[0].Names != nil {
		t.Errorf("the same view (names left out, ports in another order) has version %s, not %s", again.Version, third.Version)
	}
	// Committed: on h2 alone.
	vm.Host, vm.Target = "h2", ""
	moved := view("h3", third.NamesVersion, vm, peer, other)
	if got := macsTo(moved); len(got) != 1 || !slices.Equal(got["h2"], []string{vm.NIC.MAC}) || moved.Version == third.Version {
		t.Errorf("h3 after the commit: %v, version %s (was %s)", got, moved.Version, third.Version)
	}
	if got := ports(view("h2", "", vm, peer)); !slices.Equal(got, []string{"vm@h2"}) {
		t.Errorf("the target's ports after the commit: %v", got)
	}
}

// TestViewChangedOnRuleChange: a security rule added wakes the agents'
// long polls (ViewChanged is closed by the store's watch).
func TestViewChangedOnRuleChange(t *testing.T) {
	svc, _ := newSvc(t, roomy)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	svc.EnsureDefaultGroup(ctx, "p")
	svc.FollowViewChanges(ctx, slog.New(slog.DiscardHandler))
	changed := svc.ViewChanged()
	if _, err := svc.AddRule(ctx, "p", "default", api.SecurityRule{Direction: "ingress", Protocol: "tcp", PortMin: 22, RemoteCIDR: "0.0.0.0/0"}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-changed:
	case <-time.After(30 * time.Second):
		t.Fatal("adding a rule did not wake the views' long polls")
	}
}
