package api

// Volume formats.
const (
	// VolumeQcow2 is a block volume for VMs: a sparse qcow2 file.
	VolumeQcow2 = "qcow2"
	// VolumeExt4 is a filesystem volume: a sparse raw file holding an ext4
	// filesystem, loop-mounted into containers (VMs see it as a raw disk).
	VolumeExt4 = "ext4"
)

// Volume statuses.
const (
	VolumeCreating  = "creating"  // its host has not made it yet
	VolumeAvailable = "available" // made, attached to nothing
	VolumeInUse     = "in-use"    // attached to an instance
	VolumeDeleting  = "deleting"  // its host removes it; the record goes then
	VolumeReverting = "reverting" // its host brings it back to a snapshot
	VolumeMoving    = "moving"    // its bytes are copied to another host (MovingTo)
	VolumeError     = "error"     // its host could not make it (error says why)
)

// Storage pool types.
const (
	PoolLocal     = "local"      // a directory under each agent's data dir: volumes live on one host
	PoolSharedDir = "shared-dir" // a directory every host mounts (NFS, CephFS): volumes attach anywhere
)

// BootDevice is the attachment device of a VM's boot volume: its root
// disk (vdb..vdq are the hot-pluggable ones).
const BootDevice = "vda"

// MaxVolumeGiB bounds a volume's size.
const MaxVolumeGiB = 16 << 10

// Volume is a persistent disk: it outlives the instances it is attached to.
type Volume struct {
	Meta
	Project string `json:"project"`
	SizeGiB int64  `json:"size_gib"`
	Format  string `json:"format"`
	Pool    string `json:"pool"`
	// Host is the volume's home: where its file is (a volume in a local
	// pool is attached only to instances there).
	Host string `json:"host,omitempty"`
	// Image is the image it was made from ("owner/name"), if any.
	Image       string `json:"image,omitempty"`
	ImageSHA256 string `json:"image_sha256,omitempty"`
	Status      string `json:"status"`
	Error       string `json:"error,omitempty"`
	// HostSizeGiB is the size its host last made it (below SizeGiB while
	// a resize is under way).
	HostSizeGiB int64 `json:"host_size_gib"`
	// Attachment is the instance it is attached to, if any.
	Attachment *VolumeAttachment `json:"attachment,omitempty"`
	// BackupEvery (a Go duration, "24h") and BackupKeep are its backup
	// schedule: a backup that often, the newest BackupKeep kept.
	BackupEvery string `json:"backup_every,omitempty"`
	BackupKeep  int    `json:"backup_keep,omitempty"`
	// MovingTo is the host a move copies it to (status moving).
	MovingTo string `json:"moving_to,omitempty"`
	// DeleteOnTerminate: a root volume made with its instance, deleted
	// when the instance is terminated (instance create without
	// keep_root_volume).
	DeleteOnTerminate bool `json:"delete_on_terminate,omitempty"`
}

// VolumeMove moves a detached volume of a local pool to another host:
// Host (cloud admin) or the host of the instance Near.
type VolumeMove struct {
	Host string `json:"host,omitempty"`
	Near string `json:"near,omitempty"`
}

// VolumeAttachment is a volume's place in an instance.
type VolumeAttachment struct {
	Instance   string `json:"instance"`
	InstanceID string `json:"instance_id"`
	// Device is the VM's disk name (vdb...); Path where a container sees it.
	Device string `json:"device,omitempty"`
	Path   string `json:"path,omitempty"`
	// Attached says the instance's host has attached it (false: on its
	// way, or waiting for the instance to run there).
	Attached bool `json:"attached"`
}

// VolumesPost creates a volume.
type VolumesPost struct {
	Name    string `json:"name"`
	SizeGiB int64  `json:"size_gib"`
	// Format is qcow2 (default) or ext4 (a filesystem, for containers).
	Format string `json:"format,omitempty"`
	// Image (a vm-disk image) fills a qcow2 volume.
	Image string `json:"image,omitempty"`
	// Pool is a storage pool (default local).
	Pool string `json:"pool,omitempty"`
	// Host places the volume (cloud admin); Near places it on the host of
	// this instance of the project. Neither: the server picks a host.
	Host   string            `json:"host,omitempty"`
	Near   string            `json:"near,omitempty"`
	Labels map[string]string `json:"labels,omitempty"`
	// Snapshot ("volume/snapshot") makes the volume a copy of a snapshot,
	// on the snapshot's host.
	Snapshot string `json:"snapshot,omitempty"`
	// Backup restores a backup of the project into the new volume (on any
	// host).
	Backup string `json:"backup,omitempty"`
}

