package api

// Instance backups (what Proxmox's vzdump makes): an instance's definition
// and a backup of every volume attached to it, made together and restored
// together as a new instance.

// InstanceBackupNameMax bounds an instance backup's name: its volume
// backups are named after it (NAME-vdb, NAME-vol1).
const InstanceBackupNameMax = 56

// InstanceDefinition is what an instance backup keeps of the instance:
// what its create asked for.
type InstanceDefinition struct {
	Type         string            `json:"type"`
	Flavor       string            `json:"flavor"`
	Image        string            `json:"image,omitempty"`
	ImageSHA256  string            `json:"image_sha256,omitempty"`
	Requirements string            `json:"requirements,omitempty"`
	Rank         string            `json:"rank,omitempty"`
	ServerGroup  string            `json:"server_group,omitempty"`
	UserData     string            `json:"user_data,omitempty"`
	Labels       map[string]string `json:"labels,omitempty"`
	// Networks are the networks of its ports, in order (eth0, eth1...);
	// SecurityGroups filter them. A restore makes new ports (new
	// addresses) on the same networks.
	Networks       []string `json:"networks,omitempty"`
	SecurityGroups []string `json:"security_groups,omitempty"`
	HA             bool     `json:"ha,omitempty"`
}

// InstanceBackupVolume is one volume of an instance backup: where it was
// attached and the volume backup of it.
type InstanceBackupVolume struct {
	Volume   string `json:"volume"`
	VolumeID string `json:"volume_id"`
	// Device (VMs: vda is the root disk) or Path (containers).
	Device string `json:"device,omitempty"`
	Path   string `json:"path,omitempty"`
	// Backup is the volume backup (listed with the project's volume
	// backups, marked with this instance backup).
	Backup  string `json:"backup"`
	SizeGiB int64  `json:"size_gib"`
	Format  string `json:"format"`
	Pool    string `json:"pool"`
	// DeleteOnTerminate: a root volume made with its instance (restored
	// as such).
	DeleteOnTerminate bool `json:"delete_on_terminate,omitempty"`
	// Status is its volume backup's: creating, available or error.
	Status string `json:"status"`
}

// InstanceBackup is an instance's definition and its volumes' backups.
type InstanceBackup struct {
	Meta
	Project    string                 `json:"project"`
	Instance   string                 `json:"instance"`
	InstanceID string                 `json:"instance_id"`
	Definition InstanceDefinition     `json:"definition"`
	Volumes    []InstanceBackupVolume `json:"volumes"`
	// RootImage, in a backup made before root disks went to the backup
	// store, is the private image (BACKUP-root, of id RootImageID)
	// holding a copy of a VM's own root disk, made by the instance
	// snapshot operation RootOperation; a restore starts from it.
	RootImage     string `json:"root_image,omitempty"`
	RootImageID   string `json:"root_image_id,omitempty"`
	RootOperation string `json:"root_operation,omitempty"`
	// RootBackup is the volume backup (BACKUP-root, marked root_of the
	// instance) holding its own root disk: a VM's disk that is not a
	// volume (flattened), or a container's root filesystem (its writable
	// layer, restored under the image's filesystem).
	RootBackup string `json:"root_backup,omitempty"`
	// EphemeralRoot: the instance's root disk is not in the backup (a
	// VM or container backed up with skip_root_disk): a restored
	// instance starts from its image again.
	EphemeralRoot bool `json:"ephemeral_root,omitempty"`
	// Status: creating until every volume backup is made, then available;
	// error if one failed (Error says which and why).
	Status string `json:"status"`
	Error  string `json:"error,omitempty"`
	// SizeGiB, StoredBytes and TotalBytes add up its volume backups'.
	SizeGiB     int64 `json:"size_gib"`
	StoredBytes int64 `json:"stored_bytes"`
	TotalBytes  int64 `json:"total_bytes"`
}

// InstanceBackupsPost backs an instance up.
type InstanceBackupsPost struct {
	Name string `json:"name"`
	// SkipRootDisk: the instance's own root disk (a VM's disk that is
	// not a volume, a container's root filesystem) is not kept.
	SkipRootDisk bool `json:"skip_root_disk,omitempty"`
}

// RootDiskSuffix names the image holding a VM's root disk in an instance
// backup: BACKUP-root.
const RootDiskSuffix = "-root"

// InstanceRestore makes a new instance from an instance backup: Name
// (default: the instance's name) with new volumes restored from the
// backup, made on the host the instance is placed on.
type InstanceRestore struct {
	Name string `json:"name,omitempty"`
}
