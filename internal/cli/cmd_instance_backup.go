package cli

import (
	"fmt"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	"github.com/kumocloud/kumo/api"
)

// instanceBackupCmd is 'kumo instance backup': an instance's definition
// and all its volumes backed up together (what vzdump makes).
func (a *app) instanceBackupCmd() *cobra.Command {
	var wait, skipRoot bool
	backup := func(cmd *cobra.Command, args []string) error {
		c, project, err := a.clientAndProject(cmd)
		if err != nil {
			return err
		}
		name := ""
		if len(args) > 1 {
			name = args[1]
		} else {
			name = defaultBackupName(args[0], time.Now())
		}
		ib, err := c.CreateInstanceBackup(cmd.Context(), project, args[0], api.InstanceBackupsPost{Name: name, SkipRootDisk: skipRoot})
		if err != nil {
			return err
		}
		for wait && ib.Status == api.VolumeCreating {
			select {
			case <-cmd.Context().Done():
				return cmd.Context().Err()
			case <-time.After(time.Second):
			}
			if ib, err = c.InstanceBackup(cmd.Context(), project, name); err != nil {
				return err
			}
		}
		if wait && ib.Status == api.VolumeError {
			return fmt.Errorf("instance backup %s: %s", ib.Name, ib.Error)
		}
		return a.printObject(ib)
	}
	cmd := &cobra.Command{
		Use:     "backup NAME [BACKUP] [--wait]",
		Aliases: []string{"backups"},
		Short:   "Back an instance up: its definition and every volume attached to it (restore with 'kumo instance restore')",
		Long: "Each attached volume (a boot volume too) is backed up to the server's backup store as 'kumo volume backup' does;\n" +
			"the definition (flavor, image, networks, security groups, user data, labels, ha) is kept with them.\n" +
			"Its own root disk - a VM's disk that is not a volume (the VM paused while it is copied), a container's root filesystem\n" +
			"(its writable layer) - is backed up as the volume backup BACKUP-root, unless --skip-root-disk.\n" +
			"BACKUP defaults to NAME-YYYYMMDD-HHMMSS.",
		Example: "  kumo instance backup db-1 nightly --wait\n  kumo instance backup list\n  kumo instance restore nightly --name db-1b",
		Args:    cobra.RangeArgs(1, 2),
		RunE:    backup,
	}
	create := &cobra.Command{Use: "create NAME [BACKUP] [--wait]", Short: "Back an instance up (as 'kumo instance backup NAME')", Args: cobra.RangeArgs(1, 2), RunE: backup}
	for _, c := range []*cobra.Command{cmd, create} {
		c.Flags().BoolVar(&wait, "wait", false, "wait until every volume backup (and the root disk's copy) is made")
		c.Flags().BoolVar(&skipRoot, "skip-root-disk", false, "leave out its own root disk (a VM's disk that is not a volume, a container's root filesystem)")
	}
	list := &cobra.Command{Use: "list", Short: "The project's instance backups", Args: cobra.NoArgs, RunE: func(cmd *cobra.Command, _ []string) error {
		c, project, err := a.clientAndProject(cmd)
		if err != nil {
			return err
		}
		bs, err := c.InstanceBackups(cmd.Context(), project)
		if err != nil {
			return err
		}
		return printList(a, bs, []column[api.InstanceBackup]{
			col("NAME", func(b api.InstanceBackup) string { return b.Name }),
			col("INSTANCE", func(b api.InstanceBackup) string { return b.Instance }),
			col("TYPE", func(b api.InstanceBackup) string { return b.Definition.Type }),
			col("VOLUMES", func(b api.InstanceBackup) string { return strconv.Itoa(len(b.Volumes)) }),
			col("SIZE GIB", func(b api.InstanceBackup) string { return strconv.FormatInt(b.SizeGiB, 10) }),
			col("STATUS", func(b api.InstanceBackup) string { return b.Status }),
			col("STORED", func(b api.InstanceBackup) string { return strconv.FormatInt(b.StoredBytes, 10) }),
			col("CREATED", func(b api.InstanceBackup) string { return b.CreatedAt.Format("2006-01-02 15:04:05") }),
		})
	}}
	show := &cobra.Command{Use: "show BACKUP", Short: "Show an instance backup", Args: cobra.ExactArgs(1), RunE: func(cmd *cobra.Command, args []string) error {
		c, project, err := a.clientAndProject(cmd)
		if err != nil {
			return err
		}
		b, err := c.InstanceBackup(cmd.Context(), project, args[0])
		if err != nil {
			return err
		}
		return a.printObject(b)
	}}
	del := &cobra.Command{Use: "delete BACKUP", Short: "Delete an instance backup and its volume backups", Args: cobra.ExactArgs(1), RunE: func(cmd *cobra.Command, args []string) error {
		c, project, err := a.clientAndProject(cmd)
		if err != nil {
			return err
		}
		return c.DeleteInstanceBackup(cmd.Context(), project, args[0])
	}}
	cmd.AddCommand(create, list, show, del)
	return cmd
}

// defaultBackupName is NAME-YYYYMMDD-HHMMSS, NAME cut so that it fits.
func defaultBackupName(instance string, t time.Time) string {
	suffix := t.UTC().Format("-20060102-150405")
	if max := api.InstanceBackupNameMax - len(suffix); len(instance) > max {
		instance = instance[:max]
		for len(instance) > 0 && instance[len(instance)-1] == '-' {
			instance = instance[:len(instance)-1]
		}
	}
	return instance + suffix
}

// instanceRestoreCmd is 'kumo instance restore BACKUP [--name N]'.
func (a *app) instanceRestoreCmd() *cobra.Command {
	var name string
	var wait bool
	cmd := &cobra.Command{
		Use:   "restore BACKUP [--name N] [--wait]",
		Short: "Make a new instance from an instance backup, its volumes restored and attached where they were",
		Long: "The volumes are named after the new instance (N-root, N-vdb, N-vol1) and made on the host it is placed on;\n" +
			"it starts once they all are, its own root disk (or a container's root filesystem) restored.\n" +
			"Its ports are new (new addresses) on the same networks.",
		Example: "  kumo instance restore nightly --name db-1b --wait",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, project, err := a.clientAndProject(cmd)
			if err != nil {
				return err
			}
			in, err := c.RestoreInstance(cmd.Context(), project, args[0], name)
			if err != nil {
				return err
			}
			if wait {
				if in, err = a.waitSettled(cmd.Context(), c, project, in.Name); err != nil {
					return err
				}
			}
			return a.printObject(in)
		},
	}
	cmd.Flags().StringVar(&name, "name", "", "the new instance's name (default: the backed-up instance's)")
	cmd.Flags().BoolVar(&wait, "wait", false, "wait until the instance runs (or fails)")
	return cmd
}
