package api

import "time"

// Instance types.
const (
	TypeVM        = "vm"
	TypeContainer = "container"
)

// Size is what an instance takes from a host.
type Size struct {
	VCPUs     int64 `json:"vcpus"`
	MemoryMiB int64 `json:"memory_mib"`
	DiskGiB   int64 `json:"disk_gib"`
	// SwapMiB is a swap disk for VMs (swap allowed beyond memory for
	// containers); it is not scheduled against host capacity.
	SwapMiB int64 `json:"swap_mib,omitempty"`
}

// Instance is a virtual machine or a system container.
type Instance struct {
	Meta
	Project string `json:"project"`
	Type    string `json:"type"`
	Flavor  string `json:"flavor"`
	Size    Size   `json:"size"`
	Image   string `json:"image"`
	// ImageSHA256 is the image's content, fixed at create (empty when the
	// image is not in the image service: only the sim driver runs those).
	ImageSHA256  string `json:"image_sha256,omitempty"`
	Requirements string `json:"requirements,omitempty"`
	Rank         string `json:"rank,omitempty"`
	ServerGroup  string `json:"server_group,omitempty"`
	UserData     string `json:"user_data,omitempty"`
	// State is where the instance is in its lifecycle; Reason says why it
	// is there (e.g. why a PENDING instance fits nowhere).
	State  State  `json:"state"`
	Reason string `json:"reason,omitempty"`
	// Unplaceable: the instance is PENDING and no host can take it now
	// (Reason says why; explain says it per host). It stays PENDING and
	// is placed as soon as a host can.
	Unplaceable bool `json:"unplaceable,omitempty"`
	// Action is the user action being carried out, if any.
	Action Action `json:"action,omitempty"`
	// Host is where the instance runs (and holds resources) now.
	Host string `json:"host,omitempty"`
	// Home is the host that holds the instance's state and disks once it
	// was placed: a STOPPED instance keeps it and starts there again, or
	// nowhere (it moves only by migration).
	Home string `json:"home,omitempty"`
	// Actions lists what may be done in this state.
	Actions []Action `json:"actions"`
	// Placements are the instance's stays on hosts, for metering and audit.
	Placements []Placement `json:"placements,omitempty"`
	// NICs are the instance's ports, one per network it was created on.
	NICs []InstanceNIC `json:"nics,omitempty"`
	// Usage is the latest its host reported (kept in memory, not stored).
	Usage *InstanceUsage `json:"usage,omitempty"`
	// Ready: the guest said it is up (a readiness line on its console:
	// kumo's tiny images, cloud-init's final message) - separate from
	// RUNNING, which says the VM or container runs. ReadyReason says why
	// it is not when it should be by now. Reported with heartbeats.
	Ready       bool   `json:"ready"`
	ReadyReason string `json:"ready_reason,omitempty"`
	// HA: when its host is lost for longer than the server's fence
	// timeout, the instance is recreated on another host from its image
	// (docs/ha.md). Asked at create, or implied by its flavor.
	HA bool `json:"ha,omitempty"`
	// Migration is the move in progress (or whose cleanup is), if any.
	Migration *Migration `json:"migration,omitempty"`
	// BootVolume is the volume the VM boots from (its root disk), if any.
	BootVolume string `json:"boot_volume,omitempty"`
}

// Placement is one stay of an instance on a host; End is zero while it lasts.
type Placement struct {
	Host  string    `json:"host"`
	Start time.Time `json:"start"`
	End   time.Time `json:"end,omitzero"`
}

