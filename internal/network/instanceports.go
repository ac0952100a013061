package network

import (
	"context"
	"fmt"

	"github.com/google/uuid"

	"github.com/kumocloud/kumo/api"
	"github.com/kumocloud/kumo/internal/errs"
	"github.com/kumocloud/kumo/internal/events"
	"github.com/kumocloud/kumo/internal/store"
)

// InstancePorts is the plan of an instance's ports: the NICs to record on
// the instance and the store conditions and operations that make the
// ports and take their addresses, for the caller to commit in the
// instance's own transaction - so an instance and its ports are made
// together or not at all. A conflict on commit means an address was taken
// meanwhile (or a port name is in use): plan again.
type InstancePorts struct {
	NICs  []api.InstanceNIC
	Conds []store.Cond
	Ops   []store.Op
}

// PlanInstancePorts picks a free address on each network for a new
// instance; ports are named <instance>-eth<N>.
func (svc *Service) PlanInstancePorts(ctx context.Context, project, instance string, nets, groups []string) (InstancePorts, error) {
	var out InstancePorts
	seen := map[string]bool{}
	for i, ref := range nets {
		field := fmt.Sprintf("networks[%d]", i)
		if seen[ref] {
			return out, errs.Invalid(field, "network %q is named twice; an instance has one port per network", ref)
		}
		seen[ref] = true
		n, nrev, err := svc.getNet(ctx, project, ref)
		if err != nil {
			return out, err
		}
		if n.Deleting {
			return out, errs.Conflict("network %q is being deleted", ref)
		}
		if n.External {
			return out, errs.Invalid(field, "network %q is external: it carries floating IPs, not instances' ports", ref)
		}
		sn := parseSubnet(n.Subnet)
		ip, err := svc.pick(ctx, n.ID, sn)
		if err != nil {
			return out, errs.Conflict("network %q: %v", ref, err)
		}
		t := svc.now().UTC()
		name := fmt.Sprintf("%s-eth%d", instance, i)
		p := api.Port{Meta: api.Meta{ID: uuid.NewString(), Name: name, CreatedAt: t, UpdatedAt: t},
			Project: project, Network: ref, MAC: MAC(ip), IP: ip.String(), Instance: instance}
		out.NICs = append(out.NICs, api.InstanceNIC{Network: ref, NetworkID: n.ID, Port: name, PortID: p.ID, MAC: p.MAC, IP: p.IP,
			VNI: n.VNI, CIDR: n.Subnet.CIDR, Gateway: n.Subnet.Gateway, DNS: n.Subnet.DNS, DHCP: n.Subnet.DHCP, SecurityGroups: groups})
		pk, ak := portKey(project, name), ipamKey(n.ID, p.IP)
		out.Conds = append(out.Conds, store.Absent(pk), store.Absent(ak), store.At(netKey(n.Project, n.Name), nrev))
		out.Ops = append(out.Ops, store.PutJSON(pk, p), store.PutJSON(ak, allocation{Project: project, Port: name}),
			events.Op(ctx, "port", events.Created, project, portURL(project, name), p))
	}
	return out, nil
}

// ReleaseOps are the store operations that delete an instance's ports and
// free their addresses, for the caller to commit with the instance's end.
func ReleaseOps(ctx context.Context, project string, nics []api.InstanceNIC) []store.Op {
	var ops []store.Op
	for _, nic := range nics {
		ops = append(ops, store.Del(portKey(project, nic.Port)), store.Del(ipamKey(nic.NetworkID, nic.IP)),
			events.Op(ctx, "port", events.Deleted, project, portURL(project, nic.Port), nil))
	}
	return ops
}
