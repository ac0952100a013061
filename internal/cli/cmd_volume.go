package cli

import (
	"fmt"
	"strconv"

	"github.com/spf13/cobra"

	"github.com/kumocloud/kumo/api"
	"github.com/kumocloud/kumo/internal/quota"
)

// parseGiB reads a volume size: "10GiB", "512MiB" (rounded up) or a bare
// number of GiB.
func parseGiB(v string) (int64, error) {
	if n, err := strconv.ParseInt(v, 10, 64); err == nil {
		return n, nil
	}
	mib, err := quota.ParseMiB(v)
	if err != nil {
		return 0, fmt.Errorf("--size: %w", err)
	}
	return (mib + 1023) / 1024, nil
}

func volumeColumns() []column[api.Volume] {
	return []column[api.Volume]{
		col("NAME", func(v api.Volume) string { return v.Name }),
		col("SIZE GIB", func(v api.Volume) string { return strconv.FormatInt(v.SizeGiB, 10) }),
		col("FORMAT", func(v api.Volume) string { return v.Format }),
		col("STATUS", func(v api.Volume) string { return v.Status }),
		col("POOL", func(v api.Volume) string { return v.Pool }),
		col("HOST", func(v api.Volume) string { return v.Host }),
		col("ATTACHED TO", func(v api.Volume) string {
			if a := v.Attachment; a != nil {
				return a.Instance + " " + a.Device + a.Path
			}
			return ""
		}),
	}
}

