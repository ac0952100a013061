package network

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sort"
	"strings"

	"github.com/google/uuid"

	"github.com/kumocloud/kumo/api"
	"github.com/kumocloud/kumo/internal/errs"
	"github.com/kumocloud/kumo/internal/events"
	"github.com/kumocloud/kumo/internal/idempotency"
	"github.com/kumocloud/kumo/internal/store"
	"github.com/kumocloud/kumo/internal/validate"
)

// Security groups are stored at /secgroups/{project}/{name}, rules inside.
const sgPrefix = "/secgroups/"

// DefaultGroup is the group instances get when they name none.
const DefaultGroup = "default"

func sgKey(project, name string) string { return sgPrefix + project + "/" + name }
func sgURL(project, name string) string {
	return "/v1/projects/" + project + "/security-groups/" + name
}

func egressAll() []api.SecurityRule {
	return []api.SecurityRule{{ID: uuid.NewString(), Direction: api.Egress, Protocol: "any", RemoteCIDR: "0.0.0.0/0"}}
}

// CreateSecurityGroup makes a group that allows all egress and no
// ingress.
func (svc *Service) CreateSecurityGroup(ctx context.Context, project string, req api.SecurityGroupsPost) (api.SecurityGroup, error) {
	if err := validate.Name("name", req.Name); err != nil {
		return api.SecurityGroup{}, err
	}
	if err := validate.Text("description", req.Description, 255); err != nil {
		return api.SecurityGroup{}, err
	}
	if err := validate.Labels("labels", req.Labels); err != nil {
		return api.SecurityGroup{}, err
	}
	return svc.createGroup(ctx, project, req, egressAll())
}

func (svc *Service) createGroup(ctx context.Context, project string, req api.SecurityGroupsPost, rules []api.SecurityRule) (api.SecurityGroup, error) {
	t := svc.now().UTC()
	g := api.SecurityGroup{Meta: api.Meta{ID: uuid.NewString(), Name: req.Name, Labels: req.Labels, CreatedAt: t, UpdatedAt: t},
		Project: project, Description: req.Description, Rules: rules}
	k := sgKey(project, req.Name)
	rev, err := svc.s.Txn(ctx, []store.Cond{store.Absent(k)}, append([]store.Op{store.PutJSON(k, g),
		events.Op(ctx, "security-group", events.Created, project, sgURL(project, req.Name), g)}, idempotency.Done(ctx, g)...))
	if errors.Is(err, store.ErrConflict) {
		return g, errs.Conflict("security group %q already exists in project %q", req.Name, project)
	}
	g.Revision = rev
	return g, err
}

// EnsureDefaultGroup makes the project's default group if it has none:
// ingress from its own members, all egress (as Neutron's).
func (svc *Service) EnsureDefaultGroup(ctx context.Context, project string) error {
	rules := append(egressAll(), api.SecurityRule{ID: uuid.NewString(), Direction: api.Ingress, Protocol: "any", RemoteGroup: DefaultGroup})
	_, err := svc.createGroup(ctx, project, api.SecurityGroupsPost{Name: DefaultGroup, Description: "ingress from its members, all egress"}, rules)
	if errors.Is(err, errs.ErrConflict) {
		return nil
	}
	return err
}

func sgMeta(g *api.SecurityGroup) *api.Meta { return &g.Meta }

// GetSecurityGroup returns one of the project's groups.
func (svc *Service) GetSecurityGroup(ctx context.Context, project, name string) (api.SecurityGroup, error) {
	return getObject(ctx, svc, project, sgKey(project, name), fmt.Sprintf("security group %q", name), sgMeta)
}

// ListSecurityGroups returns the project's groups.
func (svc *Service) ListSecurityGroups(ctx context.Context, project string) ([]api.SecurityGroup, error) {
	return listObjects(ctx, svc, sgPrefix+project+"/", sgMeta)
}

