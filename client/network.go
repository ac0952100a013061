package client

import (
	"context"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/kumocloud/kumo/api"
)

// Networks lists the project's networks and the shared ones.
func (c *Client) Networks(ctx context.Context, project string) ([]api.Network, error) {
	var out api.List[api.Network]
	return out.Items, c.do(ctx, http.MethodGet, p("v1", "projects", project, "networks"), nil, nil, &out)
}

// CreateNetwork creates a network with its subnet.
func (c *Client) CreateNetwork(ctx context.Context, project string, req api.NetworksPost) (api.Network, error) {
	var out api.Network
	return out, c.do(ctx, http.MethodPost, p("v1", "projects", project, "networks"), nil, req, &out)
}

// Network shows a network ("owner/name" for another project's shared one).
func (c *Client) Network(ctx context.Context, project, name string) (api.Network, error) {
	var out api.Network
	return out, c.do(ctx, http.MethodGet, p("v1", "projects", project, "networks", name), nil, nil, &out)
}

// DeleteNetwork deletes a network without ports.
func (c *Client) DeleteNetwork(ctx context.Context, project, name string) error {
	return c.do(ctx, http.MethodDelete, p("v1", "projects", project, "networks", name), nil, nil, nil)
}

// Ports lists the project's ports, on one network if given.
func (c *Client) Ports(ctx context.Context, project, network string) ([]api.Port, error) {
	var q url.Values
	if network != "" {
		q = url.Values{"network": {network}}
	}
	var out api.List[api.Port]
	return out.Items, c.do(ctx, http.MethodGet, p("v1", "projects", project, "ports"), q, nil, &out)
}

// CreatePort allocates an address on a network.
func (c *Client) CreatePort(ctx context.Context, project string, req api.PortsPost) (api.Port, error) {
	var out api.Port
	return out, c.do(ctx, http.MethodPost, p("v1", "projects", project, "ports"), nil, req, &out)
}

// Port shows a port.
func (c *Client) Port(ctx context.Context, project, name string) (api.Port, error) {
	var out api.Port
	return out, c.do(ctx, http.MethodGet, p("v1", "projects", project, "ports", name), nil, nil, &out)
}

// DeletePort deletes a port, freeing its address.
func (c *Client) DeletePort(ctx context.Context, project, name string) error {
	return c.do(ctx, http.MethodDelete, p("v1", "projects", project, "ports", name), nil, nil, nil)
}

// SecurityGroups lists the project's security groups.
func (c *Client) SecurityGroups(ctx context.Context, project string) ([]api.SecurityGroup, error) {
	var out api.List[api.SecurityGroup]
	return out.Items, c.do(ctx, http.MethodGet, p("v1", "projects", project, "security-groups"), nil, nil, &out)
}

// CreateSecurityGroup creates a security group.
func (c *Client) CreateSecurityGroup(ctx context.Context, project string, req api.SecurityGroupsPost) (api.SecurityGroup, error) {
	var out api.SecurityGroup
	return out, c.do(ctx, http.MethodPost, p("v1", "projects", project, "security-groups"), nil, req, &out)
}

// SecurityGroup shows a security group with its rules.
func (c *Client) SecurityGroup(ctx context.Context, project, name string) (api.SecurityGroup, error) {
	var out api.SecurityGroup
	return out, c.do(ctx, http.MethodGet, p("v1", "projects", project, "security-groups", name), nil, nil, &out)
}

// DeleteSecurityGroup deletes a security group.
func (c *Client) DeleteSecurityGroup(ctx context.Context, project, name string) error {
	return c.do(ctx, http.MethodDelete, p("v1", "projects", project, "security-groups", name), nil, nil, nil)
}

// AddSecurityRule adds a rule to a group and returns the group.
func (c *Client) AddSecurityRule(ctx context.Context, project, group string, r api.SecurityRule) (api.SecurityGroup, error) {
	var out api.SecurityGroup
	return out, c.do(ctx, http.MethodPost, p("v1", "projects", project, "security-groups", group, "rules"), nil, r, &out)
}

// DeleteSecurityRule removes a rule (by id) from a group.
func (c *Client) DeleteSecurityRule(ctx context.Context, project, group, id string) (api.SecurityGroup, error) {
	var out api.SecurityGroup
	return out, c.do(ctx, http.MethodDelete, p("v1", "projects", project, "security-groups", group, "rules", id), nil, nil, &out)
}

// AgentNetworks is what an agent's hosts need of networks (agent only);
// the DNS names are left out if namesVersion, the version the agent has,
// is current.
func (c *Client) AgentNetworks(ctx context.Context, id, namesVersion string) (api.AgentNetworks, error) {
	return c.AgentNetworksWait(ctx, id, namesVersion, "", 0)
}

// AgentNetworksWait is AgentNetworks as a long poll: the server answers
// when the view's version is not version (the one the agent has), or
// after wait (at most 60 s), with the whole view either way.
func (c *Client) AgentNetworksWait(ctx context.Context, id, namesVersion, version string, wait time.Duration) (api.AgentNetworks, error) {
	var out api.AgentNetworks
	q := url.Values{}
	if namesVersion != "" {
		q.Set("names_version", namesVersion)
	}
	if version != "" {
		q.Set("version", version)
	}
	if wait > 0 {
		q.Set("wait", strconv.FormatFloat(wait.Seconds(), 'f', 1, 64))
	}
	return out, c.do(ctx, http.MethodGet, p("v1", "agents", id, "networks"), q, nil, &out)
}

// FloatingIPs lists the project's floating IPs.
func (c *Client) FloatingIPs(ctx context.Context, project string) ([]api.FloatingIP, error) {
	var out api.List[api.FloatingIP]
	return out.Items, c.do(ctx, http.MethodGet, p("v1", "projects", project, "floating-ips"), nil, nil, &out)
}

// CreateFloatingIP takes a floating IP from an external network.
func (c *Client) CreateFloatingIP(ctx context.Context, project string, req api.FloatingIPsPost) (api.FloatingIP, error) {
	var out api.FloatingIP
	return out, c.do(ctx, http.MethodPost, p("v1", "projects", project, "floating-ips"), nil, req, &out)
}

// FloatingIP shows a floating IP.
func (c *Client) FloatingIP(ctx context.Context, project, ip string) (api.FloatingIP, error) {
	var out api.FloatingIP
	return out, c.do(ctx, http.MethodGet, p("v1", "projects", project, "floating-ips", ip), nil, nil, &out)
}

// DeleteFloatingIP gives a floating IP back.
func (c *Client) DeleteFloatingIP(ctx context.Context, project, ip string) error {
	return c.do(ctx, http.MethodDelete, p("v1", "projects", project, "floating-ips", ip), nil, nil, nil)
}

// AttachFloatingIP attaches a floating IP to an instance.
func (c *Client) AttachFloatingIP(ctx context.Context, project, ip, instance string) (api.FloatingIP, error) {
	var out api.FloatingIP
	return out, c.do(ctx, http.MethodPost, p("v1", "projects", project, "floating-ips", ip, "attach"), nil, api.FloatingIPAttach{Instance: instance}, &out)
}

// DetachFloatingIP detaches a floating IP.
func (c *Client) DetachFloatingIP(ctx context.Context, project, ip string) (api.FloatingIP, error) {
	var out api.FloatingIP
	return out, c.do(ctx, http.MethodPost, p("v1", "projects", project, "floating-ips", ip, "detach"), nil, nil, &out)
}
