package compute

import (
	"fmt"
	"slices"

	"github.com/kumocloud/kumo/api"
	"github.com/kumocloud/kumo/internal/errs"
)

// hostCan says whether host h's driver can do capability c for instances
// of kind; known is false for a host whose agent did not say (an older
// agent), and the caller falls back on what the kind used to mean.
func hostCan(h api.Host, kind, c string) (can, known bool) {
	if h.Capabilities == nil {
		return false, false
	}
	return slices.Contains(h.Capabilities[kind], c), true
}

// liveCapable says whether instances of kind can leave host h live:
// what its driver declares, or for a host that does not say, VMs only.
func liveCapable(h api.Host, kind string) bool {
	can, known := hostCan(h, kind, api.CapLiveMigrate)
	if !known {
		return kind == api.TypeVM
	}
	return can
}

// cannotReceive is why host h cannot be the target of a migration of
// kind in mode, or "" if it can (or does not say).
func cannotReceive(h api.Host, kind, mode string) string {
	c := api.CapMigrate
	if mode == api.MigrateLive {
		c = api.CapLiveMigrate
	}
	if can, known := hostCan(h, kind, c); known && !can {
		return fmt.Sprintf("its driver (%s) cannot receive %s instances %s", h.Driver, kind, modeWords(mode))
	}
	return ""
}

func modeWords(mode string) string {
	if mode == api.MigrateLive {
		return "live"
	}
	return "by migration"
}

// migrationMode is the mode a migration of r from source runs in: live
// for a RUNNING instance whose source driver can move it live (a VM, on
// a host that does not say) unless asked cold; anything else is refused
// up front, naming why, before any room is reserved.
func (svc *Service) migrationMode(r *record, source, asked string) (string, error) {
	svc.cache.mu.RLock()
	h, ok := svc.cache.hosts[source]
	svc.cache.mu.RUnlock()
	if ok {
		if can, known := hostCan(h, r.Type, api.CapMigrate); known && !can {
			return "", errs.Conflict("instance %q: host %s's driver (%s) cannot migrate %s instances", r.Name, source, h.Driver, r.Type)
		}
	}
	live := liveCapable(h, r.Type)
	switch {
	case asked == api.MigrateLive && !live && r.Type == api.TypeContainer:
		return "", errs.Invalid("mode", "a container cannot migrate live from host %s (driver %s): that needs checkpoint/restore (CRIU), which does not work on these hosts; migrate it cold (it stops, moves with its files, starts again)", source, driverOf(h))
	case asked == api.MigrateLive && !live:
		return "", errs.Invalid("mode", "host %s's driver (%s) cannot migrate %s instances live; migrate it cold", source, driverOf(h), r.Type)
	case asked == api.MigrateLive && r.State != api.StateRunning:
		return "", errs.Invalid("mode", "instance %q is %s: only a RUNNING instance migrates live; migrate it cold", r.Name, r.State)
	case asked == "" && live && r.State == api.StateRunning:
		return api.MigrateLive, nil
	case asked == "":
		return api.MigrateCold, nil
	}
	return asked, nil
}

func driverOf(h api.Host) string {
	if h.Driver == "" {
		return "unknown"
	}
	return h.Driver
}
