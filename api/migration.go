package api

import "time"

// Migration modes.
const (
	MigrateLive = "live"
	MigrateCold = "cold"
)

// Migration phases: the server moves a migration from one to the next;
// the agents of its two hosts do the work each asks for.
const (
	// MigrationTransfer: the target's room is reserved; the source sends
	// the instance (live: QEMU pre-copy; cold: disks and saved state), the
	// target receives it. The instance is MIGRATE, still on its source.
	MigrationTransfer = "transfer"
	// MigrationCleanup: the instance is on its target now; the source
	// removes what it had of it.
	MigrationCleanup = "cleanup"
	// MigrationRollback: the migration failed or was cancelled; the
	// instance stays on (or returns to) its source, and the target
	// removes whatever it had received.
	MigrationRollback = "rollback"
)

// InstanceMigrate asks to move an instance to another host.
type InstanceMigrate struct {
	// Host is the target; empty lets the scheduler choose (every filter
	// applies, the source is never chosen).
	Host string `json:"host,omitempty"`
	// Mode is live or cold; empty: live for a RUNNING VM, cold otherwise.
	Mode string `json:"mode,omitempty"`
	// TimeoutSeconds bounds the transfer (default 600); past it the
	// migration is abandoned and the instance stays on its source.
	TimeoutSeconds int `json:"timeout_seconds,omitempty"`
	// Cancel aborts the migration in progress instead.
	Cancel bool `json:"cancel,omitempty"`
}

// Migration is an instance's move between hosts, as the instance shows
// it while it lasts (and its source or target still has work to do).
type Migration struct {
	ID        string    `json:"id"`
	Source    string    `json:"source"`
	Target    string    `json:"target"`
	Mode      string    `json:"mode"`
	Phase     string    `json:"phase"`
	From      State     `json:"from"`
	Operation string    `json:"operation,omitempty"`
	StartedAt time.Time `json:"started_at"`
	Deadline  time.Time `json:"deadline"`
	Cancel    bool      `json:"cancel,omitempty"`
	// Progress is 0-100, with the latest figures the source reported.
	Progress int             `json:"progress"`
	Stats    *MigrationStats `json:"stats,omitempty"`
	// Outcome says how it ended (set with the cleanup or rollback phase).
	Outcome string `json:"outcome,omitempty"`
}

// MigrationStats are a migration's figures (live: QEMU's query-migrate).
type MigrationStats struct {
	Status         string `json:"status,omitempty"`
	TotalBytes     int64  `json:"total_bytes,omitempty"`
	Transferred    int64  `json:"transferred_bytes,omitempty"`
	Remaining      int64  `json:"remaining_bytes,omitempty"`
	DirtyRate      int64  `json:"dirty_pages_rate,omitempty"`
	Rounds         int64  `json:"rounds,omitempty"`
	DiskBytes      int64  `json:"disk_bytes,omitempty"`
	DowntimeMS     int64  `json:"downtime_ms,omitempty"`
	TotalMS        int64  `json:"total_ms,omitempty"`
	CPUThrottlePct int64  `json:"cpu_throttle_percentage,omitempty"`
}

// AssignmentMigration is what the agents of a migration's two hosts see
// of it. Its ID names the migration's tunnel: a byte stream the server
// splices between those two agents only.
type AssignmentMigration struct {
	ID     string `json:"id"`
	Source string `json:"source"`
	Target string `json:"target"`
	Mode   string `json:"mode"`
	Phase  string `json:"phase"`
	From   State  `json:"from"`
	Cancel bool   `json:"cancel,omitempty"`
	// Volumes go with the instance: those of a local pool are copied to
	// the target (a live migration mirrors them), the others are on
	// storage both hosts mount.
	Volumes []MigrationVolume `json:"volumes,omitempty"`
}

// MigrationVolume is a volume attached to a migrating instance (its boot
// volume included, at Device vda).
type MigrationVolume struct {
	ID       string `json:"id"`
	Name     string `json:"name"`
	Device   string `json:"device,omitempty"`
	Path     string `json:"path,omitempty"`
	Format   string `json:"format"`
	SizeGiB  int64  `json:"size_gib"`
	PoolType string `json:"pool_type"`
	PoolPath string `json:"pool_path,omitempty"`
	// Snapshots are the ids of a local volume's snapshots (kept beside it
	// on its host): a cold move carries them with it; a live one does not
	// yet, and is refused while there are any.
	Snapshots []string `json:"snapshots,omitempty"`
}

// Migration report events.
const (
	MigrationProgress = "progress" // source: figures so far
	MigrationSent     = "sent"     // source: everything sent (live: QEMU completed)
	MigrationReceived = "received" // target: it has the instance (live: running there)
	MigrationFailed   = "failed"   // either: it cannot go on (Reason)
	MigrationCleaned  = "cleaned"  // the side the phase asked has cleaned up
)

// MigrationReport is an agent telling how a migration goes.
type MigrationReport struct {
	Instance  string          `json:"instance"`
	Migration string          `json:"migration"`
	Host      string          `json:"host"`
	Event     string          `json:"event"`
	Progress  int             `json:"progress,omitempty"`
	Reason    string          `json:"reason,omitempty"`
	Stats     *MigrationStats `json:"stats,omitempty"`
}

// HostEvacuate empties a host: it is disabled, and every instance on it
// (or whose home it is) migrates elsewhere.
type HostEvacuate struct {
	// Concurrency is how many migrations run at once (default 2).
	Concurrency int  `json:"concurrency,omitempty"`
	DryRun      bool `json:"dry_run,omitempty"`
}

// EvacuationPlan is what an evacuation does (or would do).
type EvacuationPlan struct {
	Host  string           `json:"host"`
	Moves []EvacuationMove `json:"moves"`
	// Operation runs it (empty for a dry run).
	Operation string `json:"operation,omitempty"`
}

// EvacuationMove is one instance's move: Target empty when none can take
// it (Reason says why).
type EvacuationMove struct {
	Project  string `json:"project"`
	Instance string `json:"instance"`
	Target   string `json:"target,omitempty"`
	Mode     string `json:"mode,omitempty"`
	Reason   string `json:"reason,omitempty"`
}