// InstancesPost creates an instance.
type InstancesPost struct {
	Name         string            `json:"name"`
	Type         string            `json:"type"`
	Flavor       string            `json:"flavor"`
	Image        string            `json:"image"`
	Requirements string            `json:"requirements,omitempty"`
	Rank         string            `json:"rank,omitempty"`
	ServerGroup  string            `json:"server_group,omitempty"`
	UserData     string            `json:"user_data,omitempty"`
	Labels       map[string]string `json:"labels,omitempty"`
	// Networks to attach, in order (eth0, eth1...): names of the
	// project's networks or "owner/name" of shared ones.
	Networks []string `json:"networks,omitempty"`
	// SecurityGroups apply to every port of the instance.
	SecurityGroups []string `json:"security_groups,omitempty"`
	// HA asks for high availability (docs/ha.md); a flavor may imply it.
	HA bool `json:"ha,omitempty"`
	// BootVolume (VMs): the VM's root disk is this volume of the project
	// (available, qcow2): it boots from it, and the volume stays when the
	// instance goes. Image is then optional: a vm-kernel image's kernel
	// boots it, else the volume's own image or its boot loader.
	BootVolume string `json:"boot_volume,omitempty"`
	// RootVolumeSizeGiB (VMs): the root disk is a new persistent volume of
	// this size made from the image (named INSTANCE-root), deleted with
	// the instance unless KeepRootVolume.
	RootVolumeSizeGiB int64 `json:"root_volume_size_gib,omitempty"`
	KeepRootVolume    bool  `json:"keep_root_volume,omitempty"`
}

// InstanceActionPost asks for a lifecycle action: stop, start, suspend,
// resume, poweroff, reboot, hold, release or terminate.
type InstanceActionPost struct {
	Action Action `json:"action"`
}

// HistoryRecord is one state transition.
type HistoryRecord struct {
	Seq    int       `json:"seq"`
	Time   time.Time `json:"time"`
	From   State     `json:"from"`
	To     State     `json:"to"`
	Host   string    `json:"host,omitempty"`
	Actor  string    `json:"actor"`
	Reason string    `json:"reason,omitempty"`
}

// ExplainHost is one host's verdict for an instance.
type ExplainHost struct {
	Host     string  `json:"host"`
	Feasible bool    `json:"feasible"`
	Reason   string  `json:"reason,omitempty"`
	Score    float64 `json:"score"`
}

// Explain says, for every host, why an instance can or cannot go there.
type Explain struct {
	Instance string        `json:"instance"`
	Policy   string        `json:"policy"`
	Summary  string        `json:"summary"`
	Hosts    []ExplainHost `json:"hosts"`
}

// Host states.
const (
	HostOnline  = "ONLINE"
	HostOffline = "OFFLINE"
)

// Ratios are a host's allocation (overcommit) ratios.
type Ratios struct {
	CPU    float64 `json:"cpu"`
	Memory float64 `json:"memory"`
	Disk   float64 `json:"disk"`
}

// Host is a compute host.
type Host struct {
	Meta
	Address    string            `json:"address,omitempty"`
	Driver     string            `json:"driver"`
	Kinds      []string          `json:"kinds"`
	Capacity   Size              `json:"capacity"`
	Ratios     Ratios            `json:"ratios"`
	Attributes map[string]string `json:"attributes,omitempty"`
	State      string            `json:"state"`
	Enabled    bool              `json:"enabled"`
	Draining   bool              `json:"draining"`
	Allocated  Size              `json:"allocated"`
	Instances  int               `json:"instances"`
	Agent      string            `json:"agent"`
	// LastSeen is the last heartbeat this server received.
	LastSeen time.Time `json:"last_seen,omitzero"`
	// ReconciledAt is when its agent last compared what its driver runs
	// with a complete assignment list (and stopped what nobody assigns),
	// and NetworkSyncedAt when it last made the host's datapath match the
	// server's view, as its heartbeats say.
	ReconciledAt    time.Time `json:"reconciled_at,omitzero"`
	NetworkSyncedAt time.Time `json:"network_synced_at,omitzero"`
	// FenceGraceSeconds is what its agent registered (HostSpec).
	FenceGraceSeconds int64 `json:"fence_grace_seconds,omitempty"`
	// Capabilities is what its agent registered (HostSpec); absent for
	// hosts of agents that do not say.
	Capabilities map[string][]string `json:"capabilities,omitempty"`
}

// HostPatch changes what an admin controls of a host.
type HostPatch struct {
	Enabled  *bool             `json:"enabled,omitempty"`
	Draining *bool             `json:"draining,omitempty"`
	Labels   map[string]string `json:"labels,omitempty"`
	Ratios   *Ratios           `json:"ratios,omitempty"`
}