func (a *app) volumeCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "volume", Aliases: []string{"volumes", "vol"},
		Short: "Persistent volumes: disks that outlive instances"}
	var req api.VolumesPost
	var size string
	create := &cobra.Command{
		Use: "create NAME --size 10GiB [--format qcow2|ext4] [--from-image I] [--near INSTANCE | --host H] [--pool P]", Short: "Create a volume", Args: cobra.ExactArgs(1),
		Example: "  kumo volume create data --size 10GiB --near web-1\n  kumo volume create files --size 1GiB --format ext4 --near app-1\n  kumo volume attach files app-1 --path /data",
		RunE: func(cmd *cobra.Command, args []string) error {
			c, project, err := a.clientAndProject(cmd)
			if err != nil {
				return err
			}
			req.Name = args[0]
			if req.SizeGiB, err = parseGiB(size); err != nil {
				return err
			}
			v, err := c.CreateVolume(cmd.Context(), project, req)
			if err != nil {
				return err
			}
			return a.printObject(v)
		},
	}
	create.Flags().StringVar(&size, "size", "", "the size, e.g. 10GiB")
	create.Flags().StringVar(&req.Format, "format", "", "qcow2 (default: a disk for VMs) or ext4 (a filesystem, for containers)")
	create.Flags().StringVar(&req.Image, "from-image", "", "fill it with a vm-disk image")
	create.Flags().StringVar(&req.Pool, "pool", "", "the storage pool (default local)")
	create.Flags().StringVar(&req.Host, "host", "", "the host to keep it (cloud admin)")
	create.Flags().StringVar(&req.Near, "near", "", "keep it on the host of this instance")
	create.Flags().StringVar(&req.Backup, "from-backup", "", "restore a backup of the project into it (on any host)")
	create.Flags().StringVar(&req.Snapshot, "from-snapshot", "", "VOLUME/SNAPSHOT: a copy of a snapshot, kept where it is")
	list := &cobra.Command{
		Use: "list", Short: "The project's volumes", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, project, err := a.clientAndProject(cmd)
			if err != nil {
				return err
			}
			vs, err := c.Volumes(cmd.Context(), project)
			if err != nil {
				return err
			}
			return printList(a, vs, volumeColumns())
		},
	}
	one := func(use, short string, nargs int, fn func(cmd *cobra.Command, args []string) (api.Volume, error)) *cobra.Command {
		return &cobra.Command{Use: use, Short: short, Args: cobra.ExactArgs(nargs), RunE: func(cmd *cobra.Command, args []string) error {
			v, err := fn(cmd, args)
			if err != nil {
				return err
			}
			return a.printObject(v)
		}}
	}
	show := one("show NAME", "Show a volume", 1, func(cmd *cobra.Command, args []string) (api.Volume, error) {
		c, project, err := a.clientAndProject(cmd)
		if err != nil {
			return api.Volume{}, err
		}
		return c.Volume(cmd.Context(), project, args[0])
	})
	var newSize string
	resize := one("resize NAME --size 20GiB", "Grow a volume (never shrinks)", 1, func(cmd *cobra.Command, args []string) (api.Volume, error) {
		c, project, err := a.clientAndProject(cmd)
		if err != nil {
			return api.Volume{}, err
		}
		gib, err := parseGiB(newSize)
		if err != nil {
			return api.Volume{}, err
		}
		return c.ResizeVolume(cmd.Context(), project, args[0], gib)
	})
	resize.Flags().StringVar(&newSize, "size", "", "the new size, e.g. 20GiB")
	del := one("delete NAME", "Delete a volume that is not attached", 1, func(cmd *cobra.Command, args []string) (api.Volume, error) {
		c, project, err := a.clientAndProject(cmd)
		if err != nil {
			return api.Volume{}, err
		}
		return c.DeleteVolume(cmd.Context(), project, args[0])
	})
	var att api.VolumeAttach
	attach := one("attach NAME INSTANCE [--device vdb] [--path /data]", "Attach a volume to an instance: a VM's disk, a container's mount", 2, func(cmd *cobra.Command, args []string) (api.Volume, error) {
		c, project, err := a.clientAndProject(cmd)
		if err != nil {
			return api.Volume{}, err
		}
		att.Instance = args[1]
		v, err := c.AttachVolume(cmd.Context(), project, args[0], att)
		if err == nil {
			a.warnHAAttach(cmd.Context(), c, project, v)
		}
		return v, err
	})
	attach.Flags().StringVar(&att.Device, "device", "", "a VM's disk name, vdb to vdq (default: the first free)")
	attach.Flags().StringVar(&att.Path, "path", "", "where a container sees it (default /data)")
	detach := one("detach NAME", "Detach a volume", 1, func(cmd *cobra.Command, args []string) (api.Volume, error) {
		c, project, err := a.clientAndProject(cmd)
		if err != nil {
			return api.Volume{}, err
		}
		return c.DetachVolume(cmd.Context(), project, args[0])
	})
	var snap string
	revert := one("revert NAME --snapshot SNAPSHOT", "Bring a detached volume back to one of its snapshots", 1, func(cmd *cobra.Command, args []string) (api.Volume, error) {
		c, project, err := a.clientAndProject(cmd)
		if err != nil {
			return api.Volume{}, err
		}
		return c.RevertVolume(cmd.Context(), project, args[0], snap)
	})
	revert.Flags().StringVar(&snap, "snapshot", "", "the snapshot")
	cmd.AddCommand(create, list, show, resize, del, attach, detach, revert, a.volumeMoveCmd(), a.volumeSnapshotCmd(), a.volumeBackupCmd())
	return cmd
}

