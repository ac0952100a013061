package cli

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/kumocloud/kumo/api"
)

// migrateCmd is 'kumo instance migrate'.
func (a *app) migrateCmd() *cobra.Command {
	var req api.InstanceMigrate
	var live, cold, wait, cancel bool
	cmd := &cobra.Command{
		Use:   "migrate NAME [--host H] [--live|--cold] [--wait] | NAME --cancel",
		Short: "Move an instance to another host (live for a running VM, cold otherwise); --cancel aborts the move under way",
		Long: "The scheduler chooses the target unless --host names one (every filter applies: 'kumo instance explain NAME --migrate' says why each host can or cannot take it). " +
			"Its volumes of a local pool go with it (live: mirrored; cold: their files and snapshots streamed: a VM whose volume has snapshots moves cold), those of a shared pool need no copy. " +
			"The instance passes through MIGRATE; its history records each stage. A failure or --cancel leaves it on its source. docs/migration.md says more.",
		Example: "  kumo instance migrate vm1 --wait\n  kumo instance migrate vm1 --host node2 --cold\n  kumo instance migrate vm1 --cancel",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if live && cold {
				return usagef("--live and --cold exclude each other")
			}
			c, project, err := a.clientAndProject(cmd)
			if err != nil {
				return err
			}
			if cancel {
				in, err := c.CancelMigration(cmd.Context(), project, args[0])
				if err != nil {
					return err
				}
				if a.output == "table" {
					fmt.Fprintf(a.stdout, "cancel asked: %s stays on %s (its history will say when)\n", in.Name, in.Host)
					return nil
				}
				return a.printObject(in)
			}
			if live {
				req.Mode = api.MigrateLive
			}
			if cold {
				req.Mode = api.MigrateCold
			}
			op, err := c.MigrateInstance(cmd.Context(), project, args[0], req)
			if err != nil {
				return err
			}
			if !wait {
				return a.finishOperation(cmd.Context(), op, false)
			}
			if _, err := a.followOperation(cmd.Context(), c, op); err != nil {
				return err
			}
			in, err := c.Instance(cmd.Context(), project, args[0])
			if err != nil {
				return err
			}
			if a.output == "table" {
				fmt.Fprintf(a.stdout, "%s is %s on %s\n", in.Name, in.State, in.Home)
				return nil
			}
			return a.printObject(in)
		},
	}
	cmd.Flags().StringVar(&req.Host, "host", "", "the target host (default: the scheduler's choice)")
	cmd.Flags().BoolVar(&live, "live", false, "move it while it runs (refused up front where the host's driver cannot: containers have no checkpoint/restore here; see host show's capabilities)")
	cmd.Flags().BoolVar(&cold, "cold", false, "stop (or save) it, move its disks and state, start it there")
	cmd.Flags().IntVar(&req.TimeoutSeconds, "timeout", 0, "abandon the move after this many seconds (default 600)")
	cmd.Flags().BoolVar(&cancel, "cancel", false, "abort the migration under way")
	waitFlag(cmd, &wait, "follow the migration's progress until it ends")
	return cmd
}

// evacuateCmd is 'kumo host evacuate'.
func (a *app) evacuateCmd() *cobra.Command {
	var concurrency int
	var dry, noWait bool
	cmd := &cobra.Command{
		Use:   "evacuate HOST [--concurrency N] [--dry-run]",
		Short: "Disable a host and migrate every instance off it (live where it can, cold otherwise)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			if dry {
				plan, err := c.EvacuationPlan(cmd.Context(), args[0])
				if err != nil {
					return err
				}
				if a.output != "table" {
					return a.printObject(plan)
				}
				return printList(a, plan.Moves, []column[api.EvacuationMove]{
					col("PROJECT", func(m api.EvacuationMove) string { return m.Project }),
					col("INSTANCE", func(m api.EvacuationMove) string { return m.Instance }),
					col("TARGET", func(m api.EvacuationMove) string { return m.Target }),
					col("MODE", func(m api.EvacuationMove) string { return m.Mode }),
					col("REASON", func(m api.EvacuationMove) string { return m.Reason }),
				})
			}
			op, err := c.EvacuateHost(cmd.Context(), args[0], concurrency)
			if err != nil {
				return err
			}
			if noWait {
				return a.finishOperation(cmd.Context(), op, false)
			}
			done, err := a.followOperation(cmd.Context(), c, op)
			if err != nil {
				return err
			}
			if a.output == "table" {
				fmt.Fprintf(a.stdout, "%s: done; %s is disabled and empty\n", done.Description, args[0])
				return nil
			}
			return a.printObject(done)
		},
	}
	cmd.Flags().IntVar(&concurrency, "concurrency", 2, "migrations at once")
	cmd.Flags().BoolVar(&dry, "dry-run", false, "print where each instance would go; move nothing")
	cmd.Flags().BoolVar(&noWait, "no-wait", false, "print the operation and return ('kumo operation wait ID' follows it)")
	return cmd
}