// JoinTokensPost makes a join token (cloud admin).
type JoinTokensPost struct {
	TTLSeconds  int64  `json:"ttl_seconds,omitempty"`
	Description string `json:"description,omitempty"`
}

// JoinToken lets agents join. Token ("kumo-join.<ca fingerprint>.<id>.<secret>")
// is shown once.
type JoinToken struct {
	ID          string    `json:"id"`
	Description string    `json:"description,omitempty"`
	CreatedAt   time.Time `json:"created_at"`
	ExpiresAt   time.Time `json:"expires_at"`
	Token       string    `json:"token,omitempty"`
}

// HostSpec is what an agent says of a host it brings.
type HostSpec struct {
	Name       string            `json:"name"`
	Address    string            `json:"address,omitempty"`
	Kinds      []string          `json:"kinds"`
	Capacity   Size              `json:"capacity"`
	Attributes map[string]string `json:"attributes,omitempty"`
	// FenceGraceSeconds: the host's agent stops its HA instances itself
	// when it has not reached the server for this long (0: it does not
	// self-fence, and its HA instances are never recreated elsewhere).
	FenceGraceSeconds int64 `json:"fence_grace_seconds,omitempty"`
	// Capabilities are what the host's driver can do beyond the
	// lifecycle, per kind of instance it runs (CapExec ... CapLiveMigrate:
	// "exec", "logs", "console", "snapshot", "networks", "host-health",
	// "migrate", "live-migrate"). Absent: the agent does not say (the
	// server then assumes what the kind used to mean).
	Capabilities map[string][]string `json:"capabilities,omitempty"`
}

// The capabilities the server acts on (HostSpec.Capabilities).
const (
	CapMigrate     = "migrate"
	CapLiveMigrate = "live-migrate"
)

// AgentsPost is an agent joining with a join token. Hosts that already
// exist must be the joining agent's own: a host never passes to another
// agent (a cloud admin deletes it first).
type AgentsPost struct {
	JoinToken string     `json:"join_token"`
	Name      string     `json:"name"`
	Driver    string     `json:"driver"`
	Hosts     []HostSpec `json:"hosts"`
	// CredentialSecret, if given, is the secret part of the credential,
	// chosen by the agent (at least 32 hex digits) and kept before it
	// joins: a join retried with the same secret (its answer was lost) is
	// the same agent, never a second one. Without it the server picks one.
	CredentialSecret string `json:"credential_secret,omitempty"`
}

// Agent is a registered agent; Credential is returned once, at join.
type Agent struct {
	ID         string    `json:"id"`
	Name       string    `json:"name"`
	Driver     string    `json:"driver"`
	Hosts      []string  `json:"hosts"`
	CreatedAt  time.Time `json:"created_at"`
	Credential string    `json:"credential,omitempty"`
}

// AgentHostsPut re-registers an agent's hosts (on every agent start).
type AgentHostsPut struct {
	Hosts []HostSpec `json:"hosts"`
}

// Assignment is an instance as its agent needs it.
type Assignment struct {
	ID          string `json:"id"`
	Project     string `json:"project"`
	Name        string `json:"name"`
	Type        string `json:"type"`
	Host        string `json:"host"`
	Size        Size   `json:"size"`
	Image       string `json:"image"`
	ImageSHA256 string `json:"image_sha256,omitempty"`
	UserData    string `json:"user_data,omitempty"`
	State       State  `json:"state"`
	Action      Action `json:"action,omitempty"`
	Revision    int64  `json:"revision"`
	// NICs are wired by the agent before the instance starts.
	NICs []InstanceNIC `json:"nics,omitempty"`
	// Nesting comes from the instance's flavor (driver.Spec.Nesting).
	Nesting bool `json:"nesting,omitempty"`
	// HA: the agent stops the instance itself when it loses the server
	// for longer than its fence grace (docs/ha.md).
	HA bool `json:"ha,omitempty"`
	// Migration is the instance's move between hosts, if one is under way.
	Migration *AssignmentMigration `json:"migration,omitempty"`
	// BootVolume is the id of the volume the VM boots from: it is attached
	// as its root disk (BootDevice) and PROLOG waits until it is made.
	BootVolume string `json:"boot_volume,omitempty"`
	// NewVolumes are the ids of the volumes made with the instance on its
	// host (an instance restored from a backup): PROLOG waits until each
	// is made and attached, as for BootVolume.
	NewVolumes []string `json:"new_volumes,omitempty"`
	// RootBackup is the id of the volume backup its own root disk (a
	// VM's disk, a container's writable layer) is restored from in PROLOG
	// (an instance restored from an instance backup that kept it).
	RootBackup string `json:"root_backup,omitempty"`
}

