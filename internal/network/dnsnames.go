package network

import (
	"crypto/sha256"
	"encoding/hex"
	"slices"
	"strconv"
	"strings"

	"github.com/kumocloud/kumo/api"
)

// Names for the networks' DNS servers. Every host serving a network needs
// the names of all its instances, wherever they run, and agents fetch
// their view at least every 2 s and at every change (a long poll): so the
// names go with a version (a digest of all of them), and an agent that
// already has the current version gets none. A
// network of 10,000 ports is about 450 KB of names, sent to a host when a
// name on one of its networks comes, goes or moves, not every 2 s; what
// every fetch costs the server is sorting and hashing them: about 2 ms
// more per view of a 10,000-port network (BenchmarkAgentViewNames).

// dnsName is a placed port's DNS name: the instance's name, scoped to its
// project when that is not the network's owner (another project on a
// shared network, named "owner/name" by the NIC).
func dnsName(p PlacedNIC) api.AgentName {
	n := api.AgentName{Name: p.Instance, IP: p.NIC.IP}
	if owner, _, ok := strings.Cut(p.NIC.Network, "/"); ok && owner != p.Project {
		n.Project = p.Project
	}
	return n
}

// dnsNames sorts each network's names, and returns their version: the
// agent's own (known) if that is still current, in which case the names
// are left out.
func dnsNames(nets []api.AgentNetwork, known string) string {
	h := sha256.New()
	for i := range nets {
		n := &nets[i]
		slices.SortFunc(n.Names, func(a, b api.AgentName) int {
			if c := strings.Compare(a.Name, b.Name); c != 0 {
				return c
			}
			if c := strings.Compare(a.Project, b.Project); c != 0 {
				return c
			}
			return strings.Compare(a.IP, b.IP)
		})
		h.Write([]byte(strconv.FormatInt(n.VNI, 10) + " " + n.Domain + "\n"))
		for _, nm := range n.Names {
			// Names and projects are DNS labels, IPs dotted quads: no
			// separator can be forged into one.
			h.Write([]byte(nm.Name + " " + nm.Project + " " + nm.IP + "\n"))
		}
		h.Write([]byte("\n"))
	}
	version := hex.EncodeToString(h.Sum(nil)[:12])
	if version == known {
		for i := range nets {
			nets[i].Names = nil
		}
	}
	return version
}
