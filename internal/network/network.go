// Package network is the control plane of virtual networks (the Neutron
// server part): networks with one IPv4 subnet each, and ports whose
// addresses the IPAM allocates. An address is taken by creating its key,
// /ipam/{network id}/{ip}, in the same store transaction as the port, so
// no two ports ever get one address, whatever the concurrency. A port's
// MAC is derived from its address (02:00 and the four IPv4 bytes, as
// OpenNebula does). Also security groups (secgroups.go), floating IPs on
// external networks (floatingips.go), the DNS names of instances
// (dnsnames.go) and the ports made with an instance, in its own
// transaction (instanceports.go). Keys: /networks/{project}/{name},
// /ports/{project}/{name}, /vnis/{vni}, /secgroups/{project}/{name},
// /floatingips/{project}/{address}.
//
// The datapath is the agents' part (package datapath): each agent fetches
// its hosts' view (AgentView: local ports, the hosts to tunnel to,
// security rules, floating IPs, names) and makes its host match it.
package network

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"math/big"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/kumocloud/kumo/api"
	"github.com/kumocloud/kumo/internal/errs"
	"github.com/kumocloud/kumo/internal/events"
	"github.com/kumocloud/kumo/internal/idempotency"
	"github.com/kumocloud/kumo/internal/quota"
	"github.com/kumocloud/kumo/internal/store"
	"github.com/kumocloud/kumo/internal/validate"
)

const (
	netPrefix  = "/networks/"
	portPrefix = "/ports/"
	ipamPrefix = "/ipam/"
	vniPrefix  = "/vnis/"
)

func netKey(project, name string) string  { return netPrefix + project + "/" + name }
func portKey(project, name string) string { return portPrefix + project + "/" + name }
func ipamKey(netID, ip string) string     { return ipamPrefix + netID + "/" + ip }
func netURL(project, name string) string  { return "/v1/projects/" + project + "/networks/" + name }
func portURL(project, name string) string { return "/v1/projects/" + project + "/ports/" + name }

// Instances is what the network service needs to know of instances (the
// compute service owns them).
type Instances interface {
	// HostOf says where a live instance runs ("" when nowhere), shown on
	// its ports.
	HostOf(project, instance string) string
	// GroupUsers counts the live instances with a port in a security
	// group (a group in use is not deleted).
	GroupUsers(project, group string) int
	// InstanceNICs returns a live instance's id and ports (floating IPs
	// attach to the first).
	InstanceNICs(ctx context.Context, project, instance string) (string, []api.InstanceNIC, error)
}

// Service is the network control plane.
type Service struct {
	s         store.Store
	now       func() time.Time
	instances Instances
	// egressNAT: tenant networks reach past their hosts' default routes
	// (masqueraded); off, only floating IPs leave.
	egressNAT bool
	// viewChanges wakes agents' long polls of their views
	// (viewchanges.go).
	viewChanges changes
}

// New returns the service.
func New(s store.Store, now func() time.Time, instances Instances, egressNAT bool) *Service {
	return &Service{s: s, now: now, instances: instances, egressNAT: egressNAT}
}

// netRecord is a network as stored; Deleting closes it to new ports while
// a delete checks that it has none.
type netRecord struct {
	api.Network
	Deleting bool `json:"deleting,omitempty"`
}

// allocation is what an address key holds.
type allocation struct {
	Project string `json:"project"`
	Port    string `json:"port"`
}

// subnet is a parsed, checked subnet.
type subnet struct {
	prefix  netip.Prefix
	gateway netip.Addr
	pools   [][2]netip.Addr
}

func parseAddr(field, v string) (netip.Addr, error) {
	a, err := netip.ParseAddr(v)
	if err != nil || !a.Is4() {
		return a, errs.Invalid(field, "%s %q is not an IPv4 address", field, v)
	}
	return a, nil
}

// first and last usable addresses of a prefix (not network, not broadcast).
func bounds(p netip.Prefix) (netip.Addr, netip.Addr) {
	base := binary.BigEndian.Uint32(p.Masked().Addr().AsSlice())
	size := uint32(1) << (32 - p.Bits())
	return u32(base + 1), u32(base + size - 2)
}

