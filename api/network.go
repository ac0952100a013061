package api

// Subnet is a network's IPv4 address range.
type Subnet struct {
	CIDR    string `json:"cidr"`
	Gateway string `json:"gateway,omitempty"`
	// Pools are the ranges ports get addresses from (default: the whole
	// subnet but its network, broadcast and gateway addresses).
	Pools []IPRange `json:"allocation_pools,omitempty"`
	DNS   []string  `json:"dns,omitempty"`
	DHCP  bool      `json:"dhcp"`
}

// IPRange is an inclusive range of IPv4 addresses.
type IPRange struct {
	Start string `json:"start"`
	End   string `json:"end"`
}

// Network is a virtual layer-2 network with one IPv4 subnet. Shared
// networks may be used by every project; external ones carry floating IPs
// (both made by a cloud admin).
type Network struct {
	Meta
	Project  string `json:"project"`
	Shared   bool   `json:"shared"`
	External bool   `json:"external"`
	// VNI is the VXLAN identifier of the network between hosts.
	VNI    int64  `json:"vni"`
	Subnet Subnet `json:"subnet"`
}

// NetworksPost creates a network with its subnet. Gateway defaults to
// the subnet's first address, the pool to the rest of it, DHCP to on.
type NetworksPost struct {
	Name     string            `json:"name"`
	CIDR     string            `json:"cidr"`
	Gateway  string            `json:"gateway,omitempty"`
	Pools    []IPRange         `json:"allocation_pools,omitempty"`
	DNS      []string          `json:"dns,omitempty"`
	DHCP     *bool             `json:"dhcp,omitempty"`
	Shared   bool              `json:"shared,omitempty"`
	External bool              `json:"external,omitempty"`
	Labels   map[string]string `json:"labels,omitempty"`
}

// Port is an instance's (or a reserved) attachment to a network: its MAC
// and address, allocated by the control plane.
type Port struct {
	Meta
	Project string `json:"project"`
	// Network is the network's name, "owner/name" for another project's
	// shared network.
	Network  string `json:"network"`
	MAC      string `json:"mac"`
	IP       string `json:"ip"`
	Instance string `json:"instance,omitempty"`
	Host     string `json:"host,omitempty"`
}

// PortsPost creates a port; IP asks for a given address.
type PortsPost struct {
	Name    string            `json:"name"`
	Network string            `json:"network"`
	IP      string            `json:"ip,omitempty"`
	Labels  map[string]string `json:"labels,omitempty"`
}
