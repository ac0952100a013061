package cli

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/kumocloud/kumo/api"
	"github.com/kumocloud/kumo/internal/metering"
)

func (a *app) usageCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "usage", Short: "What projects used and what it cost (metered per second from instance history and the storage ledger)"}
	var from, to, month, by string
	var all bool
	show := &cobra.Command{
		Use: "show", Short: "Usage and cost over a range", Args: cobra.NoArgs,
		Example: "  kumo usage show --project web --from 2026-11-01 --to 2026-11-24\n  kumo usage show --project web --by instance -o csv > nov.csv\n  kumo usage show --all-projects --by project --month 2026-11",
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			if month != "" {
				m, err := time.Parse("2006-01", month)
				if err != nil {
					return usagef("--month %q: want YYYY-MM", month)
				}
				end := m.AddDate(0, 1, 0)
				if now := time.Now().UTC(); end.After(now) {
					end = now
				}
				from, to = m.Format(time.RFC3339), end.Format(time.RFC3339)
			}
			if to == "" {
				to = time.Now().UTC().Format(time.RFC3339Nano)
			}
			if from == "" {
				return usagef("give --from (and --to), or --month")
			}
			var rep api.UsageReport
			if all {
				if by == "" {
					by = "project"
				}
				rep, err = c.Usage(cmd.Context(), "", from, to, by)
			} else {
				project, perr := a.projectName(cmd.Context())
				if perr != nil {
					return perr
				}
				if by == "" {
					by = "instance"
				}
				rep, err = c.Usage(cmd.Context(), project, from, to, by)
			}
			if err != nil {
				return err
			}
			if a.output == "json" || a.output == "yaml" {
				return a.printObject(rep)
			}
			lines := append(rep.Groups, rep.Total)
			if err := printList(a, lines, []column[api.UsageLine]{
				col(strings.ToUpper(rep.GroupBy), func(l api.UsageLine) string { return l.Key }),
				col("INSTANCE HOURS", func(l api.UsageLine) string { return strconv.FormatFloat(float64(l.InstanceSeconds)/3600, 'f', 3, 64) }),
				col("VCPU HOURS", func(l api.UsageLine) string { return strconv.FormatFloat(l.VCPUHours, 'f', 3, 64) }),
				col("MEMORY GIB HOURS", func(l api.UsageLine) string { return strconv.FormatFloat(l.MemoryGiBHours, 'f', 3, 64) }),
				col("STORAGE GIB HOURS", func(l api.UsageLine) string { return strconv.FormatFloat(l.StorageGiBHours, 'f', 3, 64) }),
				col("VOLUME GIB HOURS", func(l api.UsageLine) string { return strconv.FormatFloat(l.VolumeGiBHours, 'f', 3, 64) }),
				col("SNAPSHOT GIB HOURS", func(l api.UsageLine) string { return strconv.FormatFloat(l.SnapshotGiBHours, 'f', 3, 64) }),
				col("BACKUP GIB HOURS", func(l api.UsageLine) string { return strconv.FormatFloat(l.BackupGiBHours, 'f', 3, 64) }),
				col("COST "+rep.Currency, func(l api.UsageLine) string { return l.Cost }),
			}); err != nil {
				return err
			}
			if a.output == "table" {
				fmt.Fprintf(a.stdout, "\n%s to %s\n", rep.From.Format(time.RFC3339), rep.To.Format(time.RFC3339))
			}
			return nil
		},
	}
	f := show.Flags()
	f.StringVar(&from, "from", "", "start (RFC 3339 or YYYY-MM-DD)")
	f.StringVar(&to, "to", "", "end (default: now)")
	f.StringVar(&month, "month", "", "a calendar month YYYY-MM (up to now)")
	f.StringVar(&by, "by", "", "group by instance, flavor, day or project (none: totals)")
	f.BoolVar(&all, "all-projects", false, "every project (cloud admin)")
	cmd.AddCommand(show)
	return cmd
}

