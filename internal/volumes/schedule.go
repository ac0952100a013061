package volumes

import (
	"context"
	"errors"
	"log/slog"
	"sort"
	"strings"
	"time"

	"github.com/kumocloud/kumo/api"
	"github.com/kumocloud/kumo/internal/errs"
	"github.com/kumocloud/kumo/internal/store"
)

// Backup schedules: a volume may ask for a backup every so often, keeping
// the newest few. A level-triggered loop in the server looks at every
// volume with a schedule: when its newest scheduled backup is older than
// the period (and none is being made), it starts one; scheduled backups
// past the number to keep go, oldest first, and so do failed ones past the
// newest keepFailed (kept so the user can read why), or a volume whose
// backups keep failing would fill the backup quota with failures until
// no backup could be made. A crash at any point is
// picked up by the next pass. Scheduled backups are named auto-<time>.

const autoPrefix = "auto-"

// keepFailed is how many failed scheduled backups of a volume are kept.
const keepFailed = 2

// MinBackupEvery is the shortest schedule.
const MinBackupEvery = time.Minute

// SetSchedule sets (every > 0) or clears (every == 0) a volume's backup
// schedule.
func (svc *Service) SetSchedule(ctx context.Context, project, name string, every time.Duration, keep int) (api.Volume, error) {
	if every != 0 && every < MinBackupEvery {
		return api.Volume{}, errs.Invalid("backup_every", "a schedule is at least every %s", MinBackupEvery)
	}
	if every != 0 && (keep < 1 || keep > 1000) {
		return api.Volume{}, errs.Invalid("backup_keep", "keep 1 to 1000 backups, not %d", keep)
	}
	return svc.update(ctx, project, name, func(r *record) error {
		r.BackupEvery, r.BackupKeep = every.String(), keep
		if every == 0 {
			r.BackupEvery, r.BackupKeep = "", 0
		}
		return nil
	})
}

// RunSchedules runs the schedule loop until ctx ends.
func (svc *Service) RunSchedules(ctx context.Context, every time.Duration, log *slog.Logger) {
	for {
		if err := svc.schedulePass(ctx); err != nil && ctx.Err() == nil {
			log.Warn("volume backup schedules", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(every):
		}
	}
}

// schedulePass starts the backups that are due and drops those past
// keeping.
func (svc *Service) schedulePass(ctx context.Context) error {
	vols, err := store.ListJSON[record](ctx, svc.s, prefix)
	if err != nil {
		return err
	}
	backups, err := store.ListJSON[api.VolumeBackup](ctx, svc.s, backupPrefix)
	if err != nil {
		return err
	}
	byVol := map[string][]api.VolumeBackup{}
	for _, it := range backups {
		if strings.HasPrefix(it.Value.Name, autoPrefix) && it.Value.InstanceBackup == "" {
			byVol[it.Value.VolumeID] = append(byVol[it.Value.VolumeID], it.Value)
		}
	}
	now := svc.now().UTC()
	errOut := errors.Join(svc.sweepUnhomed(ctx, vols), svc.failOrphanRoots(ctx, backups))
	for _, it := range vols {
		r := it.Value
		every, err := time.ParseDuration(r.BackupEvery)
		if r.BackupEvery == "" || err != nil || every <= 0 {
			continue
		}
		auto := byVol[r.ID]
		sort.Slice(auto, func(i, j int) bool { return auto[i].CreatedAt.After(auto[j].CreatedAt) })
		making := false
		for _, b := range auto {
			making = making || b.Status == api.VolumeCreating
		}
		if !making && (len(auto) == 0 || now.Sub(auto[0].CreatedAt) >= every) &&
			(r.Status == api.VolumeAvailable || r.Status == api.VolumeInUse) {
			name := autoPrefix + now.Format("20060102-150405")
			if _, err := svc.CreateBackup(ctx, r.Project, r.Name, api.VolumeBackupsPost{Name: name}); err != nil && !errors.Is(err, errs.ErrConflict) {
				errOut = err
			}
		}
		kept, failed := 0, 0
		for _, b := range auto {
			var past bool
			switch b.Status {
			case api.VolumeAvailable:
				kept++
				past = kept > r.BackupKeep
			case api.VolumeError:
				failed++
				past = failed > keepFailed
			}
			if past {
				if err := svc.DeleteBackup(ctx, b.Project, b.Name); err != nil && !errors.Is(err, errs.ErrNotFound) {
					errOut = err
				}
			}
		}
	}
	return errOut
}
