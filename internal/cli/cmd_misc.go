package cli

import (
	"fmt"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	"github.com/kumocloud/kumo/api"
	"github.com/kumocloud/kumo/client"
	"github.com/kumocloud/kumo/internal/metering"
)

func (a *app) tokenCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "token", Aliases: []string{"tokens"}, Short: "Manage API tokens"}
	var desc string
	var ttl time.Duration
	var pwStdin bool
	var user string
	var wait bool
	create := &cobra.Command{
		Use: "create", Short: "Make a new token (for yourself; or, with --user and a password, for that user)", Args: cobra.NoArgs,
		Example: "  kumo token create --description ci --ttl 720h -o json\n  echo \"$PW\" | kumo token create --user alice --password-stdin",
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			req := api.TokensPost{Description: desc, TTLSeconds: int64(ttl.Seconds())}
			if user != "" {
				pw, err := a.readPassword(pwStdin, false)
				if err != nil {
					return err
				}
				req.Username, req.Password = user, pw
			}
			tok, err := c.Login(cmd.Context(), req)
			if err != nil {
				return err
			}
			if ttl > 0 && tok.Parent != "" && time.Until(tok.ExpiresAt) < ttl-time.Minute {
				fmt.Fprintf(a.stderr, "note: a token made with your token expires no later than it (%s); for a longer one, log in for it: --user %s --password-stdin\n", tok.ExpiresAt.Format(time.RFC3339), tok.User)
			}
			if a.output == "table" {
				fmt.Fprintf(a.stdout, "token %s for %s, expires %s\nsecret (shown once): %s\n", tok.ID, tok.User, tok.ExpiresAt.Format(time.RFC3339), tok.Secret)
				return nil
			}
			return a.printObject(tok)
		},
	}
	create.Flags().StringVar(&desc, "description", "", "what the token is for")
	create.Flags().DurationVar(&ttl, "ttl", 0, "lifetime, e.g. 24h (default: the server's); a token made with your token expires no later than it, and is revoked with it")
	create.Flags().StringVar(&user, "user", "", "make the token for this user (needs their password)")
	create.Flags().BoolVar(&pwStdin, "password-stdin", false, "with --user: read the password from standard input")
	waitFlag(create, &wait, "accepted for scripts (tokens are made at once)")

	var all bool
	list := &cobra.Command{
		Use: "list", Short: "List your tokens", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			ts, err := c.Tokens(cmd.Context(), all)
			if err != nil {
				return err
			}
			return printList(a, ts, []column[api.Token]{
				col("ID", func(t api.Token) string { return t.ID }),
				col("USER", func(t api.Token) string { return t.User }),
				col("DESCRIPTION", func(t api.Token) string { return t.Description }),
				col("EXPIRES", func(t api.Token) string { return t.ExpiresAt.Local().Format("2006-01-02 15:04") }),
				col("REVOKED", func(t api.Token) string { return strconv.FormatBool(t.Revoked) }),
			})
		},
	}
	list.Flags().BoolVar(&all, "all", false, "everyone's tokens (cloud admin)")
	revoke := &cobra.Command{
		Use: "revoke ID", Short: "Revoke a token at once", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			t, err := c.RevokeToken(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if a.output == "table" {
				fmt.Fprintf(a.stdout, "token %s revoked\n", t.ID)
				return nil
			}
			return a.printObject(t)
		},
	}
	cmd.AddCommand(create, list, revoke)
	return cmd
}

func (a *app) flavorCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "flavor", Aliases: []string{"flavors"}, Short: "Instance types: sizes and prices"}
	list := listCmd(a, "List flavors", (*client.Client).Flavors, []column[api.Flavor]{
		col("NAME", func(f api.Flavor) string { return f.Name }),
		col("VCPUS", func(f api.Flavor) string { return strconv.FormatInt(f.VCPUs, 10) }),
		col("MEMORY MIB", func(f api.Flavor) string { return strconv.FormatInt(f.MemoryMiB, 10) }),
		col("DISK GIB", func(f api.Flavor) string { return strconv.FormatInt(f.DiskGiB, 10) }),
		col("PRICE/HOUR", func(f api.Flavor) string { return metering.FormatMicro(f.PriceMicro) }),
		col("DESCRIPTION", func(f api.Flavor) string { return f.Description }),
	})
	show := &cobra.Command{
		Use: "show NAME", Short: "Show a flavor", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			f, err := c.Flavor(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			return a.printObject(f)
		},
	}
	var req api.FlavorsPost
	var labels []string
	var price string
	var wait bool
	create := &cobra.Command{
		Use: "create NAME --vcpus N --memory MIB --disk GIB [--price P]", Short: "Create a flavor (cloud admin)", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			req.Name = args[0]
			if req.PriceMicro, err = metering.ParseMicro(price); err != nil {
				return usagef("--price-per-hour: %v", err)
			}
			if req.Labels, err = parseLabels(labels); err != nil {
				return err
			}
			f, err := c.CreateFlavor(cmd.Context(), req)
			if err != nil {
				return err
			}
			return a.printObject(f)
		},
	}
	create.Flags().Int64Var(&req.VCPUs, "vcpus", 1, "virtual CPUs")
	create.Flags().Int64Var(&req.MemoryMiB, "memory", 1024, "memory in MiB")
	create.Flags().Int64Var(&req.DiskGiB, "disk", 10, "root disk in GiB")
	create.Flags().Int64Var(&req.SwapMiB, "swap", 0, "swap in MiB: a swap disk for VMs, swap beyond memory for containers")
	create.Flags().StringVar(&price, "price-per-hour", "0", "price per hour in the cloud's currency, e.g. 0.023")
	create.Flags().StringVar(&req.Description, "description", "", "description")
	create.Flags().StringArrayVarP(&labels, "label", "l", nil, "label KEY=VALUE (repeatable)")
	create.Flags().BoolVar(&req.Nesting, "nesting", false, "containers of this flavor may make user namespaces, to run containers inside")
	create.Flags().BoolVar(&req.HA, "ha", false, "instances of this flavor are highly available (docs/ha.md)")
	waitFlag(create, &wait, "accepted for scripts (flavors are made at once)")
	del := &cobra.Command{
		Use: "delete NAME", Short: "Delete a flavor (cloud admin)", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			return c.DeleteFlavor(cmd.Context(), args[0])
		},
	}
	var fprice, feff string
	set := &cobra.Command{
		Use: "set NAME --price-per-hour P [--effective TIME]", Short: "Change a flavor's price from now (or a later time) on (cloud admin)", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			put, err := pricePut(fprice, feff)
			if err != nil {
				return err
			}
			f, err := c.SetFlavorPrice(cmd.Context(), args[0], put)
			if err != nil {
				return err
			}
			return a.printObject(f)
		},
	}
	set.Flags().StringVar(&fprice, "price-per-hour", "", "new price per hour, e.g. 0.012")
	set.Flags().StringVar(&feff, "effective", "", "from when (RFC 3339; default now)")
	set.MarkFlagRequired("price-per-hour")
	cmd.AddCommand(list, show, create, del, set)
	return cmd
}

