package server

import (
	"net/http"

	"github.com/kumocloud/kumo/internal/identity"
	"github.com/kumocloud/kumo/internal/server/response"
)

// Permission is what an endpoint demands of its caller. The middleware
// enforces it before the handler runs; handlers only add object-level checks
// (e.g. "your own token").
type Permission int

// Permissions, weakest first.
const (
	// PermPublic: anyone, no credentials.
	PermPublic Permission = iota
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
)

func (p Permission) String() string {
	return [...]string{"public", "authenticated", "self", "project reader", "project member", "project admin", "cloud admin"}[p]
}

// request is what a handler gets: the HTTP request and who made it.
type request struct {
	*http.Request
	p *identity.Principal
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

		{Method: "GET", Path: "/v1/flavors", Perm: PermAuthenticated, Summary: "List flavors", handler: (*Server).getFlavors},
		{Method: "POST", Path: "/v1/flavors", Perm: PermCloudAdmin, Summary: "Create a flavor", handler: (*Server).postFlavors, create: true},
		{Method: "GET", Path: "/v1/flavors/{flavor}", Perm: PermAuthenticated, Summary: "Show a flavor", handler: (*Server).getFlavor},
		{Method: "DELETE", Path: "/v1/flavors/{flavor}", Perm: PermCloudAdmin, Summary: "Delete a flavor", handler: (*Server).deleteFlavor},
	}
}