// SelfFenced starts the reason of an agent's report that it stopped an HA
// instance itself, having lost the server for longer than its fence grace.
const SelfFenced = "self-fenced"

// Assignments is the answer of the assignments long poll.
type Assignments struct {
	Items    []Assignment `json:"items"`
	Revision int64        `json:"revision"`
	// Complete: Items is every instance on the agent's hosts (and every
	// STOPPED one whose home they are) at Revision - the answer to
	// since=0. An agent stops and cleans up what its driver has that a
	// complete list does not name.
	Complete bool `json:"complete,omitempty"`
}

// InstanceReport is an agent telling where an instance went.
type InstanceReport struct {
	ID     string `json:"id"`
	Host   string `json:"host"`
	From   State  `json:"from"`
	To     State  `json:"to"`
	Reason string `json:"reason,omitempty"`
}

// AgentReport carries state changes.
type AgentReport struct {
	Instances []InstanceReport `json:"instances"`
}

// AgentReportResult says which reports were applied: Revisions gives the
// store revision each applied instance is now at; Rejected lists the ids
// whose reports did not fit the instance's state.
type AgentReportResult struct {
	Applied   int              `json:"applied"`
	Revisions map[string]int64 `json:"revisions"`
	Rejected  []string         `json:"rejected,omitempty"`
}

// ServerGroup keeps instances together or apart.
type ServerGroup struct {
	Meta
	Project string   `json:"project"`
	Policy  string   `json:"policy"`
	Hard    bool     `json:"hard"`
	Members []string `json:"members"`
}

// ServerGroupsPost creates a server group.
type ServerGroupsPost struct {
	Name   string            `json:"name"`
	Policy string            `json:"policy"`
	Soft   bool              `json:"soft,omitempty"`
	Labels map[string]string `json:"labels,omitempty"`
}

// Heartbeat is an agent saying its hosts are alive; Down lists those of
// its hosts that are not. Its size does not grow with the instances the
// agent runs: their usage travels apart (AgentUsage), in bounded batches.
type Heartbeat struct {
	Down []string `json:"down,omitempty"`
	// ReconciledAt is when the agent last reconciled its driver with a
	// complete assignment list; NetworkSyncedAt, when it last made the
	// host's datapath match the server's view.
	ReconciledAt    time.Time `json:"reconciled_at,omitzero"`
	NetworkSyncedAt time.Time `json:"network_synced_at,omitzero"`
}

// MaxUsageBatch bounds the instances of one AgentUsage.
const MaxUsageBatch = 1000

// AgentUsage is what some of the running instances of an agent's hosts
// use now: at most MaxUsageBatch of them per request.
type AgentUsage struct {
	Usage []InstanceUsage `json:"usage"`
}

// InstanceUsage is an instance's CPU time and memory, as its host's
// driver measures them (cgroups for containers).
type InstanceUsage struct {
	ID          string    `json:"id"`
	CPUSeconds  float64   `json:"cpu_seconds"`
	MemoryMiB   int64     `json:"memory_mib"`
	Ready       bool      `json:"ready,omitempty"`
	ReadyReason string    `json:"ready_reason,omitempty"`
	At          time.Time `json:"at"`
}

