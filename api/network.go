package api

import "strings"

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
// the subnet's first address, the pool to the rest of it, DHCP to on, DNS
// to the gateway (the network's own DNS server; none for an external
// network).
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

// InstanceNIC is an instance's port on a network: the port the control
// plane made for it at create (named <instance>-eth<N>), with what a host
// needs to wire it. It lives and goes with the instance.
type InstanceNIC struct {
	Network   string   `json:"network"`
	NetworkID string   `json:"network_id"`
	Port      string   `json:"port"`
	PortID    string   `json:"port_id"`
	MAC       string   `json:"mac"`
	IP        string   `json:"ip"`
	VNI       int64    `json:"vni"`
	CIDR      string   `json:"cidr"`
	Gateway   string   `json:"gateway"`
	DNS       []string `json:"dns,omitempty"`
	DHCP      bool     `json:"dhcp"`
	// SecurityGroups filter the port's traffic (names in the instance's
	// project).
	SecurityGroups []string `json:"security_groups,omitempty"`
}

// Security rule directions and protocols.
const (
	Ingress = "ingress"
	Egress  = "egress"
)

// SecurityGroup is a set of allow rules applied to ports. A port accepts
// only the ingress its groups allow (plus replies to its own traffic) and
// sends only what their egress rules allow. Every project has a group
// "default" (made on first use) allowing ingress from its own members and
// all egress; instances created without groups get it.
type SecurityGroup struct {
	Meta
	Project     string         `json:"project"`
	Description string         `json:"description,omitempty"`
	Rules       []SecurityRule `json:"rules"`
}

// SecurityRule allows traffic of a protocol (tcp, udp, icmp or any), to a
// port range (tcp, udp), from (ingress) or to (egress) an IPv4 CIDR or the
// ports of a security group of the same project.
type SecurityRule struct {
	ID          string `json:"id"`
	Direction   string `json:"direction"`
	Protocol    string `json:"protocol"`
	PortMin     int    `json:"port_min,omitempty"`
	PortMax     int    `json:"port_max,omitempty"`
	RemoteCIDR  string `json:"remote_cidr,omitempty"`
	RemoteGroup string `json:"remote_group,omitempty"`
}

// SecurityGroupsPost creates a security group; a new group allows all
// egress and no ingress.
type SecurityGroupsPost struct {
	Name        string            `json:"name"`
	Description string            `json:"description,omitempty"`
	Labels      map[string]string `json:"labels,omitempty"`
}

// DNSDomain is the parent of networks' DNS domains: an instance NAME on
// network NET is NAME.NET.kumo.internal (and NAME) to the network's DNS
// server at its gateway. .internal is reserved for private use (ICANN,
// 2024): it is never delegated, so these names never shadow real ones.
const DNSDomain = "kumo.internal"

// NetworkDomain is the DNS domain of a network, named as an instance's
// NIC names it ("name", or "owner/name" for a shared one).
func NetworkDomain(network string) string {
	if _, name, ok := strings.Cut(network, "/"); ok {
		network = name
	}
	return network + "." + DNSDomain
}

// AgentNetworks is what an agent's hosts need of virtual networks: each
// network with ports on them, with the other hosts' tunnel endpoints and
// port MACs, and the local ports with their resolved security rules.
type AgentNetworks struct {
	Networks []AgentNetwork `json:"networks"`
	// Externals are the external networks of the local ports' floating
	// IPs.
	Externals []AgentExternal `json:"externals,omitempty"`
	// NamesVersion is a digest of every network's Names. When the agent
	// asked with this very version (?names_version=), the names are left
	// out: they have not changed since it last got them.
	NamesVersion string `json:"names_version"`
	// Version is a digest of the whole view (names by their version).
	// An agent that asks with it (?version=, and ?wait=) is answered
	// when the view differs from it, or at the end of the wait.
	Version string `json:"version"`
}

// AgentNetwork is one network as an agent's hosts need it.
type AgentNetwork struct {
	VNI     int64    `json:"vni"`
	CIDR    string   `json:"cidr"`
	Gateway string   `json:"gateway"`
	DNS     []string `json:"dns,omitempty"`
	DHCP    bool     `json:"dhcp"`
	// EgressNAT: the router lets the network out through the host.
	EgressNAT bool          `json:"egress_nat,omitempty"`
	Peers     []NetworkPeer `json:"peers"`
	Ports     []AgentPort   `json:"ports"`
	// Domain is the network's DNS domain (NetworkDomain).
	Domain string `json:"domain"`
	// Names are every instance port of the network, on any host, for its
	// DNS server; left out when unchanged (AgentNetworks.NamesVersion).
	Names []AgentName `json:"names,omitempty"`
}

// AgentName is an instance's name and address on a network.
type AgentName struct {
	Name string `json:"name"`
	IP   string `json:"ip"`
	// Project is the instance's project when it is not the network
	// owner's (a shared network): only that project's instances see the
	// name.
	Project string `json:"project,omitempty"`
}

// NetworkPeer is another host with ports on a network.
type NetworkPeer struct {
	Host string   `json:"host"`
	VTEP string   `json:"vtep"`
	MACs []string `json:"macs"`
}

// AgentPort is a port on one of an agent's hosts, with the rules its
// security groups resolve to (remote groups as their members' addresses).
type AgentPort struct {
	Host       string `json:"host"`
	Instance   string `json:"instance"`
	InstanceID string `json:"instance_id"`
	PortID     string `json:"port_id"`
	MAC        string `json:"mac"`
	IP         string `json:"ip"`
	FloatingIP string `json:"floating_ip,omitempty"`
	// FloatingVNI is the floating IP's external network.
	FloatingVNI int64          `json:"floating_vni,omitempty"`
	Rules       []ResolvedRule `json:"rules"`
}

// ResolvedRule is a security rule with its remote as CIDRs.
type ResolvedRule struct {
	Direction string   `json:"direction"`
	Protocol  string   `json:"protocol"`
	PortMin   int      `json:"port_min,omitempty"`
	PortMax   int      `json:"port_max,omitempty"`
	Remotes   []string `json:"remotes"`
}

// FloatingIP is an address of an external network that a project holds
// and may attach to an instance's port: traffic to it reaches the
// instance, and the instance's traffic out leaves with it (NAT on the
// instance's host, so it follows the instance).
type FloatingIP struct {
	Meta
	Project string `json:"project"`
	// Network is the external network ("owner/name").
	Network   string `json:"network"`
	NetworkID string `json:"network_id"`
	IP        string `json:"ip"`
	Instance  string `json:"instance,omitempty"`
	// InstanceID is the attached instance's id: a later instance of the
	// same name never inherits the address.
	InstanceID string `json:"instance_id,omitempty"`
	Port       string `json:"port,omitempty"`
	FixedIP    string `json:"fixed_ip,omitempty"`
	Host       string `json:"host,omitempty"`
}

// FloatingIPsPost takes a floating IP from an external network (a given
// address, or a free one).
type FloatingIPsPost struct {
	Network string `json:"network"`
	IP      string `json:"ip,omitempty"`
}

// FloatingIPAttach attaches a floating IP to an instance (its first port).
type FloatingIPAttach struct {
	Instance string `json:"instance"`
}

// AgentExternal is an external network a host needs for floating IPs.
type AgentExternal struct {
	Name    string `json:"name"`
	VNI     int64  `json:"vni"`
	CIDR    string `json:"cidr"`
	Gateway string `json:"gateway"`
}
