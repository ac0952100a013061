package agent

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/kumocloud/kumo/api"
	"github.com/kumocloud/kumo/internal/driver"
	"github.com/kumocloud/kumo/internal/volumes/pool"
)

// An instance's own root disk in an instance backup (a VM's disk, a
// container's root filesystem; internal/volumes/rootbackups.go): the
// volume job copies it through the driver (consistent: a VM paused, a
// container's writable layer frozen while copied) and sends it as any
// volume backup, by chunk hashes; an instance restored from it has its
// disk made of the backup in PROLOG, before the driver prepares it.

// rootBackups makes and sends the root disk backups asked for.
func (j *volumeJob) rootBackups(ctx context.Context, roots []api.AgentRootBackup) {
	rc, ok := j.d.(driver.RootDiskCopier)
	for _, r := range roots {
		if pool.CheckID(r.Backup) != nil {
			continue
		}
		j.bmu.Lock()
		busy := j.inflight[r.Backup]
		j.bmu.Unlock()
		if busy {
			continue
		}
		if !ok {
			j.bk.BackupManifest(ctx, r.Backup, api.BackupManifest{Error: driver.ErrNoRootCopy.Error()})
			continue
		}
		cp := filepath.Join(j.dir, "tmp", "backup-"+r.Backup+".root")
		if err := os.MkdirAll(filepath.Dir(cp), 0o700); err != nil {
			continue
		}
		format, err := rc.CopyRootDisk(ctx, r.InstanceID, cp)
		if err == nil && format != r.Format {
			err = errors.New("the driver copied a " + format + " root filesystem, not " + r.Format)
		}
		if err != nil {
			os.Remove(cp)
			if ctx.Err() == nil {
				j.bk.BackupManifest(ctx, r.Backup, api.BackupManifest{Error: "copying the root disk: " + err.Error()})
			}
			continue
		}
		j.sendInBackground(ctx, r.Backup, cp, format, r.InstanceID, nil)
	}
}

// restoreRoot makes the file an instance's root disk is restored from (its assignment's RootBackup); the caller removes it once the
// driver prepared the instance.
func (j *volumeJob) restoreRoot(ctx context.Context, as api.Assignment) (string, error) {
	if err := pool.CheckID(as.RootBackup); err != nil {
		return "", err
	}
	if err := pool.CheckID(as.ID); err != nil {
		return "", err
	}
	f := filepath.Join(j.dir, "tmp", "root-"+as.ID+".img")
	// The root disk is grown to the flavor afterwards; its backup is
	// bound as any manifest is.
	if err := j.restoreRaw(ctx, as.RootBackup, f, 0); err != nil {
		os.Remove(f)
		return "", err
	}
	return f, nil
}

// prologSpec is the spec PROLOG prepares: with the file of its root disk
// when it is restored from a backup (done removes it).
func (in *instances) prologSpec(ctx context.Context, as api.Assignment) (driver.Spec, func(), error) {
	spec := in.spec(as)
	if as.RootBackup == "" || in.d.Has(as.ID) {
		// No backup, or prepared already (a restart of a STOPPED
		// container, a PROLOG done again): its own root disk.
		return spec, func() {}, nil
	}
	if in.roots == nil {
		return spec, nil, errors.New("this agent cannot restore a root disk")
	}
	f, err := in.roots.restoreRoot(ctx, as)
	if err != nil {
		return spec, nil, fmt.Errorf("restoring its root disk from backup %s: %w", as.RootBackup, err)
	}
	spec.RootDisk = f
	return spec, func() { os.Remove(f) }, nil
}