// UsageReport is what a project used (or every project, for a cloud
// admin) over [From, To), and what it cost.
type UsageReport struct {
	From     time.Time   `json:"from"`
	To       time.Time   `json:"to"`
	GroupBy  string      `json:"group_by"`
	Currency string      `json:"currency"`
	Groups   []UsageLine `json:"groups"`
	Total    UsageLine   `json:"total"`
}

// UsageLine is the usage of one group (an instance, a flavor, a day, a
// project). Money is in integer micro-units of Currency; Cost is the same
// amount as a decimal string.
type UsageLine struct {
	Key             string  `json:"key"`
	InstanceSeconds int64   `json:"instance_seconds"`
	VCPUHours       float64 `json:"vcpu_hours"`
	MemoryGiBHours  float64 `json:"memory_gib_hours"`
	StorageGiBHours float64 `json:"storage_gib_hours"`
	// GiB-hours of volumes (their provisioned size), volume snapshots and
	// volume backups (what they store).
	VolumeGiBHours   float64  `json:"volume_gib_hours"`
	SnapshotGiBHours float64  `json:"snapshot_gib_hours"`
	BackupGiBHours   float64  `json:"backup_gib_hours"`
	CostMicro        int64    `json:"cost_micro"`
	Cost             string   `json:"cost"`
	Charges          []Charge `json:"charges,omitempty"`
}

// Charge is one price applied: what, at which price (per hour, or per
// GiB-hour for storage), effective since when, for how much.
type Charge struct {
	What         string    `json:"what"`
	MicroPerHour int64     `json:"micro_per_hour"`
	Effective    time.Time `json:"effective,omitzero"`
	Hours        float64   `json:"hours"`
	CostMicro    int64     `json:"cost_micro"`
}

// PricePoint is a price from its effective time on, in micro-units per
// hour (per GiB-hour for storage).
type PricePoint struct {
	Effective time.Time `json:"effective,omitzero"`
	Micro     int64     `json:"micro_per_hour"`
}

// Prices are the cloud's prices and charging rules.
type Prices struct {
	Currency string                  `json:"currency"`
	Flavors  map[string][]PricePoint `json:"flavors"`
	// Storage is per GiB-hour of an instance's disk in states billed as
	// storage.
	Storage []PricePoint `json:"storage"`
	// Volumes, Snapshots and Backups are per GiB-hour of volumes, volume
	// snapshots and volume backups (none set: free).
	Volumes   []PricePoint `json:"volumes"`
	Snapshots []PricePoint `json:"volume_snapshots"`
	Backups   []PricePoint `json:"volume_backups"`
	// ComputeStates bill the flavor's price; StorageStates bill storage
	// only; all others bill nothing.
	ComputeStates []State `json:"compute_states"`
	StorageStates []State `json:"storage_states"`
}

// PricePut changes a price from EffectiveAt (default: now) on.
type PricePut struct {
	Micro       int64     `json:"micro_per_hour"`
	EffectiveAt time.Time `json:"effective_at,omitzero"`
}

// RulesPut changes which states bill what.
type RulesPut struct {
	ComputeStates []State `json:"compute_states"`
	StorageStates []State `json:"storage_states"`
}

// Image kinds, formats, statuses and visibilities.
const (
	KindContainerRootfs = "container-rootfs"
	KindVMDisk          = "vm-disk"
	KindVMKernel        = "vm-kernel"

	ImageQueued = "queued"
	ImageSaving = "saving"
	ImageActive = "active"
	ImageError  = "error"

	VisibilityPrivate = "private"
	VisibilityPublic  = "public"
	VisibilityShared  = "shared"
)

