// Package api holds kumo's wire types: the JSON bodies of the REST API v1.
//
// It is the one type set shared by the server, the Go client and the CLI (as
// Incus's shared/api is; the web console, to come, will share it too). It depends on the standard library only.
// The contract these types follow is api/openapi.yaml, embedded here so the
// server can serve it and tests can validate real traffic against it.
package api

import _ "embed"

// OpenAPI is the committed OpenAPI 3 document describing the REST API v1.
//
//go:embed openapi.yaml
var OpenAPI []byte

// Version is the API version prefix of every path.
const Version = "v1"
