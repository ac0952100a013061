package cli

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/kumocloud/kumo/api"
)

// cloudCmd is what concerns the whole cloud (cloud admin).
func (a *app) cloudCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "cloud", Short: "The cloud as a whole (cloud admin)"}
	var dryRun bool
	consolidate := &cobra.Command{
		Use:   "consolidate [--dry-run]",
		Short: "Empty the least-used hosts onto the others by migration, within allocation ratios and server groups (--dry-run: show the plan only)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			var plan api.Consolidation
			if dryRun {
				plan, err = c.Consolidation(cmd.Context())
			} else {
				plan, err = c.Consolidate(cmd.Context())
			}
			if err != nil {
				return err
			}
			if a.output != "table" {
				return a.printObject(plan)
			}
			if err := printList(a, plan.Moves, []column[api.ConsolidationMove]{
				col("INSTANCE", func(m api.ConsolidationMove) string { return m.Project + "/" + m.Instance }),
				col("FROM", func(m api.ConsolidationMove) string { return m.From }),
				col("TO", func(m api.ConsolidationMove) string { return m.To }),
				col("VCPUS", func(m api.ConsolidationMove) string { return fmt.Sprint(m.Size.VCPUs) }),
				col("MEMORY", func(m api.ConsolidationMove) string { return fmt.Sprintf("%d MiB", m.Size.MemoryMiB) }),
				col("ERROR", func(m api.ConsolidationMove) string { return m.Error }),
			}); err != nil {
				return err
			}
			what := "plan"
			if plan.Applied {
				what = "applied"
			}
			fmt.Fprintf(a.stdout, "\n%s: %d moves; hosts in use %d -> %d; emptied: %s\n", what, len(plan.Moves), plan.HostsInUse, plan.HostsAfter, orNone(plan.Emptied))
			for _, k := range plan.Kept {
				fmt.Fprintf(a.stdout, "kept %s: %s\n", termSafe(k.Host), termSafe(k.Reason))
			}
			return nil
		},
	}
	consolidate.Flags().BoolVar(&dryRun, "dry-run", false, "show the plan; move nothing")
	cmd.AddCommand(consolidate)
	return cmd
}

func orNone(xs []string) string {
	if len(xs) == 0 {
		return "none"
	}
	return strings.Join(xs, ", ")
}