// BackupChunk is the size of a backup's chunks.
const BackupChunk = 4 << 20

// VolumeBackup is a volume's content kept by the server.
type VolumeBackup struct {
	Meta
	Project  string `json:"project"`
	Volume   string `json:"volume"`
	VolumeID string `json:"volume_id"`
	SizeGiB  int64  `json:"size_gib"`
	Format   string `json:"format"`
	// Status: creating, available or error.
	Status string `json:"status"`
	Error  string `json:"error,omitempty"`
	// StoredBytes is what this backup added to the store (compressed
	// chunks no earlier backup had); TotalBytes what all its chunks take.
	StoredBytes int64 `json:"stored_bytes"`
	TotalBytes  int64 `json:"total_bytes"`
	// Chunks is the manifest (left out of API answers).
	Chunks []string `json:"chunks,omitempty"`
	// InstanceBackup names the instance backup it belongs to, if any: it
	// goes with that one (and is not deleted alone).
	InstanceBackup string `json:"instance_backup,omitempty"`
	// RootOf names the instance whose own root disk it holds (a VM's
	// disk flattened, qcow2; a container's writable layer, ext4; VolumeID
	// is then the instance's id and Volume is empty), not a volume's.
	RootOf string `json:"root_of,omitempty"`
}

// VolumeBackupsPost makes a backup. Every backup is incremental (only
// chunks the store lacks are sent); Incremental is accepted for clarity.
type VolumeBackupsPost struct {
	Name        string `json:"name"`
	Incremental bool   `json:"incremental,omitempty"`
}

// BackupManifest is a backup's chunk list (agents), or a page of it: an
// agent sends a long one in pages of at most BackupManifestPage chunks,
// each at its Offset (the chunk's index), all but the last with Part set;
// the last says Count, the number of chunks in all (0: Offset plus its
// own). A restoring agent reads it in pages the same way (Count says how
// many in all).
type BackupManifest struct {
	Chunks []string `json:"chunks,omitempty"`
	Error  string   `json:"error,omitempty"`
	Offset int64    `json:"offset,omitempty"`
	Count  int64    `json:"count,omitempty"`
	Part   bool     `json:"part,omitempty"`
}

// BackupManifestPage is the most chunks a page of a manifest holds.
const BackupManifestPage = 8192

// BackupMissing lists the chunks the server still needs (at most
// BackupManifestPage at a time; More: there are others after them).
type BackupMissing struct {
	Missing []string `json:"missing"`
	More    bool     `json:"more,omitempty"`
}

// VolumeSnapshot is a volume's content at a moment, kept beside it.
type VolumeSnapshot struct {
	Meta
	Project  string `json:"project"`
	Volume   string `json:"volume"`
	VolumeID string `json:"volume_id"`
	SizeGiB  int64  `json:"size_gib"`
	// Status: creating, available, deleting or error.
	Status string `json:"status"`
	Error  string `json:"error,omitempty"`
}

// VolumeSnapshotsPost takes a snapshot.
type VolumeSnapshotsPost struct {
	Name string `json:"name"`
}

// VolumeRevert brings a detached volume back to a snapshot.
type VolumeRevert struct {
	Snapshot string `json:"snapshot"`
}

// VolumePatch changes a volume: its size (grow only), its backup
// schedule (backup_every "0" clears it).
type VolumePatch struct {
	SizeGiB     *int64  `json:"size_gib,omitempty"`
	BackupEvery *string `json:"backup_every,omitempty"`
	BackupKeep  *int    `json:"backup_keep,omitempty"`
}

// VolumeAttach attaches a volume to an instance.
type VolumeAttach struct {
	Instance string `json:"instance"`
	Device   string `json:"device,omitempty"`
	Path     string `json:"path,omitempty"`
}

// StoragePool is where volumes are kept.
type StoragePool struct {
	Name string `json:"name"`
	Type string `json:"type"`
	// Path is the shared directory (cloud admins only see it).
	Path string `json:"path,omitempty"`
	// Volumes and SizeGiB are what the pool holds.
	Volumes int64 `json:"volumes"`
	SizeGiB int64 `json:"size_gib"`
}

