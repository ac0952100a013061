package api

// Consolidation is a plan that empties the least-used hosts onto the
// others within their allocation ratios, keeping server groups (GET
// /v1/consolidation); POST /v1/consolidation applies it by migration.
type Consolidation struct {
	// HostsInUse run instances now; HostsAfter will once it is applied.
	HostsInUse int `json:"hosts_in_use"`
	HostsAfter int `json:"hosts_after"`
	// Emptied are the hosts the moves empty.
	Emptied []string            `json:"emptied"`
	Moves   []ConsolidationMove `json:"moves"`
	// Kept are hosts in use that stay so, with the reason.
	Kept []ConsolidationKept `json:"kept"`
	// Applied: the moves were carried out (each with its error if it
	// failed); false for a plan only.
	Applied bool `json:"applied"`
}

// ConsolidationMove is one instance moving.
type ConsolidationMove struct {
	Project  string `json:"project"`
	Instance string `json:"instance"`
	From     string `json:"from"`
	To       string `json:"to"`
	Size     Size   `json:"size"`
	Error    string `json:"error,omitempty"`
}

// ConsolidationKept is a host the plan does not empty, and why.
type ConsolidationKept struct {
	Host   string `json:"host"`
	Reason string `json:"reason"`
}