func (a *app) priceCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "price", Aliases: []string{"prices"}, Short: "Prices and charging rules"}
	show := &cobra.Command{
		Use: "show", Short: "Current prices, price history and charging rules", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			p, err := c.Prices(cmd.Context())
			if err != nil {
				return err
			}
			if a.output != "table" {
				return a.printObject(p)
			}
			type row struct{ what, price, since string }
			var rows []row
			names := make([]string, 0, len(p.Flavors))
			for n := range p.Flavors {
				names = append(names, n)
			}
			sort.Strings(names)
			add := func(what string, pts []api.PricePoint) {
				for _, pt := range pts {
					since := "always"
					if !pt.Effective.IsZero() {
						since = pt.Effective.Local().Format(time.RFC3339)
					}
					rows = append(rows, row{what, metering.FormatMicro(pt.Micro), since})
				}
			}
			for _, n := range names {
				add("flavor "+n+" (per hour)", p.Flavors[n])
			}
			add("storage (per GiB-hour)", p.Storage)
			add("volumes (per GiB-hour)", p.Volumes)
			add("volume snapshots (per GiB-hour)", p.Snapshots)
			add("volume backups (per GiB-hour)", p.Backups)
			if err := printList(a, rows, []column[row]{
				col("WHAT", func(r row) string { return r.what }),
				col("PRICE "+p.Currency, func(r row) string { return r.price }),
				col("SINCE", func(r row) string { return r.since }),
			}); err != nil {
				return err
			}
			fmt.Fprintf(a.stdout, "\nbilled as compute: %s\nbilled as storage: %s\nother states bill nothing\n", joinStates(p.ComputeStates), joinStates(p.StorageStates))
			return nil
		},
	}
	var storage, eff string
	kinds := map[string]*string{"volumes": new(string), "volume-snapshots": new(string), "volume-backups": new(string)}
	set := &cobra.Command{
		Use:   "set [--storage-per-gib-hour P] [--volume-per-gib-hour P] [--snapshot-per-gib-hour P] [--backup-per-gib-hour P] [--effective TIME]",
		Short: "Change the price of stored disks and images, volumes, volume snapshots or volume backups (cloud admin)", Args: cobra.NoArgs,
		Example: "  kumo price set --storage-per-gib-hour 0.0001\n  kumo price set --volume-per-gib-hour 0.00015 --backup-per-gib-hour 0.00005",
		RunE: func(cmd *cobra.Command, _ []string) error {
			if storage == "" && *kinds["volumes"] == "" && *kinds["volume-snapshots"] == "" && *kinds["volume-backups"] == "" {
				return usagef("give a price: --storage-per-gib-hour, --volume-per-gib-hour, --snapshot-per-gib-hour or --backup-per-gib-hour")
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			var p api.Prices
			if storage != "" {
				put, err := pricePut(storage, eff)
				if err != nil {
					return err
				}
				if p, err = c.SetStoragePrice(cmd.Context(), put); err != nil {
					return err
				}
			}
			for _, k := range metering.PricedKinds {
				if *kinds[k.Name] == "" {
					continue
				}
				put, err := pricePut(*kinds[k.Name], eff)
				if err != nil {
					return err
				}
				if p, err = c.SetKindPrice(cmd.Context(), k.Name, put); err != nil {
					return err
				}
			}
			return a.printObject(map[string]any{"storage": p.Storage, "volumes": p.Volumes, "volume_snapshots": p.Snapshots, "volume_backups": p.Backups})
		},
	}
	set.Flags().StringVar(&storage, "storage-per-gib-hour", "", "price per GiB-hour of stored disk (instances billed as storage) and images")
	set.Flags().StringVar(kinds["volumes"], "volume-per-gib-hour", "", "price per GiB-hour of a volume's provisioned size")
	set.Flags().StringVar(kinds["volume-snapshots"], "snapshot-per-gib-hour", "", "price per GiB-hour of a volume snapshot")
	set.Flags().StringVar(kinds["volume-backups"], "backup-per-gib-hour", "", "price per GiB-hour of what a volume backup stores")
	set.Flags().StringVar(&eff, "effective", "", "from when (RFC 3339; default now)")
	var compute, stor []string
	rules := &cobra.Command{
		Use: "rules --compute STATES --storage STATES", Short: "Change which states bill compute or storage (cloud admin)", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			p, err := c.SetRules(cmd.Context(), api.RulesPut{ComputeStates: statesOf(compute), StorageStates: statesOf(stor)})
			if err != nil {
				return err
			}
			return a.printObject(map[string]any{"compute_states": p.ComputeStates, "storage_states": p.StorageStates})
		},
	}
	rules.Flags().StringSliceVar(&compute, "compute", stateNames(metering.DefaultComputeStates), "states billed at the flavor's price")
	rules.Flags().StringSliceVar(&stor, "storage", stateNames(metering.DefaultStorageStates), "states billed for storage only")
	cmd.AddCommand(show, set, rules)
	return cmd
}

func pricePut(amount, eff string) (api.PricePut, error) {
	m, err := metering.ParseMicro(amount)
	if err != nil {
		return api.PricePut{}, usagef("price: %v", err)
	}
	put := api.PricePut{Micro: m}
	if eff != "" {
		t, err := time.Parse(time.RFC3339, eff)
		if err != nil {
			return put, usagef("--effective %q: want RFC 3339", eff)
		}
		put.EffectiveAt = t
	}
	return put, nil
}

// statesOf and stateNames convert state lists from and to flags.
func statesOf(names []string) []api.State {
	out := make([]api.State, len(names))
	for i, n := range names {
		out[i] = api.State(strings.ToUpper(n))
	}
	return out
}

func stateNames(states []api.State) []string {
	out := make([]string, len(states))
	for i, s := range states {
		out[i] = string(s)
	}
	return out
}

func joinStates(states []api.State) string { return strings.Join(stateNames(states), ", ") }