func u32(v uint32) netip.Addr {
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], v)
	return netip.AddrFrom4(b)
}

func n32(a netip.Addr) uint32 { return binary.BigEndian.Uint32(a.AsSlice()) }

// checkSubnet validates a request's subnet and fills in its defaults.
func checkSubnet(req *api.NetworksPost) (api.Subnet, error) {
	p, err := netip.ParsePrefix(req.CIDR)
	if err != nil || !p.Addr().Is4() {
		return api.Subnet{}, errs.Invalid("cidr", "cidr %q is not an IPv4 prefix like 10.20.0.0/24", req.CIDR)
	}
	if p.Bits() < 16 || p.Bits() > 29 {
		return api.Subnet{}, errs.Invalid("cidr", "cidr %q: the prefix length must be 16 to 29", req.CIDR)
	}
	if p.Masked() != p {
		return api.Subnet{}, errs.Invalid("cidr", "cidr %q has host bits set; did you mean %s?", req.CIDR, p.Masked())
	}
	lo, hi := bounds(p)
	out := api.Subnet{CIDR: p.String(), DHCP: req.DHCP == nil || *req.DHCP, DNS: req.DNS}
	gw := lo
	if req.Gateway != "" {
		if gw, err = parseAddr("gateway", req.Gateway); err != nil {
			return out, err
		}
		if n32(gw) < n32(lo) || n32(gw) > n32(hi) {
			return out, errs.Invalid("gateway", "gateway %s is not a host address of %s", gw, p)
		}
	}
	out.Gateway = gw.String()
	for i, d := range req.DNS {
		if _, err := parseAddr(fmt.Sprintf("dns[%d]", i), d); err != nil {
			return out, err
		}
	}
	// By default instances ask the network's own DNS server, at the
	// gateway (as Neutron's dnsmasq is): it knows their names and forwards
	// the rest if the network may go out. An external network has no
	// instances to tell.
	if len(out.DNS) == 0 && !req.External {
		out.DNS = []string{out.Gateway}
	}
	out.Pools = req.Pools
	if len(out.Pools) == 0 {
		out.Pools = []api.IPRange{{Start: lo.String(), End: hi.String()}}
	}
	for i, r := range out.Pools {
		f := fmt.Sprintf("allocation_pools[%d]", i)
		s, err := parseAddr(f+".start", r.Start)
		if err != nil {
			return out, err
		}
		e, err := parseAddr(f+".end", r.End)
		if err != nil {
			return out, err
		}
		if n32(s) < n32(lo) || n32(e) > n32(hi) || n32(s) > n32(e) {
			return out, errs.Invalid(f, "%s %s-%s is not a range of host addresses of %s", f, s, e, p)
		}
	}
	return out, nil
}

func parseSubnet(sn api.Subnet) subnet {
	p, _ := netip.ParsePrefix(sn.CIDR)
	gw, _ := netip.ParseAddr(sn.Gateway)
	out := subnet{prefix: p, gateway: gw}
	for _, r := range sn.Pools {
		s, _ := netip.ParseAddr(r.Start)
		e, _ := netip.ParseAddr(r.End)
		out.pools = append(out.pools, [2]netip.Addr{s, e})
	}
	return out
}

// MAC is the MAC address of a port with this IPv4 address.
func MAC(ip netip.Addr) string {
	b := ip.As4()
	return fmt.Sprintf("02:00:%02x:%02x:%02x:%02x", b[0], b[1], b[2], b[3])
}

