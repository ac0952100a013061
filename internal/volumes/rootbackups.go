package volumes

import (
	"context"
	"errors"
	"fmt"
	"sort"

	"github.com/kumocloud/kumo/api"
	"github.com/kumocloud/kumo/internal/errs"
	"github.com/kumocloud/kumo/internal/events"
	"github.com/kumocloud/kumo/internal/store"
)

// An instance's own root disk in an instance backup - a VM's disk that
// is not a volume (flattened: overlay and image in one qcow2), a
// container's writable layer (an ext4 filesystem of the flavor's disk
// size, over the image's filesystem) - is kept as a volume backup like any other - chunks of raw
// bytes, content-addressed, compressed, only the chunks the store lacks
// sent - marked root_of the instance, with the instance's id as its
// volume id. The instance's host sends it: the backup is in its agent's
// view (Roots) while it is being made and the instance is on one of the
// agent's hosts. A restore gives the new instance the backup's id
// (BootPlan.RootBackup, kept by compute and handed to the agent with the
// assignment); the host the new instance is placed on reads that backup
// (RootRestores says it may) and makes its disk of it in PROLOG.

// RootRestores is the optional part of Live that says whether an
// instance placed on one of these hosts has its root filesystem restored
// from this backup (its agent may then read the backup).
type RootRestores interface {
	RestoresRoot(ctx context.Context, hosts map[string]bool, backup string) bool
}

// rootView lists the root disk backups being made of instances on these
// hosts.
func rootView(ctx context.Context, hosts map[string]bool, live Live, byID map[string]api.VolumeBackup) ([]api.AgentRootBackup, error) {
	var out []api.AgentRootBackup
	for _, b := range byID {
		if b.RootOf == "" || b.Status != api.VolumeCreating {
			continue
		}
		id, _, host, err := live.LiveInstance(ctx, b.Project, b.RootOf)
		switch {
		case errors.Is(err, errs.ErrNotFound):
			continue
		case err != nil:
			return nil, err
		}
		if id == b.VolumeID && hosts[host] {
			out = append(out, api.AgentRootBackup{Backup: b.ID, InstanceID: id, Format: b.Format})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Backup < out[j].Backup })
	return out, nil
}

// failOrphanRoots ends in error the root disk backups still to be
// sent whose instance is gone (terminated, or another instance now has
// its name): no host will ever send them. The server's volume loop runs
// it, so a crash anywhere is picked up by its next pass.
func (svc *Service) failOrphanRoots(ctx context.Context, backups []store.Item[api.VolumeBackup]) error {
	var errOut error
	for _, it := range backups {
		b := it.Value
		if b.RootOf == "" || b.Status != api.VolumeCreating {
			continue
		}
		in, _, err := svc.inst.Get(ctx, b.Project, b.RootOf)
		switch {
		case errors.Is(err, errs.ErrNotFound) || err == nil && (in.ID != b.VolumeID || in.State == api.StateDone):
		case err != nil:
			errOut = err
			continue
		default:
			continue
		}
		b.Status, b.Error, b.UpdatedAt = api.VolumeError, fmt.Sprintf("instance %q went before its host sent its root disk", b.RootOf), svc.now().UTC()
		k := backupKey(b.Project, b.Name)
		if _, err := svc.s.Txn(ctx, []store.Cond{store.At(k, it.Revision)}, []store.Op{store.PutJSON(k, b),
			events.Op(ctx, "volume-backup", events.Updated, b.Project, backupURL(b.Project, b.Name), b)}); err != nil && !errors.Is(err, store.ErrConflict) {
			errOut = err
		}
	}
	return errOut
}