// DeleteSecurityGroup removes a group no instance uses and no rule of
// another group names.
func (svc *Service) DeleteSecurityGroup(ctx context.Context, project, name string) error {
	g, err := svc.GetSecurityGroup(ctx, project, name)
	if err != nil {
		return err
	}
	if n := svc.instances.GroupUsers(project, name); n > 0 {
		return errs.Conflict("security group %q is used by %d instances", name, n)
	}
	all, err := svc.ListSecurityGroups(ctx, project)
	if err != nil {
		return err
	}
	for _, o := range all {
		for _, r := range o.Rules {
			if r.RemoteGroup == name && o.Name != name {
				return errs.Conflict("security group %q is the remote of a rule of %q; delete that rule first", name, o.Name)
			}
		}
	}
	_, err = svc.s.Txn(ctx, []store.Cond{store.At(sgKey(project, name), g.Revision)}, []store.Op{store.Del(sgKey(project, name)),
		events.Op(ctx, "security-group", events.Deleted, project, sgURL(project, name), nil)})
	if errors.Is(err, store.ErrConflict) {
		return errs.Conflict("security group %q changed while being deleted; try again", name)
	}
	return err
}

// DeleteProjectGroups removes every security group of a project being
// deleted, its default group too (nothing of the project is left to use
// them; a new project of the same name must not inherit them).
func (svc *Service) DeleteProjectGroups(ctx context.Context, project string) error {
	prefix := sgPrefix + project + "/"
	return store.DeleteUnder(ctx, svc.s, prefix, func(kv store.KV) []store.Op {
		return []store.Op{events.Op(ctx, "security-group", events.Deleted, project, sgURL(project, kv.Key[len(prefix):]), nil)}
	})
}

// checkRule validates a rule and normalises it (protocol lower case, port
// range filled, CIDR masked, default remote 0.0.0.0/0).
func checkRule(r *api.SecurityRule) error {
	if r.Direction != api.Ingress && r.Direction != api.Egress {
		return errs.Invalid("direction", "direction %q: use ingress or egress", r.Direction)
	}
	r.Protocol = strings.ToLower(r.Protocol)
	switch r.Protocol {
	case "":
		r.Protocol = "any"
	case "tcp", "udp", "icmp", "any":
	default:
		return errs.Invalid("protocol", "protocol %q: use tcp, udp, icmp or any", r.Protocol)
	}
	if r.Protocol == "tcp" || r.Protocol == "udp" {
		if r.PortMax == 0 {
			r.PortMax = r.PortMin
		}
		if r.PortMin < 0 || r.PortMax > 65535 || r.PortMin > r.PortMax || (r.PortMin == 0) != (r.PortMax == 0) {
			return errs.Invalid("port_min", "port range %d-%d is not within 1-65535", r.PortMin, r.PortMax)
		}
	} else if r.PortMin != 0 || r.PortMax != 0 {
		return errs.Invalid("port_min", "a port range needs protocol tcp or udp, not %s", r.Protocol)
	}
	if r.RemoteCIDR != "" && r.RemoteGroup != "" {
		return errs.Invalid("remote_group", "give a remote CIDR or a remote group, not both")
	}
	if r.RemoteGroup != "" {
		return validate.Name("remote_group", r.RemoteGroup)
	}
	if r.RemoteCIDR == "" {
		r.RemoteCIDR = "0.0.0.0/0"
	}
	p, err := netip.ParsePrefix(r.RemoteCIDR)
	if err != nil || !p.Addr().Is4() {
		return errs.Invalid("remote_cidr", "remote_cidr %q is not an IPv4 prefix like 0.0.0.0/0", r.RemoteCIDR)
	}
	r.RemoteCIDR = p.Masked().String()
	return nil
}

func sameRule(a, b api.SecurityRule) bool {
	a.ID, b.ID = "", ""
	return a == b
}

// AddRule adds a rule to a group (a rule already there is a 409).
func (svc *Service) AddRule(ctx context.Context, project, group string, r api.SecurityRule) (api.SecurityGroup, error) {
	if err := checkRule(&r); err != nil {
		return api.SecurityGroup{}, err
	}
	if r.RemoteGroup != "" && r.RemoteGroup != group {
		if _, err := svc.GetSecurityGroup(ctx, project, r.RemoteGroup); err != nil {
			return api.SecurityGroup{}, errs.Invalid("remote_group", "remote group %q not found in project %q", r.RemoteGroup, project)
		}
	}
	r.ID = uuid.NewString()
	return svc.updateGroup(ctx, project, group, func(g *api.SecurityGroup) error {
		for _, o := range g.Rules {
			if sameRule(o, r) {
				return errs.Conflict("security group %q already has this rule (%s)", group, o.ID)
			}
		}
		g.Rules = append(g.Rules, r)
		return nil
	})
}

