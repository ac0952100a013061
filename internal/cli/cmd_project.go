package cli

import (
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/kumocloud/kumo/api"
	"github.com/kumocloud/kumo/client"
	"github.com/kumocloud/kumo/internal/metering"
	"github.com/kumocloud/kumo/internal/quota"
)

func parseLabels(in []string) (map[string]string, error) {
	if len(in) == 0 {
		return nil, nil
	}
	out := map[string]string{}
	for _, l := range in {
		k, v, ok := strings.Cut(l, "=")
		if !ok || k == "" {
			return nil, usagef("label %q: want KEY=VALUE", l)
		}
		out[k] = v
	}
	return out, nil
}

func labelString(m map[string]string) string {
	var parts []string
	for k, v := range m {
		parts = append(parts, k+"="+v)
	}
	sort.Strings(parts)
	return strings.Join(parts, ",")
}

func age(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	d := time.Since(t).Round(time.Second)
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh", int(d.Hours()))
	}
	return fmt.Sprintf("%dd", int(d.Hours()/24))
}

func limit(used, lim int64) string {
	if lim < 0 {
		return fmt.Sprintf("%d/-", used)
	}
	return fmt.Sprintf("%d/%d", used, lim)
}

// listFlags adds --label and --limit.
func listFlags(cmd *cobra.Command, labels *[]string, lim *int) {
	cmd.Flags().StringArrayVarP(labels, "label", "l", nil, "only objects with this label KEY=VALUE (repeatable)")
	cmd.Flags().IntVar(lim, "limit", 0, "show at most this many")
}

func (a *app) listOptions(labels []string, lim int) (client.ListOptions, error) {
	l, err := parseLabels(labels)
	return client.ListOptions{Labels: l, Limit: lim}, err
}

func (a *app) projectCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "project", Aliases: []string{"projects"}, Short: "Manage projects (tenants), their quotas and members"}

	var desc, quotaSpec string
	var labels []string
	var wait bool
	create := &cobra.Command{
		Use:     "create NAME",
		Short:   "Create a project (cloud admin)",
		Example: "  kumo project create web --quota instances=10,vcpus=20,memory=20GiB",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			q, err := quota.ParseSpec(quotaSpec)
			if err != nil {
				return usagef("--quota: %v", err)
			}
			l, err := parseLabels(labels)
			if err != nil {
				return err
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			p, err := c.CreateProject(cmd.Context(), api.ProjectsPost{Name: args[0], Description: desc, Labels: l, Quota: q})
			if err != nil {
				return err
			}
			return a.printObject(p)
		},
	}
	create.Flags().StringVar(&desc, "description", "", "what the project is for")
	create.Flags().StringArrayVarP(&labels, "label", "l", nil, "label KEY=VALUE (repeatable)")
	create.Flags().StringVar(&quotaSpec, "quota", "", "quota limits, e.g. instances=10,vcpus=20,memory=20GiB,disk=500GiB (others take the server's defaults; -1 or unlimited lifts one)")
	waitFlag(create, &wait, "wait until the project exists (creation is immediate; accepted for scripts)")

	list := listCmd(a, "List the projects you can see", (*client.Client).Projects, []column[api.Project]{
		col("NAME", func(p api.Project) string { return p.Name }),
		col("INSTANCES", func(p api.Project) string { return limit(p.Usage.Instances, p.Quota.Instances) }),
		col("VCPUS", func(p api.Project) string { return limit(p.Usage.VCPUs, p.Quota.VCPUs) }),
		col("MEMORY MIB", func(p api.Project) string { return limit(p.Usage.MemoryMiB, p.Quota.MemoryMiB) }),
		col("LABELS", func(p api.Project) string { return labelString(p.Labels) }),
		col("AGE", func(p api.Project) string { return age(p.CreatedAt) }),
		col("DESCRIPTION", func(p api.Project) string { return p.Description }),
	})

	show := &cobra.Command{
		Use: "show [NAME]", Short: "Show a project with its quota and live usage", Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			name, err := a.nameOrProject(cmd, args)
			if err != nil {
				return err
			}
			p, err := a.c.Project(cmd.Context(), name)
			if err != nil {
				return err
			}
			return a.printObject(p)
		},
	}

	var sdesc, sbudget, scurrency string
	var slabels []string
	set := &cobra.Command{
		Use: "set NAME", Short: "Change a project's description or labels (project admin)", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			var patch api.ProjectPatch
			if cmd.Flags().Changed("description") {
				patch.Description = &sdesc
			}
			if cmd.Flags().Changed("label") {
				if patch.Labels, err = parseLabels(slabels); err != nil {
					return err
				}
				if patch.Labels == nil {
					patch.Labels = map[string]string{}
				}
			}
			if cmd.Flags().Changed("budget") {
				b, err := metering.ParseMicro(sbudget)
				if err != nil {
					return usagef("--budget: %v", err)
				}
				patch.BudgetMicro = &b
			}
			if cmd.Flags().Changed("currency") {
				patch.Currency = &scurrency
			}
			p, err := c.PatchProject(cmd.Context(), args[0], patch)
			if err != nil {
				return err
			}
			return a.printObject(p)
		},
	}
	set.Flags().StringVar(&sdesc, "description", "", "new description")
	set.Flags().StringVar(&sbudget, "budget", "", "monthly budget, e.g. 50.00 (0 removes it); events fire at 80 % and 100 %")
	set.Flags().StringVar(&scurrency, "currency", "", "the budget's currency (must be the cloud's)")
	set.Flags().StringArrayVarP(&slabels, "label", "l", nil, "the project's labels KEY=VALUE (repeatable; replaces all labels)")

	setQuota := &cobra.Command{
		Use: "set-quota NAME SPEC", Short: "Change quota limits (cloud admin)",
		Example: "  kumo project set-quota web instances=20,memory=40GiB\n  kumo project set-quota web floating-ips=unlimited",
		Args:    cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			q, err := quota.ParseSpec(args[1])
			if err != nil {
				return usagef("%v", err)
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			p, err := c.SetQuota(cmd.Context(), args[0], q)
			if err != nil {
				return err
			}
			return a.printObject(p)
		},
	}

	var dwait bool
	del := &cobra.Command{
		Use: "delete NAME", Short: "Delete an empty project (cloud admin)", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			op, err := c.DeleteProject(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			return a.finishOperation(cmd.Context(), op, dwait)
		},
	}
	waitFlag(del, &dwait, "wait until the project is gone")

	members := &cobra.Command{
		Use: "members [NAME]", Short: "List a project's members and their roles", Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			name, err := a.nameOrProject(cmd, args)
			if err != nil {
				return err
			}
			ms, err := a.c.Members(cmd.Context(), name)
			if err != nil {
				return err
			}
			return printList(a, ms, []column[api.Member]{
				col("USER", func(m api.Member) string { return m.User }),
				col("ROLE", func(m api.Member) string { return m.Role }),
			})
		},
	}
	cmd.AddCommand(create, list, show, set, setQuota, del, members)
	return cmd
}

// nameOrProject: the argument if given, else the current project.
func (a *app) nameOrProject(cmd *cobra.Command, args []string) (string, error) {
	if err := a.connect(); err != nil {
		return "", err
	}
	if len(args) == 1 {
		return args[0], nil
	}
	return a.projectName(cmd.Context())
}