func (a *app) volumeSnapshotCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "snapshot", Aliases: []string{"snapshots"}, Short: "A volume's snapshots: its content at a moment, kept beside it"}
	one := func(use, short string, nargs int, fn func(cmd *cobra.Command, args []string) (api.VolumeSnapshot, error)) *cobra.Command {
		return &cobra.Command{Use: use, Short: short, Args: cobra.ExactArgs(nargs), RunE: func(cmd *cobra.Command, args []string) error {
			s, err := fn(cmd, args)
			if err != nil {
				return err
			}
			return a.printObject(s)
		}}
	}
	create := one("create VOLUME NAME", "Take a snapshot (consistent for a running VM)", 2, func(cmd *cobra.Command, args []string) (api.VolumeSnapshot, error) {
		c, project, err := a.clientAndProject(cmd)
		if err != nil {
			return api.VolumeSnapshot{}, err
		}
		return c.CreateVolumeSnapshot(cmd.Context(), project, args[0], args[1])
	})
	show := one("show VOLUME NAME", "Show a snapshot", 2, func(cmd *cobra.Command, args []string) (api.VolumeSnapshot, error) {
		c, project, err := a.clientAndProject(cmd)
		if err != nil {
			return api.VolumeSnapshot{}, err
		}
		return c.VolumeSnapshot(cmd.Context(), project, args[0], args[1])
	})
	del := one("delete VOLUME NAME", "Delete a snapshot", 2, func(cmd *cobra.Command, args []string) (api.VolumeSnapshot, error) {
		c, project, err := a.clientAndProject(cmd)
		if err != nil {
			return api.VolumeSnapshot{}, err
		}
		return c.DeleteVolumeSnapshot(cmd.Context(), project, args[0], args[1])
	})
	list := &cobra.Command{Use: "list VOLUME", Short: "A volume's snapshots", Args: cobra.ExactArgs(1), RunE: func(cmd *cobra.Command, args []string) error {
		c, project, err := a.clientAndProject(cmd)
		if err != nil {
			return err
		}
		ss, err := c.VolumeSnapshots(cmd.Context(), project, args[0])
		if err != nil {
			return err
		}
		return printList(a, ss, []column[api.VolumeSnapshot]{
			col("NAME", func(s api.VolumeSnapshot) string { return s.Name }),
			col("VOLUME", func(s api.VolumeSnapshot) string { return s.Volume }),
			col("SIZE GIB", func(s api.VolumeSnapshot) string { return strconv.FormatInt(s.SizeGiB, 10) }),
			col("STATUS", func(s api.VolumeSnapshot) string { return s.Status }),
			col("CREATED", func(s api.VolumeSnapshot) string { return s.CreatedAt.Format("2006-01-02 15:04:05") }),
		})
	}}
	cmd.AddCommand(create, list, show, del)
	return cmd
}

func (a *app) storageCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "storage", Short: "Storage pools, where volumes are kept"}
	pool := &cobra.Command{Use: "pool", Aliases: []string{"pools"}, Short: "Storage pools: local (each host's own) and shared-dir"}
	cols := []column[api.StoragePool]{
		col("NAME", func(p api.StoragePool) string { return p.Name }),
		col("TYPE", func(p api.StoragePool) string { return p.Type }),
		col("PATH", func(p api.StoragePool) string { return p.Path }),
		col("VOLUMES", func(p api.StoragePool) string { return strconv.FormatInt(p.Volumes, 10) }),
		col("SIZE GIB", func(p api.StoragePool) string { return strconv.FormatInt(p.SizeGiB, 10) }),
	}
	list := &cobra.Command{Use: "list", Short: "List storage pools", Args: cobra.NoArgs, RunE: func(cmd *cobra.Command, _ []string) error {
		c, err := a.client()
		if err != nil {
			return err
		}
		ps, err := c.StoragePools(cmd.Context())
		if err != nil {
			return err
		}
		return printList(a, ps, cols)
	}}
	show := &cobra.Command{Use: "show NAME", Short: "Show a storage pool", Args: cobra.ExactArgs(1), RunE: func(cmd *cobra.Command, args []string) error {
		c, err := a.client()
		if err != nil {
			return err
		}
		p, err := c.StoragePool(cmd.Context(), args[0])
		if err != nil {
			return err
		}
		return a.printObject(p)
	}}
	var req api.StoragePoolsPost
	create := &cobra.Command{Use: "create NAME --path DIR", Short: "Add a shared-dir pool: a directory every host mounts at the same path (cloud admin)", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			req.Name = args[0]
			p, err := c.CreateStoragePool(cmd.Context(), req)
			if err != nil {
				return err
			}
			return a.printObject(p)
		}}
	create.Flags().StringVar(&req.Path, "path", "", "the shared directory")
	create.Flags().StringVar(&req.Type, "type", api.PoolSharedDir, "the pool type (shared-dir)")
	del := &cobra.Command{Use: "delete NAME", Short: "Remove an empty shared-dir pool (cloud admin)", Args: cobra.ExactArgs(1), RunE: func(cmd *cobra.Command, args []string) error {
		c, err := a.client()
		if err != nil {
			return err
		}
		return c.DeleteStoragePool(cmd.Context(), args[0])
	}}
	pool.AddCommand(list, show, create, del)
	cmd.AddCommand(pool)
	return cmd
}

