package server

import (
	"net/http"

	"github.com/kumocloud/kumo/internal/hosts"
	"github.com/kumocloud/kumo/internal/identity"
	"github.com/kumocloud/kumo/internal/server/response"
)

// Permission is what an endpoint demands of its caller. The middleware
// enforces it before the handler runs; handlers only add object-level checks
// (e.g. "your own token").
type Permission int

// Permissions, weakest first after the zero value.
const (
	// PermUnset is the zero value: a row of the table that forgets its
	// permission is refused to everyone (fail closed), never public.
	PermUnset Permission = iota
	// PermPublic: anyone, no credentials.
	PermPublic
	// PermAuthenticated: any valid credentials.
	PermAuthenticated
	// PermSelf: the user named by {user}, or a cloud admin; others get 404.
	PermSelf
	// PermProjectReader, PermProjectMember, PermProjectAdmin: at least that
	// role in the {project} of the path. No role at all answers 404 (the
	// project's existence is not revealed); a weaker role answers 403.
	PermProjectReader
	PermProjectMember
	PermProjectAdmin
	// PermCloudAdmin: cloud admins only (403 for everyone else).
	PermCloudAdmin
	// PermAgent: the agent named by {id}, with its credential (others 404).
	// Agent credentials work nowhere else.
	PermAgent
)

func (p Permission) String() string {
	return [...]string{"unset (refused)", "public", "authenticated", "self", "project reader", "project member", "project admin", "cloud admin", "agent"}[p]
}

// request is what a handler gets: the HTTP request and who made it.
type request struct {
	*http.Request
	p     *identity.Principal
	agent *hosts.AgentPrincipal // set for agents only
	perm  Permission            // the endpoint's, for streams' re-checks
}

// Endpoint is one row of the API table.
type Endpoint struct {
	Method  string
	Path    string // net/http pattern syntax: /v1/projects/{project}
	Perm    Permission
	Summary string
	handler func(*Server, *request) response.Response
	// create marks endpoints honouring Idempotency-Key.
	create bool
	// raw endpoints write the response themselves (streams, files).
	raw func(*Server, *request, http.ResponseWriter)
}

