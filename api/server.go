package api

// ServerInfo is the answer of GET /v1: what this server is.
type ServerInfo struct {
	Version       string `json:"version"`
	APIVersion    string `json:"api_version"`
	CAFingerprint string `json:"ca_fingerprint"`
	Store         string `json:"store"`
}
