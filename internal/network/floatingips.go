package network

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/google/uuid"

	"github.com/kumocloud/kumo/api"
	"github.com/kumocloud/kumo/internal/errs"
	"github.com/kumocloud/kumo/internal/events"
	"github.com/kumocloud/kumo/internal/idempotency"
	"github.com/kumocloud/kumo/internal/quota"
	"github.com/kumocloud/kumo/internal/store"
)

// Floating IPs are stored at /floatingips/{project}/{address}; the
// address's IPAM key on the external network is taken in the same
// transaction.
const fipPrefix = "/floatingips/"

func fipKey(project, ip string) string { return fipPrefix + project + "/" + ip }
func fipURL(project, ip string) string { return "/v1/projects/" + project + "/floating-ips/" + ip }

// externalNet finds an external network by "owner/name", by name in the
// project, or by name among every project's external networks (they carry
// every tenant's floating IPs, as Neutron's do).
func (svc *Service) externalNet(ctx context.Context, project, ref string) (netRecord, error) {
	owner, name, scoped := strings.Cut(ref, "/")
	if !scoped {
		owner, name = project, ref
	}
	var n netRecord
	rev, err := store.GetJSON(ctx, svc.s, netKey(owner, name), &n)
	if err == nil && n.External {
		n.Revision = rev
		return n, nil
	}
	if scoped {
		return n, errs.NotFound("external network %q not found", ref)
	}
	items, err := store.ListJSON[netRecord](ctx, svc.s, netPrefix)
	if err != nil {
		return n, err
	}
	var found []netRecord
	for _, it := range items {
		if it.Value.External && it.Value.Name == name {
			it.Value.Revision = it.Revision
			found = append(found, it.Value)
		}
	}
	switch len(found) {
	case 0:
		return n, errs.NotFound("external network %q not found (a cloud admin makes one with --external)", ref)
	case 1:
		return found[0], nil
	}
	return n, errs.Invalid("network", "%d external networks are named %q; say owner/name", len(found), ref)
}

// CreateFloatingIP takes a free (or the given) address of an external
// network for the project.
func (svc *Service) CreateFloatingIP(ctx context.Context, project string, req api.FloatingIPsPost) (api.FloatingIP, error) {
	if req.Network == "" {
		return api.FloatingIP{}, errs.Invalid("network", "network is required: the external network to take the address from")
	}
	for attempt := 0; attempt < maxAttempts; attempt++ {
		n, err := svc.externalNet(ctx, project, req.Network)
		if err != nil {
			return api.FloatingIP{}, err
		}
		ip, err := svc.address(ctx, n, req.Network, req.IP)
		if err != nil {
			return api.FloatingIP{}, err
		}
		t := svc.now().UTC()
		f := api.FloatingIP{Meta: api.Meta{ID: uuid.NewString(), Name: ip.String(), CreatedAt: t, UpdatedAt: t},
			Project: project, Network: n.Project + "/" + n.Name, NetworkID: n.ID, IP: ip.String()}
		k, ak := fipKey(project, f.IP), ipamKey(n.ID, f.IP)
		rev, err := quota.Reserve(ctx, svc.s, project, api.ResourceCounts{FloatingIPs: 1},
			[]store.Cond{store.Absent(k), store.Absent(ak), store.At(netKey(n.Project, n.Name), n.Revision)},
			append([]store.Op{store.PutJSON(k, f), store.PutJSON(ak, allocation{Project: project, Port: "floating-ip " + f.IP}),
				events.Op(ctx, "floating-ip", events.Created, project, fipURL(project, f.IP), f)}, idempotency.Done(ctx, f)...))
		if err == nil {
			f.Revision = rev
			return f, nil
		}
		if !errors.Is(err, store.ErrConflict) {
			return api.FloatingIP{}, err
		}
		if _, gerr := svc.s.Get(ctx, ak); gerr == nil && req.IP != "" {
			return api.FloatingIP{}, errs.Conflict("address %s is taken on network %q", req.IP, req.Network)
		}
		// The address went to someone else, or the network changed: again.
	}
	return api.FloatingIP{}, errs.Unavailable("too many concurrent allocations; try again")
}

