package network

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"math/big"
	"net/netip"
	"strings"

	"github.com/google/uuid"

	"github.com/kumocloud/kumo/api"
	"github.com/kumocloud/kumo/internal/errs"
	"github.com/kumocloud/kumo/internal/events"
	"github.com/kumocloud/kumo/internal/idempotency"
	"github.com/kumocloud/kumo/internal/quota"
	"github.com/kumocloud/kumo/internal/store"
	"github.com/kumocloud/kumo/internal/validate"
)

// maxAttempts bounds the retries of a port create that lost addresses to
// concurrent creates (each retry reads the allocations afresh).
const maxAttempts = 64

// CreatePort allocates an address on a network (a given one, or a free
// one of its pools) and makes the port, in one transaction with the
// address's key: two ports never share an address.
func (svc *Service) CreatePort(ctx context.Context, project string, req api.PortsPost) (api.Port, error) {
	if err := validate.Name("name", req.Name); err != nil {
		return api.Port{}, err
	}
	if err := validate.Labels("labels", req.Labels); err != nil {
		return api.Port{}, err
	}
	var want netip.Addr
	if req.IP != "" {
		var err error
		if want, err = parseAddr("ip", req.IP); err != nil {
			return api.Port{}, err
		}
	}
	pk := portKey(project, req.Name)
	for attempt := 0; attempt < maxAttempts; attempt++ {
		n, nrev, err := svc.getNet(ctx, project, req.Network)
		if err != nil {
			return api.Port{}, err
		}
		ip, err := svc.address(ctx, n, req.Network, req.IP)
		if err != nil {
			return api.Port{}, err
		}
		t := svc.now().UTC()
		p := api.Port{Meta: api.Meta{ID: uuid.NewString(), Name: req.Name, Labels: req.Labels, CreatedAt: t, UpdatedAt: t},
			Project: project, Network: req.Network, MAC: MAC(ip), IP: ip.String()}
		ak := ipamKey(n.ID, p.IP)
		rev, err := quota.Reserve(ctx, svc.s, project, api.ResourceCounts{Ports: 1},
			[]store.Cond{store.Absent(pk), store.Absent(ak), store.At(netKey(n.Project, n.Name), nrev)},
			append([]store.Op{store.PutJSON(pk, p), store.PutJSON(ak, allocation{Project: project, Port: req.Name}),
				events.Op(ctx, "port", events.Created, project, portURL(project, req.Name), p)}, idempotency.Done(ctx, p)...))
		if err == nil {
			p.Revision = rev
			return p, nil
		}
		if !errors.Is(err, store.ErrConflict) {
			return api.Port{}, err
		}
		if _, gerr := svc.s.Get(ctx, pk); gerr == nil {
			return api.Port{}, errs.Conflict("port %q already exists in project %q", req.Name, project)
		}
		if req.IP != "" {
			if _, gerr := svc.s.Get(ctx, ak); gerr == nil {
				return api.Port{}, errs.Conflict("address %s is taken on network %q", want, req.Network)
			}
		}
		// The address went to another port, or the network changed: again.
	}
	return api.Port{}, errs.Unavailable("network %q: too many concurrent address allocations; try again", req.Network)
}

// address is the address a new allocation on network n (named ref) gets:
// want, checked to be a host address of its subnet other than the
// gateway, or else a free one of its pools. A network being deleted
// takes none (its delete checks there are none).
func (svc *Service) address(ctx context.Context, n netRecord, ref, want string) (netip.Addr, error) {
	if n.Deleting {
		return netip.Addr{}, errs.Conflict("network %q is being deleted", ref)
	}
	sn := parseSubnet(n.Subnet)
	if want == "" {
		return svc.pick(ctx, n.ID, sn)
	}
	a, err := parseAddr("ip", want)
	if err != nil {
		return a, err
	}
	if lo, hi := bounds(sn.prefix); n32(a) < n32(lo) || n32(a) > n32(hi) || a == sn.gateway {
		return a, errs.Invalid("ip", "ip %s is not a free host address of %s (the gateway is %s)", a, sn.prefix, sn.gateway)
	}
	return a, nil
}

// pick chooses a free address of the pools at random (so that concurrent
// creates seldom pick the same), or says the network is full.
func (svc *Service) pick(ctx context.Context, netID string, sn subnet) (netip.Addr, error) {
	used := map[string]bool{sn.gateway.String(): true}
	res, err := svc.s.List(ctx, ipamPrefix+netID+"/", store.Page{})
	if err != nil {
		return netip.Addr{}, err
	}
	for _, kv := range res.KVs {
		used[kv.Key[strings.LastIndex(kv.Key, "/")+1:]] = true
	}
	var free []netip.Addr
	for _, pool := range sn.pools {
		for v := n32(pool[0]); v <= n32(pool[1]); v++ {
			if a := u32(v); !used[a.String()] {
				free = append(free, a)
			}
		}
	}
	if len(free) == 0 {
		return netip.Addr{}, errs.Conflict("network has no free address left in %s (%d in use)", sn.prefix, len(res.KVs))
	}
	i, err := rand.Int(rand.Reader, big.NewInt(int64(len(free))))
	if err != nil {
		return netip.Addr{}, err
	}
	return free[i.Int64()], nil
}

// GetPort returns one of the project's ports.
func (svc *Service) GetPort(ctx context.Context, project, name string) (api.Port, error) {
	p, err := getObject(ctx, svc, project, portKey(project, name), fmt.Sprintf("port %q", name), func(p *api.Port) *api.Meta { return &p.Meta })
	if err == nil && p.Instance != "" {
		p.Host = svc.instances.HostOf(project, p.Instance)
	}
	return p, err
}

// ListPorts returns the project's ports, on one network if given.
func (svc *Service) ListPorts(ctx context.Context, project, network string) ([]api.Port, error) {
	items, err := store.ListJSON[api.Port](ctx, svc.s, portPrefix+project+"/")
	out := []api.Port{}
	for _, it := range items {
		if p := it.Value; network == "" || p.Network == network {
			p.Revision = it.Revision
			if p.Instance != "" {
				p.Host = svc.instances.HostOf(project, p.Instance)
			}
			out = append(out, p)
		}
	}
	return out, err
}

// DeletePort removes a port and frees its address.
func (svc *Service) DeletePort(ctx context.Context, project, name string) error {
	p, err := svc.GetPort(ctx, project, name)
	if err != nil {
		return err
	}
	if p.Instance != "" {
		return errs.Conflict("port %q belongs to instance %q and goes with it; terminate the instance", name, p.Instance)
	}
	n, _, err := svc.getNet(ctx, project, p.Network)
	if err != nil {
		return err
	}
	_, err = quota.Reserve(ctx, svc.s, project, api.ResourceCounts{Ports: -1}, []store.Cond{store.At(portKey(project, name), p.Revision)}, []store.Op{
		store.Del(portKey(project, name)), store.Del(ipamKey(n.ID, p.IP)), events.Op(ctx, "port", events.Deleted, project, portURL(project, name), nil),
	})
	if errors.Is(err, store.ErrConflict) {
		return errs.Conflict("port %q changed while being deleted; try again", name)
	}
	return err
}
