package agent

import (
	"github.com/kumocloud/kumo/api"
	"github.com/kumocloud/kumo/internal/driver"
)

// hostCapabilities is what the agent tells the server its driver can do
// on host h, for each kind h offers: the server refuses what the driver
// cannot do (a live migration) before anything starts, rather than
// finding out from a failed transfer.
func hostCapabilities(d driver.Driver, h api.HostSpec) map[string][]string {
	all := d.Capabilities().Names()
	out := make(map[string][]string, len(h.Kinds))
	for _, k := range h.Kinds {
		if all[k] == nil {
			all[k] = []string{}
		}
		out[k] = all[k]
	}
	return out
}
