package api

import "time"

// ResourceCounts is a set of per-project resource figures: used both for
// quota limits (-1 = unlimited) and for live usage. Memory and image bytes
// are in MiB, disk in GiB.
type ResourceCounts struct {
	Instances int64 `json:"instances"`
	VCPUs     int64 `json:"vcpus"`
	MemoryMiB int64 `json:"memory_mib"`
	DiskGiB   int64 `json:"disk_gib"`
	Volumes   int64 `json:"volumes"`
	// VolumeGiB is the size of the project's volumes and their
	// snapshots, in GiB.
	VolumeGiB int64 `json:"volume_gib"`
	// Snapshots counts volume snapshots; Backups volume backups (and one
	// for each instance backup), and
	// BackupGiB the size of the volumes they were made of.
	Snapshots   int64 `json:"snapshots"`
	Backups     int64 `json:"backups"`
	BackupGiB   int64 `json:"backup_gib"`
	Networks    int64 `json:"networks"`
	Ports       int64 `json:"ports"`
	FloatingIPs int64 `json:"floating_ips"`
	Images      int64 `json:"images"`
	ImageMiB    int64 `json:"image_mib"`
}

// Project is a tenant: it owns instances, images, networks and volumes.
type Project struct {
	Meta
	Description string         `json:"description,omitempty"`
	Quota       ResourceCounts `json:"quota"`
	Usage       ResourceCounts `json:"usage"`
	// BudgetMicro is the monthly budget (0 = none); events fire at 80 %
	// and 100 % of it, once each per month.
	BudgetMicro int64 `json:"budget_micro,omitempty"`
	// Currency of the cloud's prices, and the month-to-date cost in it.
	Currency         string `json:"currency,omitempty"`
	MonthToDateMicro int64  `json:"month_to_date_cost_micro"`
	// Deleting is set while the project is being deleted: nothing can be
	// added to it or changed in it any more.
	Deleting bool `json:"deleting,omitempty"`
}

// ProjectsPost creates a project (cloud admin only). Quota fields left out
// take the server's default quota.
type ProjectsPost struct {
	Name        string            `json:"name"`
	Description string            `json:"description,omitempty"`
	Labels      map[string]string `json:"labels,omitempty"`
	Quota       map[string]int64  `json:"quota,omitempty"`
}

// ProjectPatch changes a project's description or labels (project admin).
type ProjectPatch struct {
	Description *string `json:"description,omitempty"`
	// BudgetMicro sets the monthly budget (0 removes it); Currency, if
	// given, must be the cloud's.
	BudgetMicro *int64            `json:"budget_micro,omitempty"`
	Currency    *string           `json:"currency,omitempty"`
	Labels      map[string]string `json:"labels,omitempty"`
	Revision    int64             `json:"revision,omitempty"`
}

// QuotaPut changes some of a project's quota limits (cloud admin). Keys are
// the JSON names of ResourceCounts; -1 means unlimited.
type QuotaPut struct {
	Quota map[string]int64 `json:"quota"`
}

// User is a person or a robot that logs in.
type User struct {
	Meta
	CloudAdmin     bool          `json:"cloud_admin"`
	DefaultProject string        `json:"default_project,omitempty"`
	Roles          []RoleBinding `json:"roles"`
}

// RoleBinding gives a user a role in a project.
type RoleBinding struct {
	Project string `json:"project"`
	Role    string `json:"role"`
}

// UsersPost creates a user (cloud admin only).
type UsersPost struct {
	Name           string `json:"name"`
	Password       string `json:"password"`
	CloudAdmin     bool   `json:"cloud_admin,omitempty"`
	DefaultProject string `json:"default_project,omitempty"`
}

// UserPasswordPut sets a user's password. CurrentPassword is required,
// except when a cloud admin sets another user's password; when given it
// is checked. The change revokes every other token of the user (the one
// making the change, if it is the user's own, stays valid).
type UserPasswordPut struct {
	Password        string `json:"password"`
	CurrentPassword string `json:"current_password,omitempty"`
}

// MemberPut grants a user a role in a project (project admin).
type MemberPut struct {
	Role string `json:"role"`
}

// Member is one user's role in a project.
type Member struct {
	User string `json:"user"`
	Role string `json:"role"`
}

// TokensPost logs in: it trades a username and password for an API token.
// When the request already carries a valid token, username and password may
// be left out and the new token is for the same user.
type TokensPost struct {
	Username string `json:"username,omitempty"`
	Password string `json:"password,omitempty"`
	// Description says what the token is for.
	Description string `json:"description,omitempty"`
	// TTLSeconds is the token's lifetime; 0 takes the server's default. A
	// token made with a token never outlives it: its expiry is capped at
	// its parent's.
	TTLSeconds int64 `json:"ttl_seconds,omitempty"`
}

// Token is an API token. Secret is returned once, on creation. A token
// belongs to one user by id (a later user of the same name never inherits
// it); Parent is the token it was made with, if any: revoking a token
// revokes the tokens made with it. Revoked is also true for tokens a
// password change or a parent's revocation ended.
type Token struct {
	ID          string    `json:"id"`
	User        string    `json:"user"`
	UserID      string    `json:"user_id,omitempty"`
	Parent      string    `json:"parent,omitempty"`
	Description string    `json:"description,omitempty"`
	CreatedAt   time.Time `json:"created_at"`
	ExpiresAt   time.Time `json:"expires_at"`
	Revoked     bool      `json:"revoked"`
	Secret      string    `json:"secret,omitempty"`
}

// Whoami tells a caller who the server thinks they are.
type Whoami struct {
	User           string        `json:"user"`
	CloudAdmin     bool          `json:"cloud_admin"`
	DefaultProject string        `json:"default_project,omitempty"`
	Roles          []RoleBinding `json:"roles"`
	// Via is "socket" for the local Unix socket, "token" for a bearer
	// token or "cookie" for a browser session.
	Via string `json:"via"`
}
