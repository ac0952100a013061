package cli

import (
	"github.com/spf13/cobra"

	"github.com/kumocloud/kumo/api"
)

func (a *app) floatingIPCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "floating-ip", Aliases: []string{"floating-ips", "fip"},
		Short: "Floating IPs: external addresses that reach an instance and that its traffic leaves with"}
	var req api.FloatingIPsPost
	create := &cobra.Command{
		Use: "create --network EXTERNAL [--ip IP]", Short: "Take an address from an external network", Args: cobra.NoArgs,
		Example: "  kumo floating-ip create --network public\n  kumo floating-ip attach 203.0.113.10 web-1",
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, project, err := a.clientAndProject(cmd)
			if err != nil {
				return err
			}
			f, err := c.CreateFloatingIP(cmd.Context(), project, req)
			if err != nil {
				return err
			}
			return a.printObject(f)
		},
	}
	create.Flags().StringVar(&req.Network, "network", "", "the external network")
	create.Flags().StringVar(&req.IP, "ip", "", "this address rather than a free one")
	list := &cobra.Command{
		Use: "list", Short: "The project's floating IPs", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, project, err := a.clientAndProject(cmd)
			if err != nil {
				return err
			}
			fs, err := c.FloatingIPs(cmd.Context(), project)
			if err != nil {
				return err
			}
			return printList(a, fs, []column[api.FloatingIP]{
				col("IP", func(f api.FloatingIP) string { return f.IP }),
				col("NETWORK", func(f api.FloatingIP) string { return f.Network }),
				col("INSTANCE", func(f api.FloatingIP) string { return f.Instance }),
				col("FIXED IP", func(f api.FloatingIP) string { return f.FixedIP }),
				col("HOST", func(f api.FloatingIP) string { return f.Host }),
			})
		},
	}
	one := func(use, short string, fn func(cmd *cobra.Command, args []string) (api.FloatingIP, error), nargs int) *cobra.Command {
		return &cobra.Command{Use: use, Short: short, Args: cobra.ExactArgs(nargs), RunE: func(cmd *cobra.Command, args []string) error {
			f, err := fn(cmd, args)
			if err != nil {
				return err
			}
			return a.printObject(f)
		}}
	}
	show := one("show IP", "Show a floating IP", func(cmd *cobra.Command, args []string) (api.FloatingIP, error) {
		c, project, err := a.clientAndProject(cmd)
		if err != nil {
			return api.FloatingIP{}, err
		}
		return c.FloatingIP(cmd.Context(), project, args[0])
	}, 1)
	attach := one("attach IP INSTANCE", "Attach a floating IP to an instance (its first port)", func(cmd *cobra.Command, args []string) (api.FloatingIP, error) {
		c, project, err := a.clientAndProject(cmd)
		if err != nil {
			return api.FloatingIP{}, err
		}
		return c.AttachFloatingIP(cmd.Context(), project, args[0], args[1])
	}, 2)
	detach := one("detach IP", "Detach a floating IP (the project keeps it)", func(cmd *cobra.Command, args []string) (api.FloatingIP, error) {
		c, project, err := a.clientAndProject(cmd)
		if err != nil {
			return api.FloatingIP{}, err
		}
		return c.DetachFloatingIP(cmd.Context(), project, args[0])
	}, 1)
	del := &cobra.Command{
		Use: "delete IP", Short: "Give a floating IP back", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, project, err := a.clientAndProject(cmd)
			if err != nil {
				return err
			}
			return c.DeleteFloatingIP(cmd.Context(), project, args[0])
		},
	}
	cmd.AddCommand(create, list, show, attach, detach, del)
	return cmd
}