// Image is a bootable image: a container rootfs, a VM disk or a vm-kernel
// bundle.
type Image struct {
	Meta
	Project    string `json:"project"`
	Kind       string `json:"kind"`
	Format     string `json:"format"`
	Status     string `json:"status"`
	Error      string `json:"error,omitempty"`
	Size       int64  `json:"size"`
	SHA256     string `json:"sha256,omitempty"`
	Visibility string `json:"visibility"`
	// UnpackedSize is what a host's image cache holds of it: a tarball's
	// regular files, a disk's file. The quota counts the larger of it
	// and Size.
	UnpackedSize int64 `json:"unpacked_size,omitempty"`
	// VirtualSize is its disk's virtual size (a VM disk, or the disk of
	// a vm-kernel image).
	VirtualSize int64 `json:"virtual_size,omitempty"`
	// SharedWith and Shares are the projects it is offered to and whether
	// each accepted; only its own project sees them.
	SharedWith []string          `json:"shared_with,omitempty"`
	Shares     []ImageShare      `json:"shares,omitempty"`
	MinFlavor  string            `json:"min_flavor,omitempty"`
	Properties map[string]string `json:"properties,omitempty"`
}

// Image share statuses: an offered image is usable by the receiving
// project only once one of its members accepts it (Glance's members).
const (
	SharePending  = "pending"
	ShareAccepted = "accepted"
	ShareRejected = "rejected"
)

// ImageShare is an image one project offers another.
type ImageShare struct {
	// Image is the shared image as "owner/name".
	Image   string `json:"image"`
	Owner   string `json:"owner"`
	Name    string `json:"name"`
	Kind    string `json:"kind,omitempty"`
	Project string `json:"project"`
	Status  string `json:"status"`
}

// ImageSharePut accepts or rejects an offered image.
type ImageSharePut struct {
	Status string `json:"status"`
}

// ImagesPost registers an image; its bytes follow with PUT .../file.
// SHA256, if given, is checked against the upload.
type ImagesPost struct {
	Name       string            `json:"name"`
	Kind       string            `json:"kind"`
	Format     string            `json:"format,omitempty"`
	Visibility string            `json:"visibility,omitempty"`
	SharedWith []string          `json:"shared_with,omitempty"`
	MinFlavor  string            `json:"min_flavor,omitempty"`
	Properties map[string]string `json:"properties,omitempty"`
	Labels     map[string]string `json:"labels,omitempty"`
	SHA256     string            `json:"sha256,omitempty"`
}

// ImagePatch changes who can use an image.
type ImagePatch struct {
	Visibility *string  `json:"visibility,omitempty"`
	SharedWith []string `json:"shared_with,omitempty"`
}

// InstanceSnapshotPost copies a VM's disk into a new image of the
// instance's project: a vm-disk (qcow2), or a vm-kernel image when the VM
// boots from one.
type InstanceSnapshotPost struct {
	Name       string            `json:"name"`
	Visibility string            `json:"visibility,omitempty"`
	Labels     map[string]string `json:"labels,omitempty"`
}

// InstanceExecPost runs a command inside an instance (non-interactive).
type InstanceExecPost struct {
	Command []string `json:"command"`
	// TimeoutSeconds bounds the command (default 60, at most 600).
	TimeoutSeconds int `json:"timeout_seconds,omitempty"`
}

// InstanceExecResult is what the command printed (stdout and stderr
// together; its first MiB: Truncated says it printed more - ask with
// ?stream=true for all of it) and how it ended.
type InstanceExecResult struct {
	Output    string `json:"output"`
	ExitCode  int    `json:"exit_code"`
	Truncated bool   `json:"truncated,omitempty"`
}

// InstanceLogs is the end of an instance's console log (PID 1's output).
type InstanceLogs struct {
	Output string `json:"output"`
}

// Session is work the server asks of an agent on a user's behalf (exec,
// logs): agents are never called, they fetch sessions with a long poll
// and post the results.
type Session struct {
	ID         string   `json:"id"`
	Kind       string   `json:"kind"` // exec, logs, console or snapshot
	InstanceID string   `json:"instance_id"`
	Command    []string `json:"command,omitempty"`
	Timeout    int      `json:"timeout_seconds,omitempty"`
	Tail       int      `json:"tail,omitempty"`
	// Console is the kind of a console session (api.ConsoleKinds).
	Console string `json:"console,omitempty"`
}

// SessionResult is an agent's answer to a session.
type SessionResult struct {
	Output   string `json:"output"`
	ExitCode int    `json:"exit_code"`
	Error    string `json:"error,omitempty"`
}
