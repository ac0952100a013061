package cli

import (
	"context"
	"fmt"

	"github.com/kumocloud/kumo/api"
	"github.com/kumocloud/kumo/client"
)

// warnHALocal says, on stderr, that an HA instance with a volume of the
// local pool is not recreated elsewhere when that volume's host is lost
// (docs/ha.md): its bytes cannot follow it. Said when the two meet: an
// HA instance created with such a boot volume, or such a volume attached
// to an HA instance. A lookup that fails says nothing (the request itself
// succeeded).
func (a *app) warnHALocal(in api.Instance, v api.Volume) {
	if !in.HA || v.Pool != api.PoolLocal {
		return
	}
	where := "its host"
	if v.Host != "" {
		where = "host " + v.Host
	}
	fmt.Fprintf(a.stderr, "warning: volume %s is in the local pool: if %s is lost, HA cannot recreate instance %s on another host (the volume's data cannot follow it); it stays UNKNOWN until the host returns. Use a shared-dir pool for HA (docs/ha.md)\n",
		v.Name, where, in.Name)
}

// warnHABoot is warnHALocal for a new HA instance's boot volume.
func (a *app) warnHABoot(ctx context.Context, c *client.Client, project string, in api.Instance) {
	if !in.HA || in.BootVolume == "" {
		return
	}
	if v, err := c.Volume(ctx, project, in.BootVolume); err == nil {
		a.warnHALocal(in, v)
	}
}

// warnHAAttach is warnHALocal for a volume just attached.
func (a *app) warnHAAttach(ctx context.Context, c *client.Client, project string, v api.Volume) {
	if v.Pool != api.PoolLocal || v.Attachment == nil {
		return
	}
	if in, err := c.Instance(ctx, project, v.Attachment.Instance); err == nil {
		a.warnHALocal(in, v)
	}
}
