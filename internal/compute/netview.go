package compute

import (
	"github.com/kumocloud/kumo/api"
	"github.com/kumocloud/kumo/internal/network"
)

// What the network's agents' views are made from: the ports of placed
// instances (and of a live migration's target), and the instances in a
// security group.

// PlacedNICs lists the ports of every instance on a host (and of a live
// migration's target, which has them wired before the guest runs there),
// the hosts' addresses (their VXLAN endpoints), and a channel closed at
// the next change that can change them: a long poll of an agent's view
// takes it before it reads, so no change between the read and the wait
// is missed.
func (svc *Service) PlacedNICs() ([]network.PlacedNIC, map[string]string, <-chan struct{}) {
	svc.cache.mu.RLock()
	defer svc.cache.mu.RUnlock()
	var out []network.PlacedNIC
	for _, e := range svc.cache.instances {
		host := placedHost(&e.rec)
		if host == "" {
			continue
		}
		target := liveTarget(&e.rec)
		for _, nic := range e.rec.NICs {
			out = append(out, network.PlacedNIC{Host: host, Target: target, Project: e.rec.Project, Instance: e.rec.Name, InstanceID: e.rec.ID, NIC: nic})
		}
	}
	vteps := map[string]string{}
	for name, h := range svc.cache.hosts {
		vteps[name] = h.Address
	}
	return out, vteps, svc.cache.netChanged
}

// placedHost is the host an instance's ports are on ("" for none).
func placedHost(r *record) string {
	if !onHost(r.State) {
		return ""
	}
	return r.Host
}

// liveTarget is the target of a live migration that transfers: its
// agent wires the instance's ports before the guest runs there, so they
// are its ports too (firewall, leases, the network's peers ready at
// activation), while every other host still sends to the source until
// the commit moves the instance.
func liveTarget(r *record) string {
	if m := r.Migration; m != nil && m.Mode == api.MigrateLive && m.Phase == api.MigrationTransfer && r.State == api.StateMigrate && m.Target != r.Host {
		return m.Target
	}
	return ""
}

// GroupUsers counts the live instances with a port in a security group.
func (svc *Service) GroupUsers(project, group string) int {
	svc.cache.mu.RLock()
	defer svc.cache.mu.RUnlock()
	n := 0
	for _, e := range svc.cache.instances {
		if e.rec.Project != project || len(e.rec.NICs) == 0 {
			continue
		}
		for _, g := range e.rec.NICs[0].SecurityGroups {
			if g == group {
				n++
				break
			}
		}
	}
	return n
}