// withHost fills in where the floating IP's instance runs.
func (svc *Service) withHost(f api.FloatingIP) api.FloatingIP {
	if f.Instance != "" {
		f.Host = svc.instances.HostOf(f.Project, f.Instance)
	}
	return f
}

func fipMeta(f *api.FloatingIP) *api.Meta { return &f.Meta }

// GetFloatingIP returns one of the project's floating IPs.
func (svc *Service) GetFloatingIP(ctx context.Context, project, ip string) (api.FloatingIP, error) {
	f, err := getObject(ctx, svc, project, fipKey(project, ip), fmt.Sprintf("floating IP %q", ip), fipMeta)
	return svc.withHost(f), err
}

// ListFloatingIPs returns the project's floating IPs.
func (svc *Service) ListFloatingIPs(ctx context.Context, project string) ([]api.FloatingIP, error) {
	fs, err := listObjects(ctx, svc, fipPrefix+project+"/", fipMeta)
	for i := range fs {
		fs[i] = svc.withHost(fs[i])
	}
	return fs, err
}

// DeleteFloatingIP gives the address back (detached or not).
func (svc *Service) DeleteFloatingIP(ctx context.Context, project, ip string) error {
	f, err := svc.GetFloatingIP(ctx, project, ip)
	if err != nil {
		return err
	}
	_, err = quota.Reserve(ctx, svc.s, project, api.ResourceCounts{FloatingIPs: -1}, []store.Cond{store.At(fipKey(project, ip), f.Revision)},
		[]store.Op{store.Del(fipKey(project, ip)), store.Del(ipamKey(f.NetworkID, f.IP)),
			events.Op(ctx, "floating-ip", events.Deleted, project, fipURL(project, ip), nil)})
	if errors.Is(err, store.ErrConflict) {
		return errs.Conflict("floating IP %s changed while being deleted; try again", ip)
	}
	return err
}

// AttachFloatingIP points a floating IP at an instance's first port.
func (svc *Service) AttachFloatingIP(ctx context.Context, project, ip, instance string) (api.FloatingIP, error) {
	id, nics, err := svc.instances.InstanceNICs(ctx, project, instance)
	if err != nil {
		return api.FloatingIP{}, err
	}
	if len(nics) == 0 {
		return api.FloatingIP{}, errs.Conflict("instance %q has no port: create it with --network", instance)
	}
	nic := nics[0]
	all, err := svc.ListFloatingIPs(ctx, project)
	if err != nil {
		return api.FloatingIP{}, err
	}
	for _, o := range all {
		if o.Instance == instance && o.IP != ip {
			return api.FloatingIP{}, errs.Conflict("instance %q already has floating IP %s", instance, o.IP)
		}
	}
	return svc.updateFIP(ctx, project, ip, func(f *api.FloatingIP) error {
		if f.Instance != "" && f.Instance != instance {
			return errs.Conflict("floating IP %s is attached to %q; detach it first", ip, f.Instance)
		}
		f.Instance, f.InstanceID, f.Port, f.FixedIP = instance, id, nic.Port, nic.IP
		return nil
	})
}

// DetachFloatingIP detaches a floating IP (it stays the project's).
func (svc *Service) DetachFloatingIP(ctx context.Context, project, ip string) (api.FloatingIP, error) {
	return svc.updateFIP(ctx, project, ip, func(f *api.FloatingIP) error {
		f.Instance, f.InstanceID, f.Port, f.FixedIP = "", "", "", ""
		return nil
	})
}

// DetachInstance detaches the floating IPs of an instance that ended.
func (svc *Service) DetachInstance(ctx context.Context, project, instance string) error {
	all, err := svc.ListFloatingIPs(ctx, project)
	if err != nil {
		return err
	}
	for _, f := range all {
		if f.Instance == instance {
			if _, err := svc.DetachFloatingIP(ctx, project, f.IP); err != nil {
				return err
			}
		}
	}
	return nil
}

func (svc *Service) updateFIP(ctx context.Context, project, ip string, fn func(*api.FloatingIP) error) (api.FloatingIP, error) {
	f, err := updateObject(ctx, svc, project, fipKey(project, ip), "floating-ip", fipURL(project, ip),
		fmt.Sprintf("floating IP %q", ip), fipMeta, fn)
	return svc.withHost(f), err
}