// StoragePoolsPost adds a shared-dir pool (cloud admin).
type StoragePoolsPost struct {
	Name string `json:"name"`
	Type string `json:"type"`
	Path string `json:"path"`
}

// AgentVolume is a volume as its host's agent needs it.
type AgentVolume struct {
	ID          string `json:"id"`
	Project     string `json:"project"`
	Name        string `json:"name"`
	Host        string `json:"host"`
	SizeGiB     int64  `json:"size_gib"`
	Format      string `json:"format"`
	PoolType    string `json:"pool_type"`
	PoolPath    string `json:"pool_path,omitempty"`
	ImageSHA256 string `json:"image_sha256,omitempty"`
	ImageFormat string `json:"image_format,omitempty"`
	// Delete: remove its file and report it gone.
	Delete bool `json:"delete,omitempty"`
	// FromSnapshot: a new volume is made as a copy of this snapshot (of
	// the volume FromVolume, in the same pool).
	FromVolume   string `json:"from_volume,omitempty"`
	FromSnapshot string `json:"from_snapshot,omitempty"`
	// Snapshots are the volume's snapshots: to make, keep or delete.
	Snapshots []AgentSnapshot `json:"snapshots,omitempty"`
	// Backups are backups to make and send; FromBackup restores one.
	Backups    []string `json:"backups,omitempty"`
	FromBackup string   `json:"from_backup,omitempty"`
	// Revert asks for the volume's content to become the snapshot's; ID
	// names the request (reported back once done).
	Revert *AgentRevert `json:"revert,omitempty"`
	// Attach is where it should be attached now (nil: nowhere).
	Attach *AgentVolumeAttach `json:"attach,omitempty"`
	// Incoming: a migration to this host (live or cold) copies the volume here
	// (the migration makes its file): keep the file, do nothing else.
	Incoming bool `json:"incoming,omitempty"`
}

// AgentSnapshot is a snapshot as its volume's agent sees it.
type AgentSnapshot struct {
	ID     string `json:"id"`
	Delete bool   `json:"delete,omitempty"`
}

// AgentRevert is a revert to carry out.
type AgentRevert struct {
	ID       string `json:"id"`
	Snapshot string `json:"snapshot"`
}

// AgentVolumeAttach is an attachment as an agent carries it out.
type AgentVolumeAttach struct {
	InstanceID string `json:"instance_id"`
	Type       string `json:"type"`
	Device     string `json:"device,omitempty"`
	Path       string `json:"path,omitempty"`
}

// AgentVolumes is the complete list of the volumes of an agent's hosts.
type AgentVolumes struct {
	Items []AgentVolume `json:"items"`
	// Roots are backups of the root filesystems of instances on the
	// agent's hosts, to make and send as volume backups are.
	Roots []AgentRootBackup `json:"roots,omitempty"`
}

// AgentRootBackup is a backup of an instance's own root disk (a VM's
// disk, a container's writable layer) to make and send.
type AgentRootBackup struct {
	Backup     string `json:"backup"`
	InstanceID string `json:"instance_id"`
	Format     string `json:"format"`
}

// VolumeReport is what an agent says of one volume.
type VolumeReport struct {
	ID string `json:"id"`
	// Status: ready (made, HostSizeGiB big), error, or gone (deleted).
	Status  string `json:"status"`
	SizeGiB int64  `json:"size_gib,omitempty"`
	Error   string `json:"error,omitempty"`
	// AttachedTo is the instance it is attached to on the host ("" none).
	AttachedTo string `json:"attached_to,omitempty"`
	// Snapshots say what is of each snapshot: ready, error or gone.
	Snapshots []SnapshotReport `json:"snapshots,omitempty"`
	// Reverted names the revert request carried out.
	Reverted string `json:"reverted,omitempty"`
}

// SnapshotReport is what an agent says of one snapshot.
type SnapshotReport struct {
	ID     string `json:"id"`
	Status string `json:"status"`
	Error  string `json:"error,omitempty"`
}

// AgentVolumeReport is an agent's batch of volume reports.
type AgentVolumeReport struct {
	Volumes []VolumeReport `json:"volumes"`
}
