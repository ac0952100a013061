package cli

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/kumocloud/kumo/api"
)

func (a *app) securityGroupCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "security-group", Aliases: []string{"security-groups", "sg"},
		Short: "Security groups: allow rules for ports (ingress denied, egress allowed unless a rule says)"}
	var req api.SecurityGroupsPost
	create := &cobra.Command{
		Use: "create NAME [--description TEXT]", Short: "Create a security group (all egress, no ingress)", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, project, err := a.clientAndProject(cmd)
			if err != nil {
				return err
			}
			req.Name = args[0]
			g, err := c.CreateSecurityGroup(cmd.Context(), project, req)
			if err != nil {
				return err
			}
			return a.printObject(g)
		},
	}
	create.Flags().StringVar(&req.Description, "description", "", "what the group is for")
	list := &cobra.Command{
		Use: "list", Short: "The project's security groups", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, project, err := a.clientAndProject(cmd)
			if err != nil {
				return err
			}
			gs, err := c.SecurityGroups(cmd.Context(), project)
			if err != nil {
				return err
			}
			return printList(a, gs, []column[api.SecurityGroup]{
				col("NAME", func(g api.SecurityGroup) string { return g.Name }),
				col("RULES", func(g api.SecurityGroup) string { return strconv.Itoa(len(g.Rules)) }),
				col("DESCRIPTION", func(g api.SecurityGroup) string { return g.Description }),
			})
		},
	}
	show := &cobra.Command{
		Use: "show NAME", Short: "Show a security group with its rules", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, project, err := a.clientAndProject(cmd)
			if err != nil {
				return err
			}
			g, err := c.SecurityGroup(cmd.Context(), project, args[0])
			if err != nil {
				return err
			}
			return a.printGroup(g)
		},
	}
	del := &cobra.Command{
		Use: "delete NAME", Short: "Delete a security group no instance uses", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, project, err := a.clientAndProject(cmd)
			if err != nil {
				return err
			}
			return c.DeleteSecurityGroup(cmd.Context(), project, args[0])
		},
	}
	cmd.AddCommand(create, list, show, del, a.ruleCmd())
	return cmd
}

// printGroup shows a group as the table of its rules, or whole in JSON or
// YAML.
func (a *app) printGroup(g api.SecurityGroup) error {
	if a.output != "table" {
		return a.printObject(g)
	}
	return printList(a, g.Rules, ruleColumns)
}

var ruleColumns = []column[api.SecurityRule]{
	col("ID", func(r api.SecurityRule) string { return r.ID[:8] }),
	col("DIRECTION", func(r api.SecurityRule) string { return r.Direction }),
	col("PROTOCOL", func(r api.SecurityRule) string { return r.Protocol }),
	col("PORTS", func(r api.SecurityRule) string {
		switch {
		case r.PortMin == 0:
			return "any"
		case r.PortMin == r.PortMax:
			return strconv.Itoa(r.PortMin)
		}
		return fmt.Sprintf("%d-%d", r.PortMin, r.PortMax)
	}),
	col("REMOTE", func(r api.SecurityRule) string {
		if r.RemoteGroup != "" {
			return "group " + r.RemoteGroup
		}
		return r.RemoteCIDR
	}),
}

// portRange parses PORT or MIN-MAX.
func portRange(flag, v string) (int, int, error) {
	lo, hi, ok := strings.Cut(v, "-")
	if !ok {
		hi = lo
	}
	a, err1 := strconv.Atoi(lo)
	b, err2 := strconv.Atoi(hi)
	if err1 != nil || err2 != nil {
		return 0, 0, usagef("--%s %q: write a port (80) or a range (8000-8080)", flag, v)
	}
	return a, b, nil
}

func (a *app) ruleCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "rule", Short: "Add or remove a security group's rules"}
	var (
		ingress, egress, icmp, anyProto bool
		tcp, udp, remote, group         string
	)
	add := &cobra.Command{
		Use:   "add GROUP --ingress|--egress (--tcp PORTS | --udp PORTS | --icmp | --any) [--from CIDR | --from-group G]",
		Short: "Allow traffic: ingress from, or egress to, a CIDR or the members of a group",
		Example: `  kumo security-group rule add web --ingress --tcp 80 --from 0.0.0.0/0
  kumo security-group rule add db --ingress --tcp 5432 --from-group web
  kumo security-group rule add web --ingress --icmp`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, project, err := a.clientAndProject(cmd)
			if err != nil {
				return err
			}
			var r api.SecurityRule
			switch {
			case ingress == egress:
				return usagef("give one of --ingress or --egress")
			case ingress:
				r.Direction = api.Ingress
			default:
				r.Direction = api.Egress
			}
			n := 0
			for _, set := range []bool{tcp != "", udp != "", icmp, anyProto} {
				if set {
					n++
				}
			}
			if n != 1 {
				return usagef("give one of --tcp PORTS, --udp PORTS, --icmp or --any")
			}
			switch {
			case tcp != "":
				r.Protocol = "tcp"
				if r.PortMin, r.PortMax, err = portRange("tcp", tcp); err != nil {
					return err
				}
			case udp != "":
				r.Protocol = "udp"
				if r.PortMin, r.PortMax, err = portRange("udp", udp); err != nil {
					return err
				}
			case icmp:
				r.Protocol = "icmp"
			default:
				r.Protocol = "any"
			}
			r.RemoteCIDR, r.RemoteGroup = remote, group
			g, err := c.AddSecurityRule(cmd.Context(), project, args[0], r)
			if err != nil {
				return err
			}
			return a.printGroup(g)
		},
	}
	f := add.Flags()
	f.BoolVar(&ingress, "ingress", false, "traffic to the group's ports")
	f.BoolVar(&egress, "egress", false, "traffic from the group's ports")
	f.StringVar(&tcp, "tcp", "", "TCP to this port or range")
	f.StringVar(&udp, "udp", "", "UDP to this port or range")
	f.BoolVar(&icmp, "icmp", false, "ICMP")
	f.BoolVar(&anyProto, "any", false, "any protocol")
	f.StringVar(&remote, "from", "", "remote IPv4 CIDR (default 0.0.0.0/0); for egress, where to")
	f.StringVar(&remote, "to", "", "same as --from, reads better for egress")
	f.StringVar(&group, "from-group", "", "the ports of this security group as the remote")
	del := &cobra.Command{
		Use: "delete GROUP RULE-ID", Short: "Remove a rule (its ID, or the first 8 characters of it)", Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, project, err := a.clientAndProject(cmd)
			if err != nil {
				return err
			}
			_, err = c.DeleteSecurityRule(cmd.Context(), project, args[0], args[1])
			return err
		},
	}
	cmd.AddCommand(add, del)
	return cmd
}
