package api

import "time"

// WebSessionPost opens a browser session: a username and password, or an
// API token (the session then gets a child token of it).
type WebSessionPost struct {
	Username string `json:"username,omitempty"`
	Password string `json:"password,omitempty"`
	Token    string `json:"token,omitempty"`
}

// WebSession is a browser session. Its token travels only in an HttpOnly
// cookie; CSRFToken must come back in the X-CSRF-Token header of every
// write the cookie authenticates.
type WebSession struct {
	Whoami
	CSRFToken string    `json:"csrf_token,omitempty"`
	ExpiresAt time.Time `json:"expires_at,omitzero"`
}
