package api

// ServerInfo is the answer of GET /v1: what this server is.
type ServerInfo struct {
	Version       string `json:"version"`
	APIVersion    string `json:"api_version"`
	CAFingerprint string `json:"ca_fingerprint"`
	Store         string `json:"store"`
	// StoreRevision is the store's revision now: the number of writes
	// since the cloud began (benchmarks count writes with it).
	StoreRevision int64 `json:"store_revision"`
	// EventsAfter is an event ID no event yet has: resuming the event
	// stream from it gives what happens from now on.
	EventsAfter int64 `json:"events_after"`
}