// CreateNetwork makes a network and its subnet, with a VNI of its own.
func (svc *Service) CreateNetwork(ctx context.Context, project string, req api.NetworksPost) (api.Network, error) {
	if err := validate.Name("name", req.Name); err != nil {
		return api.Network{}, err
	}
	if err := validate.Labels("labels", req.Labels); err != nil {
		return api.Network{}, err
	}
	sn, err := checkSubnet(&req)
	if err != nil {
		return api.Network{}, err
	}
	t := svc.now().UTC()
	n := netRecord{Network: api.Network{Meta: api.Meta{ID: uuid.NewString(), Name: req.Name, Labels: req.Labels, CreatedAt: t, UpdatedAt: t},
		Project: project, Shared: req.Shared, External: req.External, Subnet: sn}}
	k := netKey(project, req.Name)
	for attempt := 0; attempt < 20; attempt++ {
		v, err := rand.Int(rand.Reader, big.NewInt(1<<24-2))
		if err != nil {
			return api.Network{}, err
		}
		n.VNI = v.Int64() + 1
		vk := vniPrefix + strconv.FormatInt(n.VNI, 10)
		rev, err := quota.Reserve(ctx, svc.s, project, api.ResourceCounts{Networks: 1}, []store.Cond{store.Absent(k), store.Absent(vk)}, append([]store.Op{
			store.PutJSON(k, n), store.Put(vk, []byte(n.ID)), events.Op(ctx, "network", events.Created, project, netURL(project, req.Name), n.Network),
		}, idempotency.Done(ctx, n.Network)...))
		if errors.Is(err, store.ErrConflict) {
			if _, gerr := svc.s.Get(ctx, k); gerr == nil {
				return api.Network{}, errs.Conflict("network %q already exists in project %q", req.Name, project)
			}
			continue // the VNI was taken: draw another
		}
		if err != nil {
			return api.Network{}, err
		}
		n.Revision = rev
		return n.Network, nil
	}
	return api.Network{}, errs.Unavailable("no free VNI found; try again")
}

// getNet reads a network a project may use: its own, or another project's
// shared one named "owner/name".
func (svc *Service) getNet(ctx context.Context, project, ref string) (netRecord, int64, error) {
	owner, name := project, ref
	if o, n, ok := strings.Cut(ref, "/"); ok {
		owner, name = o, n
	}
	var n netRecord
	rev, err := store.GetJSON(ctx, svc.s, netKey(owner, name), &n)
	if errors.Is(err, store.ErrNotFound) || err == nil && owner != project && !n.Shared {
		return n, 0, errs.NotFound("network %q not found", ref)
	}
	n.Revision = rev
	return n, rev, err
}

// GetNetwork returns a network the project may use.
func (svc *Service) GetNetwork(ctx context.Context, project, ref string) (api.Network, error) {
	n, _, err := svc.getNet(ctx, project, ref)
	return n.Network, err
}

// ListNetworks returns the project's networks and the shared ones.
func (svc *Service) ListNetworks(ctx context.Context, project string) ([]api.Network, error) {
	items, err := store.ListJSON[netRecord](ctx, svc.s, netPrefix)
	out := []api.Network{}
	for _, it := range items {
		if n := it.Value; n.Project == project || n.Shared {
			n.Revision = it.Revision
			out = append(out, n.Network)
		}
	}
	return out, err
}

// DeleteNetwork removes a network without ports. It is first closed to
// new ports (their creation checks the network did not change), so a
// port made meanwhile cannot be left on a deleted network.
func (svc *Service) DeleteNetwork(ctx context.Context, project, name string) error {
	k := netKey(project, name)
	n, rev, err := store.UpdateJSON(ctx, svc.s, k, func(n *netRecord) error { n.Deleting = true; return nil }, nil)
	if errors.Is(err, store.ErrNotFound) {
		return errs.NotFound("network %q not found in project %q", name, project)
	}
	if err != nil {
		return err
	}
	used, err := svc.s.List(ctx, ipamPrefix+n.ID+"/", store.Page{})
	if err != nil {
		return err
	}
	if len(used.KVs) > 0 {
		store.UpdateJSON(context.WithoutCancel(ctx), svc.s, k, func(n *netRecord) error { n.Deleting = false; return nil }, nil)
		return errs.Conflict("network %q has %d ports; delete them first", name, len(used.KVs))
	}
	_, err = quota.Reserve(ctx, svc.s, project, api.ResourceCounts{Networks: -1}, []store.Cond{store.At(k, rev)}, []store.Op{
		store.Del(k), store.Del(vniPrefix + strconv.FormatInt(n.VNI, 10)), events.Op(ctx, "network", events.Deleted, project, netURL(project, name), nil),
	})
	if errors.Is(err, store.ErrConflict) {
		return errs.Conflict("network %q changed while being deleted; try again", name)
	}
	return err
}
