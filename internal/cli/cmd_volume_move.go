package cli

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/kumocloud/kumo/api"
)

// volumeMoveCmd is 'kumo volume move': a detached local volume copied to
// another host through the server's backup store.
func (a *app) volumeMoveCmd() *cobra.Command {
	var req api.VolumeMove
	var wait bool
	cmd := &cobra.Command{
		Use:   "move NAME (--host H | --near INSTANCE) [--wait]",
		Short: "Move a detached volume of the local pool to another host",
		Long: "The volume's host backs it up to the server, the target host restores it, then the old copy goes.\n" +
			"Only detached volumes of the local pool without snapshots move; shared-dir volumes attach anywhere as they are.",
		Example: "  kumo volume move data --near web-2 --wait\n  kumo volume move data --host node-3",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, project, err := a.clientAndProject(cmd)
			if err != nil {
				return err
			}
			v, err := c.MoveVolume(cmd.Context(), project, args[0], req)
			if err != nil {
				return err
			}
			for wait && v.Status == api.VolumeMoving {
				select {
				case <-cmd.Context().Done():
					return cmd.Context().Err()
				case <-time.After(time.Second):
				}
				if v, err = c.Volume(cmd.Context(), project, args[0]); err != nil {
					return err
				}
			}
			if wait && v.Error != "" {
				return fmt.Errorf("volume %s: %s", v.Name, v.Error)
			}
			return a.printObject(v)
		},
	}
	cmd.Flags().StringVar(&req.Host, "host", "", "the host to move it to (cloud admin)")
	cmd.Flags().StringVar(&req.Near, "near", "", "move it to the host of this instance")
	cmd.Flags().BoolVar(&wait, "wait", false, "wait until the volume is on its new host")
	return cmd
}
