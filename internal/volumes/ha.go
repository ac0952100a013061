package volumes

import (
	"context"
	"sort"

	"github.com/kumocloud/kumo/api"
	"github.com/kumocloud/kumo/internal/events"
	"github.com/kumocloud/kumo/internal/store"
)

// Volumes of an HA instance whose host is lost (compute's ha.go,
// docs/ha.md). A volume of a shared pool can follow the instance to
// another host: every host sees the same file. A volume of a local pool
// cannot: its bytes are on the lost host, so the instance is not
// recreated while it has one. The shared ones' attachments change hands
// in the transaction that decides the recreate (PlanHA's Conds and Ops):
// from then on no host carries them out until the instance is placed
// again (agentVolumes: a shared volume of an instance being recreated is
// handled by no host), then its new host attaches them, at the same
// device or path. The lost host, fenced, has stopped its copy; when it
// returns its view no longer lists them, so it only lets go of its own
// attachment records and host mounts (a shared pool is never swept).

// HAVolume is a volume attached to an instance whose host is lost.
type HAVolume struct {
	ID, Name string
	// Local: in a local pool, on Host only.
	Local bool
	Host  string
	// Device (a VM's disk, vda for its boot volume) or Path (a
	// container's mount point) it is attached at.
	Device, Path string
}

// HAPlan is what recreating an instance elsewhere does to its volumes:
// Conds and Ops go in the transaction that decides it.
type HAPlan struct {
	Volumes []HAVolume
	Conds   []store.Cond
	Ops     []store.Op
}

// Local lists the volumes of a local pool: those that keep the instance
// where it was.
func (p HAPlan) Local() []HAVolume {
	var out []HAVolume
	for _, v := range p.Volumes {
		if v.Local {
			out = append(out, v)
		}
	}
	return out
}

// PlanHA lists the volumes attached to an instance (its boot volume
// included; not a shared one being detached), by name, and the changes that hand the shared ones over to
// the host that will take the instance: each is attached nowhere until
// that host attaches it (a detach asked before the host was lost is done
// now: that volume stays behind, detached). Every volume read is a
// condition, so a volume attached, detached or changed meanwhile makes
// the decision be taken again.
func (svc *Service) PlanHA(ctx context.Context, project, instanceID string) (HAPlan, error) {
	pools, err := svc.pools(ctx)
	if err != nil {
		return HAPlan{}, err
	}
	items, err := store.ListJSON[record](ctx, svc.s, prefix+project+"/")
	if err != nil {
		return HAPlan{}, err
	}
	sort.Slice(items, func(i, j int) bool { return items[i].Value.Name < items[j].Value.Name })
	var p HAPlan
	for _, it := range items {
		r := it.Value
		a := r.Attachment
		if a == nil || a.InstanceID != instanceID {
			continue
		}
		local := pools[r.Pool].Type != api.PoolSharedDir
		k := key(project, r.Name)
		p.Conds = append(p.Conds, store.At(k, it.Revision))
		if local || !r.Detaching {
			p.Volumes = append(p.Volumes, HAVolume{ID: r.ID, Name: r.Name, Local: local, Host: r.Host, Device: a.Device, Path: a.Path})
		}
		if local {
			continue
		}
		next := r
		if r.Detaching {
			next.Attachment, next.Detaching = nil, false
			if next.Status == api.VolumeInUse {
				next.Status = api.VolumeAvailable
			}
		} else {
			c := *a
			c.Attached = false
			next.Attachment = &c
		}
		next.UpdatedAt = svc.now().UTC()
		p.Ops = append(p.Ops, store.PutJSON(k, next), events.Op(ctx, "volume", events.Updated, project, url(project, r.Name), next.Volume))
	}
	return p, nil
}

// Rehoming is what the agent view needs of an instance an HA decision is
// recreating elsewhere: it says so until the instance is placed again.
type Rehoming interface {
	Rehoming(ctx context.Context, project, name string) bool
}

// rehoming says whether a shared volume's instance is being recreated:
// no host handles the volume until its new host does.
func rehoming(ctx context.Context, live Live, r *record) bool {
	rh, ok := live.(Rehoming)
	return ok && r.Attachment != nil && rh.Rehoming(ctx, r.Project, r.Attachment.Instance)
}