func (a *app) operationCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "operation", Aliases: []string{"operations", "op"}, Short: "Long-running work and how it went"}
	var allProjects bool
	var lim int
	list := &cobra.Command{
		Use: "list", Short: "List operations of the current project", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			project := ""
			if !allProjects {
				if project, err = a.projectName(cmd.Context()); err != nil {
					return err
				}
			}
			ops, err := c.Operations(cmd.Context(), project, client.ListOptions{Limit: lim})
			if err != nil {
				return err
			}
			return printList(a, ops, []column[api.Operation]{
				col("ID", func(o api.Operation) string { return o.ID }),
				col("PROJECT", func(o api.Operation) string { return o.Project }),
				col("DESCRIPTION", func(o api.Operation) string { return o.Description }),
				col("STATUS", func(o api.Operation) string { return o.Status }),
				col("PROGRESS", func(o api.Operation) string { return strconv.Itoa(o.Progress) + "%" }),
				col("ACTOR", func(o api.Operation) string { return o.Actor }),
				col("AGE", func(o api.Operation) string { return age(o.CreatedAt) }),
				col("ERROR", func(o api.Operation) string { return o.Error }),
			})
		},
	}
	list.Flags().BoolVar(&allProjects, "all-projects", false, "every project you can see")
	list.Flags().IntVar(&lim, "limit", 0, "show at most this many")
	show := &cobra.Command{
		Use: "show ID", Short: "Show an operation", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			op, err := c.Operation(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			return a.printObject(op)
		},
	}
	wait := &cobra.Command{
		Use: "wait ID", Short: "Wait for an operation to end; fails if it failed", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			op, err := c.WaitOperation(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			return a.printObject(op)
		},
	}
	cmd.AddCommand(list, show, wait)
	return cmd
}

func (a *app) eventCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "event", Aliases: []string{"events"}, Short: "What happened in the cloud"}
	var types []string
	var since int64
	var allProjects, noFollow bool
	watch := &cobra.Command{
		Use: "watch", Short: "Stream events as they happen (Ctrl-C stops)", Args: cobra.NoArgs,
		Example: "  kumo event watch\n  kumo event watch --type project,operation --all-projects\n  kumo event watch --since 1234 --no-follow -o json",
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			q := client.EventQuery{Types: types, Since: since, NoFollow: noFollow}
			if !allProjects {
				if q.Project, err = a.projectName(cmd.Context()); err != nil {
					return err
				}
			}
			return c.Events(cmd.Context(), q, func(ev api.Event) error {
				switch a.output {
				case "json":
					return a.printCompactJSON(ev)
				case "yaml":
					fmt.Fprintln(a.stdout, "---")
					return a.printData(ev)
				}
				fmt.Fprintln(a.stdout, termSafe(fmt.Sprintf("%-8d %s  %-10s %-9s %-10s %-40s by %s", ev.ID, ev.Time.Local().Format("15:04:05.000"), ev.Type, ev.Action, ev.Project, ev.Resource, ev.Actor)))
				return nil
			})
		},
	}
	watch.Flags().StringSliceVar(&types, "type", nil, "only these event types (project, user, token, flavor, operation...)")
	watch.Flags().Int64Var(&since, "since", 0, "replay events after this event id first")
	watch.Flags().BoolVar(&allProjects, "all-projects", false, "events of every project you can see (and, as cloud admin, users and flavors)")
	watch.Flags().BoolVar(&noFollow, "no-follow", false, "print the kept events and stop")
	cmd.AddCommand(watch)
	return cmd
}