// DeleteRule removes a rule by id (or by id prefix of 8 or more).
func (svc *Service) DeleteRule(ctx context.Context, project, group, id string) (api.SecurityGroup, error) {
	return svc.updateGroup(ctx, project, group, func(g *api.SecurityGroup) error {
		for i, o := range g.Rules {
			if o.ID == id || len(id) >= 8 && strings.HasPrefix(o.ID, id) {
				g.Rules = append(g.Rules[:i], g.Rules[i+1:]...)
				return nil
			}
		}
		return errs.NotFound("security group %q has no rule %q", group, id)
	})
}

func (svc *Service) updateGroup(ctx context.Context, project, group string, fn func(*api.SecurityGroup) error) (api.SecurityGroup, error) {
	return updateObject(ctx, svc, project, sgKey(project, group), "security-group", sgURL(project, group),
		fmt.Sprintf("security group %q", group), sgMeta, fn)
}

// CheckGroups says whether every named group exists in the project
// (making the default group on its first use).
func (svc *Service) CheckGroups(ctx context.Context, project string, names []string) error {
	for i, n := range names {
		if n == DefaultGroup {
			if err := svc.EnsureDefaultGroup(ctx, project); err != nil {
				return err
			}
			continue
		}
		if _, err := svc.GetSecurityGroup(ctx, project, n); err != nil {
			return errs.Invalid(fmt.Sprintf("security_groups[%d]", i), "security group %q not found in project %q", n, project)
		}
	}
	return nil
}

// PlacedNIC is a port of an instance on a host, as the compute service
// knows it. Target is the host a live migration moves it to while the
// guest still runs on Host: its agent has the port wired, ready for the
// guest's activation there, and gets it in its view as a local port;
// every other host still reaches it on Host.
type PlacedNIC struct {
	Host, Target, Project, Instance, InstanceID string
	NIC                                         api.InstanceNIC
}

// here is the host of local holding the port ("" if none): its own
// host, or a live migration's target.
func (p PlacedNIC) here(local map[string]bool) string {
	switch {
	case local[p.Host]:
		return p.Host
	case p.Target != "" && local[p.Target]:
		return p.Target
	}
	return ""
}

