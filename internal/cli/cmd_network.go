package cli

import (
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/kumocloud/kumo/api"
)

func (a *app) networkCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "network", Aliases: []string{"networks", "net"}, Short: "Virtual networks: a layer-2 network (VXLAN between hosts) with an IPv4 subnet, DHCP and a metadata service"}
	var req api.NetworksPost
	var pools []string
	var noDHCP bool
	create := &cobra.Command{
		Use: "create NAME --subnet CIDR [--gateway IP] [--dns IP,...] [--pool START-END]... [--no-dhcp] [--shared] [--external]", Short: "Create a network with its subnet", Args: cobra.ExactArgs(1),
		Example: "  kumo network create app --subnet 10.20.0.0/24 --gateway 10.20.0.1 --dns 10.20.0.1",
		RunE: func(cmd *cobra.Command, args []string) error {
			c, project, err := a.clientAndProject(cmd)
			if err != nil {
				return err
			}
			req.Name = args[0]
			for _, p := range pools {
				s, e, ok := strings.Cut(p, "-")
				if !ok {
					return usagef("--pool %q: write START-END, e.g. 10.20.0.100-10.20.0.199", p)
				}
				req.Pools = append(req.Pools, api.IPRange{Start: s, End: e})
			}
			if noDHCP {
				off := false
				req.DHCP = &off
			}
			n, err := c.CreateNetwork(cmd.Context(), project, req)
			if err != nil {
				return err
			}
			return a.printObject(n)
		},
	}
	f := create.Flags()
	f.StringVar(&req.CIDR, "subnet", "", "the IPv4 subnet, e.g. 10.20.0.0/24")
	f.StringVar(&req.Gateway, "gateway", "", "the gateway address (default: the subnet's first)")
	f.StringSliceVar(&req.DNS, "dns", nil, "DNS servers handed out (default: the gateway, the network's own DNS server)")
	f.StringSliceVar(&pools, "pool", nil, "an allocation pool START-END (default: the whole subnet)")
	f.BoolVar(&noDHCP, "no-dhcp", false, "no DHCP on this network")
	f.BoolVar(&req.Shared, "shared", false, "every project may use it (cloud admin)")
	f.BoolVar(&req.External, "external", false, "an external network, for floating IPs (cloud admin)")
	list := &cobra.Command{
		Use: "list", Short: "The project's networks and the shared ones", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, project, err := a.clientAndProject(cmd)
			if err != nil {
				return err
			}
			ns, err := c.Networks(cmd.Context(), project)
			if err != nil {
				return err
			}
			return printList(a, ns, []column[api.Network]{
				col("NAME", func(n api.Network) string {
					if n.Project != project {
						return n.Project + "/" + n.Name
					}
					return n.Name
				}),
				col("SUBNET", func(n api.Network) string { return n.Subnet.CIDR }),
				col("GATEWAY", func(n api.Network) string { return n.Subnet.Gateway }),
				col("VNI", func(n api.Network) string { return strconv.FormatInt(n.VNI, 10) }),
				col("SHARED", func(n api.Network) string { return strconv.FormatBool(n.Shared) }),
				col("EXTERNAL", func(n api.Network) string { return strconv.FormatBool(n.External) }),
			})
		},
	}
	show := &cobra.Command{
		Use: "show NAME", Short: "Show a network (owner/name for a shared one)", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, project, err := a.clientAndProject(cmd)
			if err != nil {
				return err
			}
			n, err := c.Network(cmd.Context(), project, args[0])
			if err != nil {
				return err
			}
			return a.printObject(n)
		},
	}
	del := &cobra.Command{
		Use: "delete NAME", Short: "Delete a network without ports", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, project, err := a.clientAndProject(cmd)
			if err != nil {
				return err
			}
			return c.DeleteNetwork(cmd.Context(), project, args[0])
		},
	}
	cmd.AddCommand(create, list, show, del)
	return cmd
}

func (a *app) portCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "port", Aliases: []string{"ports"}, Short: "Ports: addresses allocated on networks (MAC derived from the address)"}
	var req api.PortsPost
	create := &cobra.Command{
		Use: "create NAME --network NET [--ip IP]", Short: "Allocate an address on a network", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, project, err := a.clientAndProject(cmd)
			if err != nil {
				return err
			}
			req.Name = args[0]
			p, err := c.CreatePort(cmd.Context(), project, req)
			if err != nil {
				return err
			}
			return a.printObject(p)
		},
	}
	create.Flags().StringVar(&req.Network, "network", "", "the network (owner/name for a shared one)")
	create.Flags().StringVar(&req.IP, "ip", "", "this address rather than a free one")
	var network string
	list := &cobra.Command{
		Use: "list [--network NET]", Short: "The project's ports: MAC, IP, instance, host", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, project, err := a.clientAndProject(cmd)
			if err != nil {
				return err
			}
			ps, err := c.Ports(cmd.Context(), project, network)
			if err != nil {
				return err
			}
			return printList(a, ps, []column[api.Port]{
				col("NAME", func(p api.Port) string { return p.Name }),
				col("NETWORK", func(p api.Port) string { return p.Network }),
				col("MAC", func(p api.Port) string { return p.MAC }),
				col("IP", func(p api.Port) string { return p.IP }),
				col("INSTANCE", func(p api.Port) string { return p.Instance }),
				col("HOST", func(p api.Port) string { return p.Host }),
			})
		},
	}
	list.Flags().StringVar(&network, "network", "", "only this network's ports")
	show := &cobra.Command{
		Use: "show NAME", Short: "Show a port", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, project, err := a.clientAndProject(cmd)
			if err != nil {
				return err
			}
			p, err := c.Port(cmd.Context(), project, args[0])
			if err != nil {
				return err
			}
			return a.printObject(p)
		},
	}
	del := &cobra.Command{
		Use: "delete NAME", Short: "Delete a port, freeing its address", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, project, err := a.clientAndProject(cmd)
			if err != nil {
				return err
			}
			return c.DeletePort(cmd.Context(), project, args[0])
		},
	}
	cmd.AddCommand(create, list, show, del)
	return cmd
}
