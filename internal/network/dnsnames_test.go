package network

import (
	"context"
	"encoding/json"
	"fmt"
	"reflect"
	"testing"

	"github.com/kumocloud/kumo/api"
)

// TestAgentViewNames: an agent gets the names of every port of the
// networks its hosts serve, wherever they run, under each network's
// domain; on a shared network another project's are marked with their
// project; a network it does not serve gives none. Asked with the current
// version it gets none again, until a name changes.
func TestAgentViewNames(t *testing.T) {
	svc, _ := newSvc(t, roomy)
	ctx := context.Background()
	nic := func(vni int64, ref, ip string) api.InstanceNIC {
		return api.InstanceNIC{Network: ref, VNI: vni, CIDR: "10.20.0.0/24", Gateway: "10.20.0.1", IP: ip, MAC: "02:00:" + ip, PortID: "port-" + ip}
	}
	placed := []PlacedNIC{
		{Host: "h1", Project: "p", Instance: "db", InstanceID: "i1", NIC: nic(7, "app", "10.20.0.5")},
		{Host: "h2", Project: "p", Instance: "app1", InstanceID: "i2", NIC: nic(7, "app", "10.20.0.6")},
		{Host: "h3", Project: "p", Instance: "app2", InstanceID: "i3", NIC: nic(7, "app", "10.20.0.7")},
		{Host: "h1", Project: "p", Instance: "web", InstanceID: "i4", NIC: nic(8, "admin/shared", "10.20.0.8")},
		{Host: "h2", Project: "admin", Instance: "proxy", InstanceID: "i5", NIC: nic(8, "shared", "10.20.0.9")},
		{Host: "h3", Project: "q", Instance: "q1", InstanceID: "i6", NIC: nic(8, "admin/shared", "10.20.0.10")},
		{Host: "h2", Project: "p", Instance: "elsewhere", InstanceID: "i7", NIC: nic(9, "other", "10.20.0.11")},
	}
	view := func(placed []PlacedNIC, version string) api.AgentNetworks {
		t.Helper()
		v, err := svc.AgentView(ctx, map[string]bool{"h1": true}, placed, nil, version)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	v := view(placed, "")
	type got struct {
		Domain string
		Names  []api.AgentName
	}
	var have []got
	for _, n := range v.Networks {
		have = append(have, got{n.Domain, n.Names})
	}
	want := []got{
		{"app.kumo.internal", []api.AgentName{{Name: "app1", IP: "10.20.0.6"}, {Name: "app2", IP: "10.20.0.7"}, {Name: "db", IP: "10.20.0.5"}}},
		{"shared.kumo.internal", []api.AgentName{{Name: "proxy", IP: "10.20.0.9"}, {Name: "q1", IP: "10.20.0.10", Project: "q"}, {Name: "web", IP: "10.20.0.8", Project: "p"}}},
	}
	if !reflect.DeepEqual(have, want) {
		t.Errorf("names:\n%+v\nwant\n%+v", have, want)
	}
	if v.NamesVersion == "" {
		t.Fatalf("no names version")
	}
	again := view(placed, v.NamesVersion)
	if again.NamesVersion != v.NamesVersion || again.Networks[0].Names != nil || again.Networks[1].Names != nil {
		t.Errorf("asked with the current version: %+v", again)
	}
	// app2 goes: a new version, with the names.
	changed := view(append(append([]PlacedNIC{}, placed[:2]...), placed[3:]...), v.NamesVersion)
	if changed.NamesVersion == v.NamesVersion || len(changed.Networks) != 2 || len(changed.Networks[0].Names) != 2 {
		t.Errorf("after app2 went: %+v", changed)
	}
	swapped := append([]PlacedNIC{}, placed...)
	swapped[0].NIC.IP, swapped[1].NIC.IP = swapped[1].NIC.IP, swapped[0].NIC.IP
	if view(swapped, v.NamesVersion).NamesVersion == v.NamesVersion {
		t.Errorf("two names swapping addresses kept the version")
	}
}

// BenchmarkAgentViewNames: the view of a host with one port on a network
// of 10,000, fetched with the current names version (what every 2 s
// costs) and without (what a change costs, and its size).
func BenchmarkAgentViewNames(b *testing.B) {
	svc, _ := newSvc(&testing.T{}, roomy)
	ctx := context.Background()
	var placed []PlacedNIC
	for i := 0; i < 10000; i++ {
		ip := fmt.Sprintf("10.20.%d.%d", i/250, i%250+1)
		placed = append(placed, PlacedNIC{Host: fmt.Sprintf("h%d", i%100), Project: "p", Instance: fmt.Sprintf("instance-%05d", i), InstanceID: fmt.Sprint(i),
			NIC: api.InstanceNIC{Network: "app", VNI: 7, CIDR: "10.20.0.0/16", Gateway: "10.20.255.254", IP: ip, MAC: "02:00:" + ip, PortID: fmt.Sprint(i)}})
	}
	local := map[string]bool{"h0": true}
	vteps := map[string]string{}
	for i := 0; i < 100; i++ {
		vteps[fmt.Sprintf("h%d", i)] = fmt.Sprintf("198.18.0.%d", i+1)
	}
	v, _ := svc.AgentView(ctx, local, placed, vteps, "")
	full, _ := json.Marshal(v)
	b.Run("unchanged", func(b *testing.B) {
		for b.Loop() {
			svc.AgentView(ctx, local, placed, vteps, v.NamesVersion)
		}
		short, _ := svc.AgentView(ctx, local, placed, vteps, v.NamesVersion)
		out, _ := json.Marshal(short)
		b.ReportMetric(float64(len(out)), "bytes/view")
	})
	b.Run("changed", func(b *testing.B) {
		for b.Loop() {
			svc.AgentView(ctx, local, placed, vteps, "")
		}
		b.ReportMetric(float64(len(full)), "bytes/view")
	})
}