// AgentView is what an agent's hosts need of networks: for each network
// with ports on them, the other hosts (their VTEP addresses, from vteps)
// with their ports' MACs, the local ports with resolved rules, and every
// port's name for DNS - left out if namesVersion, what the agent has,
// is still current (dnsNames).
func (svc *Service) AgentView(ctx context.Context, local map[string]bool, placed []PlacedNIC, vteps map[string]string, namesVersion string) (api.AgentNetworks, error) {
	out := api.AgentNetworks{Networks: []api.AgentNetwork{}}
	byVNI := map[int64]*api.AgentNetwork{}
	// Group members' addresses, by project, group and network: a rule
	// matches the sources of the network it filters, and the same address
	// on another network is another instance.
	members := map[string][]string{}
	projects := map[string]bool{}
	for _, p := range placed {
		for _, g := range p.NIC.SecurityGroups {
			k := fmt.Sprintf("%s/%s/%d", p.Project, g, p.NIC.VNI)
			members[k] = append(members[k], p.NIC.IP+"/32")
		}
		if p.here(local) != "" {
			projects[p.Project] = true
			if byVNI[p.NIC.VNI] == nil {
				byVNI[p.NIC.VNI] = &api.AgentNetwork{VNI: p.NIC.VNI, CIDR: p.NIC.CIDR, Gateway: p.NIC.Gateway, DNS: p.NIC.DNS, DHCP: p.NIC.DHCP,
					EgressNAT: svc.egressNAT, Peers: []api.NetworkPeer{}, Ports: []api.AgentPort{}, Domain: api.NetworkDomain(p.NIC.Network)}
			}
		}
	}
	// Floating IPs of local instances, and their external networks.
	fips := map[string]api.FloatingIP{}
	if len(projects) > 0 {
		all, err := store.ListJSON[api.FloatingIP](ctx, svc.s, fipPrefix)
		if err != nil {
			return out, err
		}
		for _, it := range all {
			if f := it.Value; f.InstanceID != "" && projects[f.Project] {
				fips[f.InstanceID] = f
			}
		}
	}
	externals := map[string]api.AgentExternal{}
	groups := map[string]api.SecurityGroup{}
	for project := range projects {
		gs, err := svc.ListSecurityGroups(ctx, project)
		if err != nil {
			return out, err
		}
		for _, g := range gs {
			groups[project+"/"+g.Name] = g
		}
	}
	peers := map[int64]map[string]*api.NetworkPeer{}
	for _, p := range placed {
		n := byVNI[p.NIC.VNI]
		if n == nil {
			continue
		}
		n.Names = append(n.Names, dnsName(p))
		here := p.here(local)
		if !local[p.Host] {
			// Others reach it on its host (on a live migration's target
			// too, until it is activated there: the bridge learns the
			// guest's own port from its announcement then).
			if peers[n.VNI] == nil {
				peers[n.VNI] = map[string]*api.NetworkPeer{}
			}
			pe := peers[n.VNI][p.Host]
			if pe == nil {
				pe = &api.NetworkPeer{Host: p.Host, VTEP: vteps[p.Host]}
				peers[n.VNI][p.Host] = pe
			}
			pe.MACs = append(pe.MACs, p.NIC.MAC)
			if here == "" {
				continue
			}
		}
		port := api.AgentPort{Host: here, Instance: p.Instance, InstanceID: p.InstanceID, PortID: p.NIC.PortID, MAC: p.NIC.MAC, IP: p.NIC.IP, Rules: []api.ResolvedRule{}}
		if f, ok := fips[p.InstanceID]; ok && f.Port == p.NIC.Port {
			ext, ok := externals[f.Network]
			if !ok {
				owner, name, _ := strings.Cut(f.Network, "/")
				var n netRecord
				if _, err := store.GetJSON(ctx, svc.s, netKey(owner, name), &n); err == nil {
					ext = api.AgentExternal{Name: f.Network, VNI: n.VNI, CIDR: n.Subnet.CIDR, Gateway: n.Subnet.Gateway}
					externals[f.Network] = ext
				}
			}
			if ext.VNI != 0 {
				port.FloatingIP, port.FloatingVNI = f.IP, ext.VNI
			}
		}
		for _, gname := range p.NIC.SecurityGroups {
			g, ok := groups[p.Project+"/"+gname]
			if !ok {
				continue // a deleted group allows nothing
			}
			for _, r := range g.Rules {
				rr := api.ResolvedRule{Direction: r.Direction, Protocol: r.Protocol, PortMin: r.PortMin, PortMax: r.PortMax, Remotes: []string{}}
				if r.RemoteGroup != "" {
					rr.Remotes = append(rr.Remotes, members[fmt.Sprintf("%s/%s/%d", p.Project, r.RemoteGroup, p.NIC.VNI)]...)
					sort.Strings(rr.Remotes) // one view, one version (placed is in no order)
				} else {
					rr.Remotes = append(rr.Remotes, r.RemoteCIDR)
				}
				port.Rules = append(port.Rules, rr)
			}
		}
		n.Ports = append(n.Ports, port)
	}
	for vni, n := range byVNI {
		for _, pe := range peers[vni] {
			if pe.VTEP != "" {
				sort.Strings(pe.MACs)
				n.Peers = append(n.Peers, *pe)
			}
		}
		// In an order of their own, so that one view has one version.
		sort.Slice(n.Peers, func(i, j int) bool { return n.Peers[i].Host < n.Peers[j].Host })
		sort.Slice(n.Ports, func(i, j int) bool { return n.Ports[i].PortID < n.Ports[j].PortID })
		out.Networks = append(out.Networks, *n)
	}
	sort.Slice(out.Networks, func(i, j int) bool { return out.Networks[i].VNI < out.Networks[j].VNI })
	out.NamesVersion = dnsNames(out.Networks, namesVersion)
	for _, e := range externals {
		out.Externals = append(out.Externals, e)
	}
	sort.Slice(out.Externals, func(i, j int) bool { return out.Externals[i].VNI < out.Externals[j].VNI })
	out.Version = viewVersion(out)
	return out, nil
}
