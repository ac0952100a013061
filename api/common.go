package api

import "time"

// List is the envelope of every list response. Next, when set, is passed back
// as ?after= to get the following page.
type List[T any] struct {
	Items []T    `json:"items"`
	Next  string `json:"next,omitempty"`
}

// Meta is carried by every stored object.
type Meta struct {
	ID        string            `json:"id"`
	Name      string            `json:"name"`
	Labels    map[string]string `json:"labels,omitempty"`
	CreatedAt time.Time         `json:"created_at"`
	UpdatedAt time.Time         `json:"updated_at"`
	// Revision is the store revision of the object; sending it back on an
	// update makes the update conditional (compare-and-swap).
	Revision int64 `json:"revision"`
}

// Roles a user can hold in a project.
const (
	RoleAdmin  = "admin"
	RoleMember = "member"
	RoleReader = "reader"
)

// Roles lists the project roles, strongest first.
var Roles = []string{RoleAdmin, RoleMember, RoleReader}

// HasLabels reports whether the object carries every key=value of sel.
func (m Meta) HasLabels(sel map[string]string) bool {
	for k, v := range sel {
		if got, ok := m.Labels[k]; !ok || got != v {
			return false
		}
	}
	return true
}
