package identity

import (
	"github.com/kumocloud/kumo/api"
)

// Principal is who a request acts as.
type Principal struct {
	User string
	// UserID is the user's id ("" for the local socket's root): what
	// tokens and ownership checks compare, never the reusable name.
	UserID     string
	CloudAdmin bool
	// Roles maps project -> role.
	Roles map[string]string
	// Via is "socket" or "token".
	Via     string
	TokenID string
	// DefaultProject of the user.
	DefaultProject string
}

// LocalRoot is the principal of requests on the local Unix socket: the
// machine's root, with cloud admin rights and no login (as Incus does).
func LocalRoot() *Principal {
	return &Principal{User: "local", CloudAdmin: true, Via: "socket", DefaultProject: DefaultProject}
}

var roleRank = map[string]int{api.RoleReader: 1, api.RoleMember: 2, api.RoleAdmin: 3}

// Role returns the principal's role in project ("" if none). Cloud admins
// are admins everywhere.
func (p *Principal) Role(project string) string {
	if p.CloudAdmin {
		return api.RoleAdmin
	}
	return p.Roles[project]
}

// Has reports whether the principal's role in project is at least role.
func (p *Principal) Has(project, role string) bool {
	return roleRank[p.Role(project)] >= roleRank[role]
}

// CanSee reports whether the project is visible at all (any role).
func (p *Principal) CanSee(project string) bool { return p.Role(project) != "" }

// Whoami describes the principal.
func (p *Principal) Whoami() api.Whoami {
	w := api.Whoami{User: p.User, CloudAdmin: p.CloudAdmin, Via: p.Via, DefaultProject: p.DefaultProject, Roles: []api.RoleBinding{}}
	for proj, role := range p.Roles {
		w.Roles = append(w.Roles, api.RoleBinding{Project: proj, Role: role})
	}
	sortBindings(w.Roles)
	return w
}
