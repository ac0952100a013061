package cli

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/kumocloud/kumo/api"
	"github.com/kumocloud/kumo/client"
)

func roleList(u api.User) string {
	var parts []string
	for _, b := range u.Roles {
		parts = append(parts, b.Project+":"+b.Role)
	}
	return strings.Join(parts, ",")
}

func (a *app) userCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "user", Aliases: []string{"users"}, Short: "Manage users and their roles (cloud admin; project admins grant roles)"}

	var pwStdin, cloudAdmin, wait bool
	var defProject string
	create := &cobra.Command{
		Use: "create NAME", Short: "Create a user", Args: cobra.ExactArgs(1),
		Example: "  echo 's3cret-pass' | kumo user create alice --password-stdin --default-project web",
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			pw, err := a.readPassword(pwStdin, true)
			if err != nil {
				return err
			}
			u, err := c.CreateUser(cmd.Context(), api.UsersPost{Name: args[0], Password: pw, CloudAdmin: cloudAdmin, DefaultProject: defProject})
			if err != nil {
				return err
			}
			return a.printObject(u)
		},
	}
	create.Flags().BoolVar(&pwStdin, "password-stdin", false, "read the password from standard input")
	create.Flags().BoolVar(&cloudAdmin, "cloud-admin", false, "make the user a cloud admin (all projects, all rights)")
	create.Flags().StringVar(&defProject, "default-project", "", "project the CLI uses for this user unless told otherwise")
	waitFlag(create, &wait, "wait until the user exists (creation is immediate; accepted for scripts)")

	list := listCmd(a, "List users", (*client.Client).Users, []column[api.User]{
		col("NAME", func(u api.User) string { return u.Name }),
		col("CLOUD ADMIN", func(u api.User) string { return fmt.Sprint(u.CloudAdmin) }),
		col("DEFAULT PROJECT", func(u api.User) string { return u.DefaultProject }),
		col("ROLES", roleList),
		col("AGE", func(u api.User) string { return age(u.CreatedAt) }),
	})

	show := &cobra.Command{
		Use: "show NAME", Short: "Show a user", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			u, err := c.User(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			return a.printObject(u)
		},
	}
	del := &cobra.Command{
		Use: "delete NAME", Short: "Delete a user (their tokens stop working at once)", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			return c.DeleteUser(cmd.Context(), args[0])
		},
	}
	var grole string
	grant := &cobra.Command{
		Use: "grant NAME --project P --role admin|member|reader", Short: "Give a user a role in a project (replaces their role there)", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			project, err := a.projectName(cmd.Context())
			if err != nil {
				return err
			}
			m, err := c.SetMember(cmd.Context(), project, args[0], grole)
			if err != nil {
				return err
			}
			if a.output == "table" {
				fmt.Fprintf(a.stdout, "%s is now %s in project %s\n", m.User, m.Role, project)
				return nil
			}
			return a.printObject(m)
		},
	}
	grant.Flags().StringVar(&grole, "role", "", "admin, member or reader")
	grant.MarkFlagRequired("role")
	revoke := &cobra.Command{
		Use: "revoke NAME --project P", Short: "Take a user's role in a project away", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			project, err := a.projectName(cmd.Context())
			if err != nil {
				return err
			}
			return c.RemoveMember(cmd.Context(), project, args[0])
		},
	}
	var ppwStdin bool
	passwd := &cobra.Command{
		Use: "passwd NAME", Short: "Change a user's password (yours: give the current one; anyone's as cloud admin)",
		Long: "Change a user's password. Changing your own asks for the current password first (with\n" +
			"--password-stdin: the current password on the first line, the new one on the second).\n" +
			"Every other token of the user stops working; the one you are logged in with stays.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			me, err := c.Whoami(cmd.Context())
			if err != nil {
				return err
			}
			current := ""
			if me.Via != "socket" && (me.User == args[0] || !me.CloudAdmin) {
				if current, err = a.readSecret("Current password: ", ppwStdin, false); err != nil {
					return err
				}
			}
			pw, err := a.readSecret("New password: ", ppwStdin, true)
			if err != nil {
				return err
			}
			return c.ChangePassword(cmd.Context(), args[0], current, pw)
		},
	}
	passwd.Flags().BoolVar(&ppwStdin, "password-stdin", false, "read the passwords from standard input (your own: the current one, then the new one, a line each)")
	cmd.AddCommand(create, list, show, del, grant, revoke, passwd)
	return cmd
}
