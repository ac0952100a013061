package volumes

import (
	"time"

	"github.com/kumocloud/kumo/api"
	"github.com/kumocloud/kumo/internal/metering"
	"github.com/kumocloud/kumo/internal/store"
)

// What volumes, snapshots and backups count in their project's quota,
// and the metering ledger's points (metering bills GiB-hours from them):
// each is written in the transaction that makes the change it records.

// snapCounts is what snapshots count: their number, and their size in
// volume_gib (a snapshot takes room as its volume does).
func snapCounts(n, gib int64) api.ResourceCounts {
	return api.ResourceCounts{Snapshots: n, VolumeGiB: gib}
}

// backupCounts is what backups count: their number and the size of the
// volumes they were made of.
func backupCounts(n, gib int64) api.ResourceCounts {
	return api.ResourceCounts{Backups: n, BackupGiB: gib}
}

// meterVolume records a volume's provisioned size (0: gone) from at on.
func meterVolume(r *record, gib int64, at time.Time) store.Op {
	return metering.StorageOp(metering.KindVolume, r.Project, r.ID, r.Name, gib<<10, at)
}

// meterSnapshot records a snapshot's size (0: gone) from at on.
func meterSnapshot(s *api.VolumeSnapshot, gib int64, at time.Time) store.Op {
	return metering.StorageOp(metering.KindSnapshot, s.Project, s.ID, s.Volume+"/"+s.Name, gib<<10, at)
}

// meterBackup records what a backup stores (0: gone) from at on.
func meterBackup(b *api.VolumeBackup, bytes int64, at time.Time) store.Op {
	return metering.StorageOp(metering.KindBackup, b.Project, b.ID, b.Name, metering.MiBOfBytes(bytes), at)
}