func (a *app) volumeBackupCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "backup", Aliases: []string{"backups"}, Short: "Volume backups, kept by the server (restore with volume create --from-backup)"}
	var incremental bool
	create := &cobra.Command{Use: "create VOLUME NAME [--incremental]", Short: "Back a volume up: only chunks the store lacks are sent", Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, project, err := a.clientAndProject(cmd)
			if err != nil {
				return err
			}
			b, err := c.CreateVolumeBackup(cmd.Context(), project, args[0], api.VolumeBackupsPost{Name: args[1], Incremental: incremental})
			if err != nil {
				return err
			}
			return a.printObject(b)
		}}
	create.Flags().BoolVar(&incremental, "incremental", false, "say so (every backup sends only the chunks the store lacks)")
	list := &cobra.Command{Use: "list", Short: "The project's volume backups", Args: cobra.NoArgs, RunE: func(cmd *cobra.Command, _ []string) error {
		c, project, err := a.clientAndProject(cmd)
		if err != nil {
			return err
		}
		bs, err := c.VolumeBackups(cmd.Context(), project)
		if err != nil {
			return err
		}
		return printList(a, bs, []column[api.VolumeBackup]{
			col("NAME", func(b api.VolumeBackup) string { return b.Name }),
			col("VOLUME", func(b api.VolumeBackup) string { return b.Volume }),
			col("SIZE GIB", func(b api.VolumeBackup) string { return strconv.FormatInt(b.SizeGiB, 10) }),
			col("STATUS", func(b api.VolumeBackup) string { return b.Status }),
			col("STORED", func(b api.VolumeBackup) string { return strconv.FormatInt(b.StoredBytes, 10) }),
			col("CREATED", func(b api.VolumeBackup) string { return b.CreatedAt.Format("2006-01-02 15:04:05") }),
		})
	}}
	show := &cobra.Command{Use: "show NAME", Short: "Show a backup", Args: cobra.ExactArgs(1), RunE: func(cmd *cobra.Command, args []string) error {
		c, project, err := a.clientAndProject(cmd)
		if err != nil {
			return err
		}
		b, err := c.VolumeBackup(cmd.Context(), project, args[0])
		if err != nil {
			return err
		}
		return a.printObject(b)
	}}
	del := &cobra.Command{Use: "delete NAME", Short: "Delete a backup", Args: cobra.ExactArgs(1), RunE: func(cmd *cobra.Command, args []string) error {
		c, project, err := a.clientAndProject(cmd)
		if err != nil {
			return err
		}
		return c.DeleteVolumeBackup(cmd.Context(), project, args[0])
	}}
	var every string
	var keep int
	schedule := &cobra.Command{Use: "schedule VOLUME --every 24h --keep 7", Short: "Back a volume up on a schedule, keeping the newest (--every 0 stops)", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, project, err := a.clientAndProject(cmd)
			if err != nil {
				return err
			}
			v, err := c.ScheduleVolumeBackups(cmd.Context(), project, args[0], every, keep)
			if err != nil {
				return err
			}
			return a.printObject(v)
		}}
	schedule.Flags().StringVar(&every, "every", "24h", "how often (at least 1m; 0 stops)")
	schedule.Flags().IntVar(&keep, "keep", 7, "how many good scheduled backups to keep (failed ones: the newest two)")
	cmd.AddCommand(create, list, show, del, schedule)
	return cmd
}