// Endpoints is the API: every route, its permission and its handler.
// api/openapi.yaml documents the same table; a test keeps them equal.
func Endpoints() []Endpoint {
	return []Endpoint{
		{Method: "GET", Path: "/healthz", Perm: PermPublic, Summary: "Liveness", raw: (*Server).healthz},
		{Method: "GET", Path: "/readyz", Perm: PermPublic, Summary: "Readiness", raw: (*Server).readyz},
		{Method: "GET", Path: "/metrics", Perm: PermPublic, Summary: "Prometheus metrics", raw: (*Server).metricsHandler},
		{Method: "GET", Path: "/v1", Perm: PermPublic, Summary: "Server information", handler: (*Server).getServerInfo},
		{Method: "GET", Path: "/v1/openapi.yaml", Perm: PermPublic, Summary: "The API contract", raw: (*Server).getOpenAPI},

		{Method: "POST", Path: "/v1/tokens", Perm: PermPublic, Summary: "Log in: trade a password (or a token) for a token", handler: (*Server).postTokens},
		{Method: "GET", Path: "/v1/tokens", Perm: PermAuthenticated, Summary: "List your tokens (cloud admin: ?all=true)", handler: (*Server).getTokens},
		{Method: "GET", Path: "/v1/tokens/{id}", Perm: PermAuthenticated, Summary: "Show a token", handler: (*Server).getToken},
		{Method: "DELETE", Path: "/v1/tokens/{id}", Perm: PermAuthenticated, Summary: "Revoke a token", handler: (*Server).deleteToken},
		{Method: "POST", Path: "/v1/session", Perm: PermPublic, Summary: "Log a browser in: a session cookie and a CSRF token", handler: (*Server).postSession},
		{Method: "GET", Path: "/v1/session", Perm: PermAuthenticated, Summary: "The browser session: who, its CSRF token, its expiry", handler: (*Server).getSession},
		{Method: "DELETE", Path: "/v1/session", Perm: PermAuthenticated, Summary: "Log out: revoke the session's token, clear its cookies", handler: (*Server).deleteSession},
		{Method: "GET", Path: "/v1/whoami", Perm: PermAuthenticated, Summary: "Who the server thinks you are", handler: (*Server).getWhoami},

		{Method: "GET", Path: "/v1/projects", Perm: PermAuthenticated, Summary: "List the projects you can see", handler: (*Server).getProjects},
		{Method: "POST", Path: "/v1/projects", Perm: PermCloudAdmin, Summary: "Create a project", handler: (*Server).postProjects, create: true},
		{Method: "GET", Path: "/v1/projects/{project}", Perm: PermProjectReader, Summary: "Show a project with quota and usage", handler: (*Server).getProject},
		{Method: "PATCH", Path: "/v1/projects/{project}", Perm: PermProjectAdmin, Summary: "Change a project's description or labels", handler: (*Server).patchProject},
		{Method: "DELETE", Path: "/v1/projects/{project}", Perm: PermCloudAdmin, Summary: "Delete an empty project (async)", handler: (*Server).deleteProject},
		{Method: "PUT", Path: "/v1/projects/{project}/quota", Perm: PermCloudAdmin, Summary: "Change a project's quota", handler: (*Server).putQuota},
		{Method: "GET", Path: "/v1/projects/{project}/members", Perm: PermProjectReader, Summary: "List a project's members", handler: (*Server).getMembers},
		{Method: "PUT", Path: "/v1/projects/{project}/members/{user}", Perm: PermProjectAdmin, Summary: "Grant a user a role in the project", handler: (*Server).putMember},
		{Method: "DELETE", Path: "/v1/projects/{project}/members/{user}", Perm: PermProjectAdmin, Summary: "Take a user's role away", handler: (*Server).deleteMember},
		{Method: "GET", Path: "/v1/projects/{project}/operations", Perm: PermProjectReader, Summary: "List a project's operations", handler: (*Server).getProjectOperations},

		{Method: "GET", Path: "/v1/operations", Perm: PermAuthenticated, Summary: "List the operations you can see", handler: (*Server).getOperations},
		{Method: "GET", Path: "/v1/operations/{id}", Perm: PermAuthenticated, Summary: "Show an operation; ?wait=SECONDS waits for its end", handler: (*Server).getOperation},
		{Method: "GET", Path: "/v1/events", Perm: PermAuthenticated, Summary: "Stream events (server-sent events)", raw: (*Server).getEvents},

		{Method: "GET", Path: "/v1/users", Perm: PermCloudAdmin, Summary: "List users", handler: (*Server).getUsers},
		{Method: "POST", Path: "/v1/users", Perm: PermCloudAdmin, Summary: "Create a user", handler: (*Server).postUsers, create: true},
		{Method: "GET", Path: "/v1/users/{user}", Perm: PermSelf, Summary: "Show a user", handler: (*Server).getUser},
		{Method: "DELETE", Path: "/v1/users/{user}", Perm: PermCloudAdmin, Summary: "Delete a user", handler: (*Server).deleteUser},
		{Method: "PUT", Path: "/v1/users/{user}/password", Perm: PermSelf, Summary: "Set a user's password", handler: (*Server).putPassword},

		{Method: "GET", Path: "/v1/projects/{project}/instances", Perm: PermProjectReader, Summary: "List instances (?all=true: DONE ones too)", handler: (*Server).getInstances},
		{Method: "POST", Path: "/v1/projects/{project}/instances", Perm: PermProjectMember, Summary: "Create an instance", handler: (*Server).postInstances, create: true},
		{Method: "GET", Path: "/v1/projects/{project}/instances/{name}", Perm: PermProjectReader, Summary: "Show an instance", handler: (*Server).getInstance},
		{Method: "POST", Path: "/v1/projects/{project}/instances/{name}/actions", Perm: PermProjectMember, Summary: "Stop, start, suspend, resume, poweroff, reboot, hold, release or terminate", handler: (*Server).postInstanceAction},
		{Method: "GET", Path: "/v1/projects/{project}/instances/{name}/history", Perm: PermProjectReader, Summary: "An instance's state transitions", handler: (*Server).getInstanceHistory},
		{Method: "GET", Path: "/v1/projects/{project}/instances/{name}/explain", Perm: PermProjectReader, Summary: "Why each host can or cannot take the instance (?migrate=true: as a migration target)", handler: (*Server).getInstanceExplain},
		{Method: "POST", Path: "/v1/projects/{project}/instances/{name}/migrate", Perm: PermProjectMember, Summary: "Migrate an instance to another host (async), or cancel its migration", handler: (*Server).postInstanceMigrate},
		{Method: "POST", Path: "/v1/projects/{project}/instances/{name}/exec", Perm: PermProjectMember, Summary: "Run a command inside a RUNNING instance (?stream=true: its output as it comes)", raw: (*Server).postInstanceExec},
		{Method: "GET", Path: "/v1/projects/{project}/instances/{name}/console", Perm: PermProjectMember, Summary: "A console of the instance over a WebSocket: shell, serial or vnc (internal/console)", raw: (*Server).getInstanceConsole},
		{Method: "GET", Path: "/v1/projects/{project}/networks", Perm: PermProjectReader, Summary: "The project's networks and the shared ones", handler: (*Server).getNetworks},
		{Method: "POST", Path: "/v1/projects/{project}/networks", Perm: PermProjectMember, Summary: "Create a network with its subnet (shared, external: cloud admin)", handler: (*Server).postNetworks, create: true},
		{Method: "GET", Path: "/v1/projects/{project}/networks/{name}", Perm: PermProjectReader, Summary: "Show a network", handler: (*Server).getNetwork},
		{Method: "DELETE", Path: "/v1/projects/{project}/networks/{name}", Perm: PermProjectMember, Summary: "Delete a network without ports", handler: (*Server).deleteNetwork},
		{Method: "GET", Path: "/v1/projects/{project}/ports", Perm: PermProjectReader, Summary: "The project's ports (?network= one network's)", handler: (*Server).getPorts},
		{Method: "POST", Path: "/v1/projects/{project}/ports", Perm: PermProjectMember, Summary: "Create a port: an address allocated on a network", handler: (*Server).postPorts, create: true},
		{Method: "GET", Path: "/v1/projects/{project}/ports/{name}", Perm: PermProjectReader, Summary: "Show a port", handler: (*Server).getPort},
		{Method: "DELETE", Path: "/v1/projects/{project}/ports/{name}", Perm: PermProjectMember, Summary: "Delete a port, freeing its address", handler: (*Server).deletePort},
		{Method: "GET", Path: "/v1/projects/{project}/floating-ips", Perm: PermProjectReader, Summary: "The project's floating IPs", handler: (*Server).getFloatingIPs},
		{Method: "POST", Path: "/v1/projects/{project}/floating-ips", Perm: PermProjectMember, Summary: "Take a floating IP from an external network", handler: (*Server).postFloatingIPs, create: true},
		{Method: "GET", Path: "/v1/projects/{project}/floating-ips/{ip}", Perm: PermProjectReader, Summary: "Show a floating IP", handler: (*Server).getFloatingIP},
		{Method: "DELETE", Path: "/v1/projects/{project}/floating-ips/{ip}", Perm: PermProjectMember, Summary: "Give a floating IP back", handler: (*Server).deleteFloatingIP},
		{Method: "POST", Path: "/v1/projects/{project}/floating-ips/{ip}/attach", Perm: PermProjectMember, Summary: "Attach a floating IP to an instance", handler: (*Server).postFloatingIPAttach},
		{Method: "POST", Path: "/v1/projects/{project}/floating-ips/{ip}/detach", Perm: PermProjectMember, Summary: "Detach a floating IP", handler: (*Server).postFloatingIPDetach},
		{Method: "GET", Path: "/v1/projects/{project}/security-groups", Perm: PermProjectReader, Summary: "The project's security groups", handler: (*Server).getSecurityGroups},
		{Method: "POST", Path: "/v1/projects/{project}/security-groups", Perm: PermProjectMember, Summary: "Create a security group (all egress, no ingress)", handler: (*Server).postSecurityGroups, create: true},
		{Method: "GET", Path: "/v1/projects/{project}/security-groups/{name}", Perm: PermProjectReader, Summary: "Show a security group and its rules", handler: (*Server).getSecurityGroup},
		{Method: "DELETE", Path: "/v1/projects/{project}/security-groups/{name}", Perm: PermProjectMember, Summary: "Delete a security group no instance uses", handler: (*Server).deleteSecurityGroup},
		{Method: "POST", Path: "/v1/projects/{project}/security-groups/{name}/rules", Perm: PermProjectMember, Summary: "Add a rule to a security group", handler: (*Server).postSecurityRule},
		{Method: "DELETE", Path: "/v1/projects/{project}/security-groups/{name}/rules/{rule}", Perm: PermProjectMember, Summary: "Remove a rule from a security group", handler: (*Server).deleteSecurityRule},
		{Method: "POST", Path: "/v1/projects/{project}/instances/{name}/snapshot", Perm: PermProjectMember, Summary: "Copy a VM's disk into a new image (async)", handler: (*Server).postInstanceSnapshot},
		{Method: "GET", Path: "/v1/projects/{project}/instances/{name}/logs", Perm: PermProjectReader, Summary: "The end of the instance's console log", handler: (*Server).getInstanceLogs},
		{Method: "GET", Path: "/v1/projects/{project}/server-groups", Perm: PermProjectReader, Summary: "List server groups", handler: (*Server).getServerGroups},
		{Method: "POST", Path: "/v1/projects/{project}/server-groups", Perm: PermProjectMember, Summary: "Create a server group", handler: (*Server).postServerGroups, create: true},
		{Method: "GET", Path: "/v1/projects/{project}/server-groups/{name}", Perm: PermProjectReader, Summary: "Show a server group", handler: (*Server).getServerGroup},
		{Method: "DELETE", Path: "/v1/projects/{project}/server-groups/{name}", Perm: PermProjectMember, Summary: "Delete an empty server group", handler: (*Server).deleteServerGroup},

		{Method: "GET", Path: "/v1/projects/{project}/volumes", Perm: PermProjectReader, Summary: "List the project's volumes", handler: (*Server).getVolumes},
		{Method: "POST", Path: "/v1/projects/{project}/volumes", Perm: PermProjectMember, Summary: "Create a volume (its host makes it; counts against volumes and volume_gib)", handler: (*Server).postVolumes, create: true},
		{Method: "GET", Path: "/v1/projects/{project}/volumes/{name}", Perm: PermProjectReader, Summary: "Show a volume", handler: (*Server).getVolume},
		{Method: "PATCH", Path: "/v1/projects/{project}/volumes/{name}", Perm: PermProjectMember, Summary: "Grow a volume", handler: (*Server).patchVolume},
		{Method: "DELETE", Path: "/v1/projects/{project}/volumes/{name}", Perm: PermProjectMember, Summary: "Delete a volume that is not attached (its host removes it)", handler: (*Server).deleteVolume},
		{Method: "POST", Path: "/v1/projects/{project}/volumes/{name}/attach", Perm: PermProjectMember, Summary: "Attach a volume to an instance", handler: (*Server).postVolumeAttach},
		{Method: "POST", Path: "/v1/projects/{project}/volumes/{name}/detach", Perm: PermProjectMember, Summary: "Detach a volume", handler: (*Server).postVolumeDetach},
		{Method: "GET", Path: "/v1/projects/{project}/volumes/{name}/snapshots", Perm: PermProjectReader, Summary: "List a volume's snapshots", handler: (*Server).getVolumeSnapshots},
		{Method: "POST", Path: "/v1/projects/{project}/volumes/{name}/snapshots", Perm: PermProjectMember, Summary: "Take a snapshot of a volume (consistent for a running VM)", handler: (*Server).postVolumeSnapshots, create: true},
		{Method: "GET", Path: "/v1/projects/{project}/volumes/{name}/snapshots/{snapshot}", Perm: PermProjectReader, Summary: "Show a snapshot", handler: (*Server).getVolumeSnapshot},
		{Method: "DELETE", Path: "/v1/projects/{project}/volumes/{name}/snapshots/{snapshot}", Perm: PermProjectMember, Summary: "Delete a snapshot", handler: (*Server).deleteVolumeSnapshot},
		{Method: "POST", Path: "/v1/projects/{project}/volumes/{name}/revert", Perm: PermProjectMember, Summary: "Bring a detached volume back to a snapshot", handler: (*Server).postVolumeRevert},
		{Method: "POST", Path: "/v1/projects/{project}/volumes/{name}/move", Perm: PermProjectMember, Summary: "Move a detached local volume to another host (through the backup store)", handler: (*Server).postVolumeMove},
		{Method: "POST", Path: "/v1/projects/{project}/volumes/{name}/backups", Perm: PermProjectMember, Summary: "Back a volume up to the server (only chunks the store lacks are sent)", handler: (*Server).postVolumeBackups, create: true},
		{Method: "GET", Path: "/v1/projects/{project}/volume-backups", Perm: PermProjectReader, Summary: "List the project's volume backups", handler: (*Server).getVolumeBackups},
		{Method: "GET", Path: "/v1/projects/{project}/volume-backups/{backup}", Perm: PermProjectReader, Summary: "Show a volume backup", handler: (*Server).getVolumeBackup},
		{Method: "DELETE", Path: "/v1/projects/{project}/volume-backups/{backup}", Perm: PermProjectMember, Summary: "Delete a volume backup", handler: (*Server).deleteVolumeBackup},
		{Method: "POST", Path: "/v1/projects/{project}/instances/{name}/backups", Perm: PermProjectMember, Summary: "Back an instance up: its definition and a backup of every volume attached to it", handler: (*Server).postInstanceBackups, create: true},
		{Method: "GET", Path: "/v1/projects/{project}/instance-backups", Perm: PermProjectReader, Summary: "List the project's instance backups", handler: (*Server).getInstanceBackups},
		{Method: "GET", Path: "/v1/projects/{project}/instance-backups/{backup}", Perm: PermProjectReader, Summary: "Show an instance backup", handler: (*Server).getInstanceBackup},
		{Method: "DELETE", Path: "/v1/projects/{project}/instance-backups/{backup}", Perm: PermProjectMember, Summary: "Delete an instance backup and its volume backups", handler: (*Server).deleteInstanceBackup},
		{Method: "POST", Path: "/v1/projects/{project}/instance-backups/{backup}/restore", Perm: PermProjectMember, Summary: "Make a new instance from an instance backup, its volumes restored", handler: (*Server).postInstanceRestore, create: true},
		{Method: "GET", Path: "/v1/storage-pools", Perm: PermAuthenticated, Summary: "List storage pools", handler: (*Server).getStoragePools},
		{Method: "POST", Path: "/v1/storage-pools", Perm: PermCloudAdmin, Summary: "Add a shared-dir storage pool", handler: (*Server).postStoragePools},
		{Method: "GET", Path: "/v1/storage-pools/{pool}", Perm: PermAuthenticated, Summary: "Show a storage pool", handler: (*Server).getStoragePool},
		{Method: "DELETE", Path: "/v1/storage-pools/{pool}", Perm: PermCloudAdmin, Summary: "Remove an empty storage pool", handler: (*Server).deleteStoragePool},
		{Method: "PUT", Path: "/v1/agents/{id}/backups/{backup}/chunks/{sha256}", Perm: PermAgent, Summary: "An agent sends a chunk of a backup it makes", handler: (*Server).putAgentBackupChunk},
		{Method: "POST", Path: "/v1/agents/{id}/backups/{backup}", Perm: PermAgent, Summary: "An agent sends a backup's manifest; the answer lists the chunks still missing", handler: (*Server).postAgentBackup},
		{Method: "GET", Path: "/v1/agents/{id}/backups/{backup}", Perm: PermAgent, Summary: "The manifest of a backup an agent restores", handler: (*Server).getAgentBackup},
		{Method: "GET", Path: "/v1/agents/{id}/backups/{backup}/chunks/{sha256}", Perm: PermAgent, Summary: "A chunk of a backup an agent restores", raw: (*Server).getAgentBackupChunk},
		{Method: "GET", Path: "/v1/agents/{id}/volumes", Perm: PermAgent, Summary: "The volumes an agent's hosts handle: make, grow, attach, delete", handler: (*Server).getAgentVolumes},
		{Method: "POST", Path: "/v1/agents/{id}/volumes", Perm: PermAgent, Summary: "An agent reports what it did with its volumes", handler: (*Server).postAgentVolumes},

		{Method: "GET", Path: "/v1/projects/{project}/images", Perm: PermProjectReader, Summary: "List the images the project can use (own, public, shared with it and accepted)", handler: (*Server).getImages},
		{Method: "POST", Path: "/v1/projects/{project}/images", Perm: PermProjectMember, Summary: "Register an image; upload its bytes next", handler: (*Server).postImages, create: true},
		{Method: "GET", Path: "/v1/projects/{project}/images/{name}", Perm: PermProjectReader, Summary: "Show an image", handler: (*Server).getImage},
		{Method: "PATCH", Path: "/v1/projects/{project}/images/{name}", Perm: PermProjectMember, Summary: "Change an image's visibility or sharing", handler: (*Server).patchImage},
		{Method: "DELETE", Path: "/v1/projects/{project}/images/{name}", Perm: PermProjectMember, Summary: "Delete an image not in use (?force=true: cloud admin)", handler: (*Server).deleteImage},
		{Method: "PUT", Path: "/v1/projects/{project}/images/{name}/file", Perm: PermProjectMember, Summary: "Upload an image's bytes (streamed, sha256-checked)", handler: (*Server).putImageFile},
		{Method: "GET", Path: "/v1/projects/{project}/images/{name}/file", Perm: PermProjectReader, Summary: "Download an image's bytes", raw: (*Server).getImageFile},
		{Method: "GET", Path: "/v1/projects/{project}/image-shares", Perm: PermProjectReader, Summary: "The images other projects offer this one, each pending, accepted or rejected", handler: (*Server).getImageShares},
		{Method: "PUT", Path: "/v1/projects/{project}/image-shares/{owner}/{name}", Perm: PermProjectMember, Summary: "Accept or reject an image another project offers (usable only once accepted)", handler: (*Server).putImageShare},
		{Method: "GET", Path: "/v1/agents/{id}/sessions", Perm: PermAgent, Summary: "Long poll for exec, logs, console and snapshot requests", handler: (*Server).getSessions},
		{Method: "GET", Path: "/v1/agents/{id}/sessions/{sid}/stream", Perm: PermAgent, Summary: "An agent's end of a console (WebSocket), exec or snapshot stream (Upgrade: kumo-stream)", raw: (*Server).getSessionStream},
		{Method: "POST", Path: "/v1/agents/{id}/sessions/{sid}", Perm: PermAgent, Summary: "An agent answers a logs request (exec, console and snapshots are streams)", handler: (*Server).postSessionResult},
		{Method: "GET", Path: "/v1/agents/{id}/images/{sha256}", Perm: PermAgent, Summary: "An agent fetches image bytes by hash", raw: (*Server).getAgentImage},
		{Method: "POST", Path: "/v1/agents/{id}/migrations/{mid}", Perm: PermAgent, Summary: "An agent reports how a migration goes on one of its hosts", handler: (*Server).postMigrationReport},
		{Method: "GET", Path: "/v1/agents/{id}/migrations/{mid}/tunnel/{channel}", Perm: PermAgent, Summary: "One channel of a migration's tunnel, joined to the other host's agent (Upgrade: kumo-stream)", raw: (*Server).getMigrationTunnel},

		{Method: "GET", Path: "/v1/hosts", Perm: PermCloudAdmin, Summary: "List hosts", handler: (*Server).getHosts},
		{Method: "GET", Path: "/v1/hosts/{host}", Perm: PermCloudAdmin, Summary: "Show a host", handler: (*Server).getHost},
		{Method: "PATCH", Path: "/v1/hosts/{host}", Perm: PermCloudAdmin, Summary: "Enable, disable, drain a host; labels; ratios", handler: (*Server).patchHost},
		{Method: "POST", Path: "/v1/hosts/{host}/evacuate", Perm: PermCloudAdmin, Summary: "Disable a host and migrate every instance off it (async; dry_run: the plan)", handler: (*Server).postHostEvacuate},
		{Method: "DELETE", Path: "/v1/hosts/{host}", Perm: PermCloudAdmin, Summary: "Delete a host holding no live instances (its agent may then bring it again, or another may)", handler: (*Server).deleteHost},
		{Method: "GET", Path: "/v1/consolidation", Perm: PermCloudAdmin, Summary: "The plan that would empty the least-used hosts onto the others (nothing moves)", handler: (*Server).getConsolidation},
		{Method: "POST", Path: "/v1/consolidation", Perm: PermCloudAdmin, Summary: "Apply a fresh consolidation plan by migration, one move at a time (cloud admin)", handler: (*Server).postConsolidation},
		{Method: "POST", Path: "/v1/join-tokens", Perm: PermCloudAdmin, Summary: "Make a join token for agents", handler: (*Server).postJoinTokens},
		{Method: "GET", Path: "/v1/join-tokens", Perm: PermCloudAdmin, Summary: "List join tokens", handler: (*Server).getJoinTokens},
		{Method: "DELETE", Path: "/v1/join-tokens/{id}", Perm: PermCloudAdmin, Summary: "Revoke a join token", handler: (*Server).deleteJoinToken},
		{Method: "POST", Path: "/v1/agents", Perm: PermPublic, Summary: "An agent joins with a join token", handler: (*Server).postAgents},
		{Method: "PUT", Path: "/v1/agents/{id}/hosts", Perm: PermAgent, Summary: "An agent re-registers its hosts", handler: (*Server).putAgentHosts},
		{Method: "POST", Path: "/v1/agents/{id}/heartbeat", Perm: PermAgent, Summary: "An agent's hosts are alive", handler: (*Server).postHeartbeat},
		{Method: "POST", Path: "/v1/agents/{id}/usage", Perm: PermAgent, Summary: "What instances on an agent's hosts use (batches of at most 1000)", handler: (*Server).postAgentUsage},
		{Method: "GET", Path: "/v1/agents/{id}/networks", Perm: PermAgent, Summary: "What an agent's hosts need of networks: peers, local ports, security rules (a long poll with ?version= and ?wait=)", handler: (*Server).getAgentNetworks},
		{Method: "GET", Path: "/v1/agents/{id}/assignments", Perm: PermAgent, Summary: "Long poll for the instances on an agent's hosts", handler: (*Server).getAssignments},
		{Method: "POST", Path: "/v1/agents/{id}/reports", Perm: PermAgent, Summary: "An agent reports instance state changes", handler: (*Server).postReports},

		{Method: "GET", Path: "/v1/projects/{project}/usage", Perm: PermProjectReader, Summary: "Usage and cost of a project over ?from&to, ?group_by=instance|flavor|day", handler: (*Server).getProjectUsage},
		{Method: "GET", Path: "/v1/usage", Perm: PermCloudAdmin, Summary: "Usage and cost of every project (showback)", handler: (*Server).getUsage},
		{Method: "GET", Path: "/v1/prices", Perm: PermAuthenticated, Summary: "Prices, their history and the charging rules", handler: (*Server).getPrices},
		{Method: "PUT", Path: "/v1/prices/storage", Perm: PermCloudAdmin, Summary: "Change the storage price per GiB-hour", handler: (*Server).putStoragePrice},
		{Method: "PUT", Path: "/v1/prices/storage/{kind}", Perm: PermCloudAdmin, Summary: "Change the price per GiB-hour of volumes, volume snapshots or volume backups", handler: (*Server).putKindPrice},
		{Method: "PUT", Path: "/v1/prices/rules", Perm: PermCloudAdmin, Summary: "Change which states bill compute or storage", handler: (*Server).putRules},
		{Method: "PUT", Path: "/v1/flavors/{flavor}/price", Perm: PermCloudAdmin, Summary: "Change a flavor's price from a time on", handler: (*Server).putFlavorPrice},

		{Method: "GET", Path: "/v1/flavors", Perm: PermAuthenticated, Summary: "List flavors", handler: (*Server).getFlavors},
		{Method: "POST", Path: "/v1/flavors", Perm: PermCloudAdmin, Summary: "Create a flavor", handler: (*Server).postFlavors, create: true},
		{Method: "GET", Path: "/v1/flavors/{flavor}", Perm: PermAuthenticated, Summary: "Show a flavor", handler: (*Server).getFlavor},
		{Method: "DELETE", Path: "/v1/flavors/{flavor}", Perm: PermCloudAdmin, Summary: "Delete a flavor", handler: (*Server).deleteFlavor},
	}
}
