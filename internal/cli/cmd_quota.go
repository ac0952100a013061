package cli

import (
	"encoding/json"
	"strconv"

	"github.com/spf13/cobra"

	"github.com/kumocloud/kumo/api"
	"github.com/kumocloud/kumo/internal/quota"
)

// quotaRow is one quota resource of a project: what it uses of what it
// may.
type quotaRow struct {
	Resource string `json:"resource"`
	Used     int64  `json:"used"`
	Limit    int64  `json:"limit"`
}

// quotaRows lists every quota resource of a project, in API order.
func quotaRows(p api.Project) []quotaRow {
	asMap := func(c api.ResourceCounts) map[string]int64 {
		b, _ := json.Marshal(c)
		m := map[string]int64{}
		json.Unmarshal(b, &m)
		return m
	}
	used, lim := asMap(p.Usage), asMap(p.Quota)
	var rows []quotaRow
	for _, n := range quota.Names() {
		rows = append(rows, quotaRow{Resource: n, Used: used[n], Limit: lim[n]})
	}
	return rows
}

func (a *app) quotaCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "quota", Aliases: []string{"quotas"}, Short: "A project's quota: what it uses of each limit"}
	show := &cobra.Command{
		Use: "show [PROJECT]", Short: "Every quota resource of a project, used and limit", Args: cobra.MaximumNArgs(1),
		Example: "  kumo quota show\n  kumo quota show web -o json\n  kumo project set-quota web snapshots=50,backup-size=2TiB   # change (cloud admin)",
		RunE: func(cmd *cobra.Command, args []string) error {
			name, err := a.nameOrProject(cmd, args)
			if err != nil {
				return err
			}
			p, err := a.c.Project(cmd.Context(), name)
			if err != nil {
				return err
			}
			return printList(a, quotaRows(p), []column[quotaRow]{
				col("RESOURCE", func(r quotaRow) string { return r.Resource }),
				col("USED", func(r quotaRow) string { return strconv.FormatInt(r.Used, 10) }),
				col("LIMIT", func(r quotaRow) string {
					if r.Limit == quota.Unlimited {
						return "unlimited"
					}
					return strconv.FormatInt(r.Limit, 10)
				}),
			})
		},
	}
	cmd.AddCommand(show)
	return cmd
}
