package cli

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/kumocloud/kumo/api"
	"github.com/kumocloud/kumo/client"
)

func (a *app) instanceCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "instance", Aliases: []string{"instances", "vm", "ct"}, Short: "Virtual machines and system containers"}
	var req api.InstancesPost
	var labels []string
	var userDataFile, rootSize string
	var wait bool
	create := &cobra.Command{
		Use: "create NAME --flavor F --image I [--type vm|container] [--boot-volume V | --root-volume-size 10GiB [--keep-root-volume]]", Short: "Create an instance", Args: cobra.ExactArgs(1),
		Example: "  kumo instance create web-1 --flavor small --image tiny --type container --requirements 'RACK = \"r1\"' --rank FREE_CPU --wait\n" +
			"  kumo instance create db-1 --type vm --image debian --root-volume-size 10GiB --keep-root-volume\n" +
			"  kumo instance create db-2 --type vm --boot-volume db-1-root",
		RunE: func(cmd *cobra.Command, args []string) error {
			c, project, err := a.clientAndProject(cmd)
			if err != nil {
				return err
			}
			req.Name = args[0]
			if req.Labels, err = parseLabels(labels); err != nil {
				return err
			}
			if req.Image == "" && req.BootVolume == "" {
				return usagef("give --image (or --boot-volume, for a VM)")
			}
			if rootSize != "" {
				if req.RootVolumeSizeGiB, err = parseGiB(rootSize); err != nil {
					return usagef("--root-volume-size %q: give a size such as 10GiB", rootSize)
				}
			}
			if userDataFile != "" {
				b, err := os.ReadFile(userDataFile)
				if err != nil {
					return usagef("--user-data: %v", err)
				}
				req.UserData = string(b)
			}
			in, err := c.CreateInstance(cmd.Context(), project, req)
			if err != nil {
				return err
			}
			a.warnHABoot(cmd.Context(), c, project, in)
			if wait {
				if in, err = a.waitSettled(cmd.Context(), c, project, in.Name); err != nil {
					return err
				}
			}
			return a.printObject(in)
		},
	}
	f := create.Flags()
	f.StringVar(&req.Type, "type", "container", "vm or container")
	f.StringVar(&req.Flavor, "flavor", "small", "flavor (kumo flavor list)")
	f.StringVar(&req.Image, "image", "", "image")
	f.StringVar(&req.Requirements, "requirements", "", "host requirement expression, e.g. 'RACK = \"r1\" & FREE_MEM > 2048'")
	f.StringVar(&req.Rank, "rank", "", "rank expression; the host where it is highest wins, e.g. FREE_CPU")
	f.StringVar(&req.ServerGroup, "server-group", "", "server group (affinity / anti-affinity)")
	f.BoolVar(&req.HA, "ha", false, "high availability: recreated on another host when its host is lost past the fence timeout (docs/ha.md)")
	f.StringVar(&userDataFile, "user-data", "", "file whose content is handed to the instance")
	f.StringArrayVarP(&labels, "label", "l", nil, "label KEY=VALUE (repeatable)")
	f.StringArrayVar(&req.Networks, "network", nil, "attach to this network: eth0, eth1... in order (repeatable; owner/name for a shared one)")
	f.StringArrayVar(&req.SecurityGroups, "security-group", nil, "security group of its ports (repeatable; default: the project's group 'default')")
	f.StringVar(&req.BootVolume, "boot-volume", "", "VMs: boot from this volume (its root disk, kept when the instance goes); --image is then optional")
	f.StringVar(&rootSize, "root-volume-size", "", "VMs: the root disk is a new volume NAME-root of this size (e.g. 10GiB) made from the image's disk (a vm-disk's, or a vm-kernel image's own disk.qcow2; at least its size)")
	f.BoolVar(&req.KeepRootVolume, "keep-root-volume", false, "keep the root volume when the instance is terminated (it can boot another instance)")
	waitFlag(create, &wait, "wait until the instance is RUNNING (or fails, or cannot be placed)")

	var all bool
	var llabels []string
	var llim int
	list := &cobra.Command{
		Use: "list", Short: "List the project's instances", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, project, err := a.clientAndProject(cmd)
			if err != nil {
				return err
			}
			o, err := a.listOptions(llabels, llim)
			if err != nil {
				return err
			}
			ins, err := c.Instances(cmd.Context(), project, all, o)
			if err != nil {
				return err
			}
			return printList(a, ins, []column[api.Instance]{
				col("NAME", func(i api.Instance) string { return i.Name }),
				col("TYPE", func(i api.Instance) string { return i.Type }),
				col("STATE", func(i api.Instance) string { return string(i.State) }),
				col("HOST", func(i api.Instance) string { return i.Host }),
				col("IP", func(i api.Instance) string {
					var ips []string
					for _, n := range i.NICs {
						ips = append(ips, n.IP)
					}
					return strings.Join(ips, ",")
				}),
				col("FLAVOR", func(i api.Instance) string { return i.Flavor }),
				col("IMAGE", func(i api.Instance) string { return i.Image }),
				col("AGE", func(i api.Instance) string { return age(i.CreatedAt) }),
				col("REASON", func(i api.Instance) string { return i.Reason }),
			})
		},
	}
	listFlags(list, &llabels, &llim)
	list.Flags().BoolVar(&all, "all", false, "include DONE instances")

	show := &cobra.Command{
		Use: "show NAME", Short: "Show an instance", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, project, err := a.clientAndProject(cmd)
			if err != nil {
				return err
			}
			in, err := c.Instance(cmd.Context(), project, args[0])
			if err != nil {
				return err
			}
			return a.printObject(in)
		},
	}
	history := &cobra.Command{
		Use: "history NAME", Short: "An instance's state transitions: when, from, to, where, who, why", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, project, err := a.clientAndProject(cmd)
			if err != nil {
				return err
			}
			h, err := c.InstanceHistory(cmd.Context(), project, args[0])
			if err != nil {
				return err
			}
			return printList(a, h, []column[api.HistoryRecord]{
				col("SEQ", func(r api.HistoryRecord) string { return strconv.Itoa(r.Seq) }),
				col("TIME", func(r api.HistoryRecord) string { return r.Time.Local().Format("2006-01-02 15:04:05.000") }),
				col("FROM", func(r api.HistoryRecord) string { return string(r.From) }),
				col("TO", func(r api.HistoryRecord) string { return string(r.To) }),
				col("HOST", func(r api.HistoryRecord) string { return r.Host }),
				col("ACTOR", func(r api.HistoryRecord) string { return r.Actor }),
				col("REASON", func(r api.HistoryRecord) string { return r.Reason }),
			})
		},
	}
	var top int
	var explainMigrate bool
	explain := &cobra.Command{
		Use: "explain NAME", Short: "Why each host can or cannot take the instance, and how the feasible ones score", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, project, err := a.clientAndProject(cmd)
			if err != nil {
				return err
			}
			explainFn := c.Explain
			if explainMigrate {
				explainFn = c.ExplainMigration
			}
			ex, err := explainFn(cmd.Context(), project, args[0])
			if err != nil {
				return err
			}
			if a.output != "table" {
				return a.printObject(ex)
			}
			fmt.Fprintln(a.stdout, termSafe(fmt.Sprintf("%s (policy %s)", ex.Summary, ex.Policy)))
			hs := ex.Hosts
			if top > 0 && len(hs) > top {
				hs = hs[:top]
			}
			return printList(a, hs, []column[api.ExplainHost]{
				col("HOST", func(h api.ExplainHost) string { return h.Host }),
				col("FEASIBLE", func(h api.ExplainHost) string { return strconv.FormatBool(h.Feasible) }),
				col("SCORE", func(h api.ExplainHost) string {
					if !h.Feasible {
						return "-"
					}
					return strconv.FormatFloat(h.Score, 'g', 4, 64)
				}),
				col("REASON", func(h api.ExplainHost) string { return h.Reason }),
			})
		},
	}
	explain.Flags().IntVar(&top, "top", 20, "show at most this many hosts (0 = all)")
	explain.Flags().BoolVar(&explainMigrate, "migrate", false, "judge the hosts as migration targets (the source excluded)")
	var timeout int
	execCmd := &cobra.Command{
		Use: "exec NAME -- COMMAND [ARG...]", Short: "Run a command inside a RUNNING instance; exits with its status", Args: cobra.MinimumNArgs(2),
		Example: "  kumo instance exec c1 -- ps\n  kumo instance exec c1 -- sh -c 'cat /etc/hostname'",
		RunE: func(cmd *cobra.Command, args []string) error {
			c, project, err := a.clientAndProject(cmd)
			if err != nil {
				return err
			}
			// The output is streamed as it comes, however much there is.
			code, err := c.InstanceExecStream(cmd.Context(), project, args[0], api.InstanceExecPost{Command: args[1:], TimeoutSeconds: timeout}, a.stdout)
			if err != nil {
				return err
			}
			if code != 0 {
				return exitCode(code)
			}
			return nil
		},
	}
	execCmd.Flags().IntVar(&timeout, "timeout", 60, "seconds the command may run")
	var tail int
	logs := &cobra.Command{
		Use: "logs NAME", Short: "The end of an instance's console log (PID 1's output)", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, project, err := a.clientAndProject(cmd)
			if err != nil {
				return err
			}
			l, err := c.InstanceLogs(cmd.Context(), project, args[0], tail)
			if err != nil {
				return err
			}
			fmt.Fprint(a.stdout, l.Output)
			return nil
		},
	}
	logs.Flags().IntVar(&tail, "tail", 200, "lines")
	console := a.consoleCmd()
	var snapName string
	var snapPublic, snapNoWait bool
	snapshot := &cobra.Command{
		Use: "snapshot NAME --name IMAGE [--public] [--no-wait]", Short: "Copy a VM's disk into a new image, showing the copy's progress (a running VM is paused while its disk is copied)", Args: cobra.ExactArgs(1),
		Example: "  kumo instance snapshot vm1 --name vm1-snap && kumo instance create vm2 --type vm --image vm1-snap --flavor tiny",
		RunE: func(cmd *cobra.Command, args []string) error {
			if snapName == "" {
				return usagef("--name is required: the new image's name")
			}
			c, project, err := a.clientAndProject(cmd)
			if err != nil {
				return err
			}
			req := api.InstanceSnapshotPost{Name: snapName}
			if snapPublic {
				req.Visibility = api.VisibilityPublic
			}
			op, err := c.SnapshotInstance(cmd.Context(), project, args[0], req)
			if err != nil {
				return err
			}
			if snapNoWait {
				return a.finishOperation(cmd.Context(), op, false)
			}
			if _, err := a.followOperation(cmd.Context(), c, op); err != nil {
				return err
			}
			img, err := c.Image(cmd.Context(), project, snapName)
			if err != nil {
				return err
			}
			return a.printObject(img)
		},
	}
	snapshot.Flags().StringVar(&snapName, "name", "", "the new image's name")
	snapshot.Flags().BoolVar(&snapPublic, "public", false, "every project may use it (cloud admin)")
	snapshot.Flags().BoolVar(&snapNoWait, "no-wait", false, "print the operation copying the disk and return ('kumo operation wait ID' follows it)")
	cmd.AddCommand(create, list, show, history, explain, execCmd, logs, console, snapshot, a.migrateCmd(), a.instanceBackupCmd(), a.instanceRestoreCmd())
	for _, act := range api.Actions {
		cmd.AddCommand(a.actionCmd(act))
	}
	return cmd
}

var actionHelp = map[api.Action]string{
	api.ActionHold:      "Keep a PENDING instance from being placed",
	api.ActionRelease:   "Let a held instance be placed",
	api.ActionStart:     "Start a STOPPED or POWEROFF instance",
	api.ActionStop:      "Save the instance's state to disk and free its host (STOPPED)",
	api.ActionSuspend:   "Pause the instance, keeping it in the host's memory (SUSPENDED)",
	api.ActionResume:    "Continue a SUSPENDED instance",
	api.ActionPoweroff:  "Shut the instance down, keeping its disks on the host (POWEROFF)",
	api.ActionReboot:    "Restart a RUNNING instance",
	api.ActionTerminate: "Shut down and delete the instance (DONE; its history is kept)",
}

func (a *app) actionCmd(action api.Action) *cobra.Command {
	var wait bool
	cmd := &cobra.Command{
		Use: string(action) + " NAME...", Short: actionHelp[action], Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, project, err := a.clientAndProject(cmd)
			if err != nil {
				return err
			}
			for _, name := range args {
				in, err := c.InstanceAction(cmd.Context(), project, name, action)
				if err != nil {
					return err
				}
				if wait {
					if in, err = a.waitSettled(cmd.Context(), c, project, name); err != nil {
						return err
					}
				}
				if a.output == "table" {
					fmt.Fprintf(a.stdout, "%s: %s\n", name, in.State)
				} else if err := a.printObject(in); err != nil {
					return err
				}
			}
			return nil
		},
	}
	waitFlag(cmd, &wait, "wait until the instance settles in a stable state")
	return cmd
}

// waitSettled follows the instance until it is in a stable state. A
// PENDING instance that cannot be placed stops the wait with its reason.
func (a *app) waitSettled(ctx context.Context, c *client.Client, project, name string) (api.Instance, error) {
	deadline := time.Now().Add(10 * time.Minute)
	for {
		in, err := c.Instance(ctx, project, name)
		if err != nil {
			return in, err
		}
		if in.State == api.StateFailed {
			return in, fmt.Errorf("instance %s FAILED: %s", name, in.Reason)
		}
		if !in.State.Transient() {
			return in, nil
		}
		if in.Unplaceable {
			return in, fmt.Errorf("instance %s cannot be placed: %s ('kumo instance explain %s' shows why)", name, in.Reason, name)
		}
		if time.Now().After(deadline) {
			return in, fmt.Errorf("instance %s still %s after 10 minutes", name, in.State)
		}
		select {
		case <-ctx.Done():
			return in, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func (a *app) clientAndProject(cmd *cobra.Command) (*client.Client, string, error) {
	c, err := a.client()
	if err != nil {
		return nil, "", err
	}
	p, err := a.projectName(cmd.Context())
	return c, p, err
}

func (a *app) serverGroupCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "server-group", Aliases: []string{"server-groups", "sg"}, Short: "Keep instances together (affinity) or apart (anti-affinity)"}
	var policy string
	var soft, wait bool
	create := &cobra.Command{
		Use: "create NAME --policy affinity|anti-affinity [--soft]", Short: "Create a server group", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, project, err := a.clientAndProject(cmd)
			if err != nil {
				return err
			}
			g, err := c.CreateServerGroup(cmd.Context(), project, api.ServerGroupsPost{Name: args[0], Policy: policy, Soft: soft})
			if err != nil {
				return err
			}
			return a.printObject(g)
		},
	}
	create.Flags().StringVar(&policy, "policy", "anti-affinity", "affinity or anti-affinity")
	create.Flags().BoolVar(&soft, "soft", false, "a preference, not a rule")
	waitFlag(create, &wait, "accepted for scripts (groups are made at once)")
	list := &cobra.Command{
		Use: "list", Short: "List server groups", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, project, err := a.clientAndProject(cmd)
			if err != nil {
				return err
			}
			gs, err := c.ServerGroups(cmd.Context(), project)
			if err != nil {
				return err
			}
			return printList(a, gs, []column[api.ServerGroup]{
				col("NAME", func(g api.ServerGroup) string { return g.Name }),
				col("POLICY", func(g api.ServerGroup) string { return g.Policy }),
				col("HARD", func(g api.ServerGroup) string { return strconv.FormatBool(g.Hard) }),
				col("MEMBERS", func(g api.ServerGroup) string { return strings.Join(g.Members, ",") }),
			})
		},
	}
	show := &cobra.Command{
		Use: "show NAME", Short: "Show a server group", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, project, err := a.clientAndProject(cmd)
			if err != nil {
				return err
			}
			g, err := c.ServerGroup(cmd.Context(), project, args[0])
			if err != nil {
				return err
			}
			return a.printObject(g)
		},
	}
	del := &cobra.Command{
		Use: "delete NAME", Short: "Delete an empty server group", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, project, err := a.clientAndProject(cmd)
			if err != nil {
				return err
			}
			return c.DeleteServerGroup(cmd.Context(), project, args[0])
		},
	}
	cmd.AddCommand(create, list, show, del)
	return cmd
}

func hostColumns() []column[api.Host] {
	return []column[api.Host]{
		col("NAME", func(h api.Host) string { return h.Name }),
		col("STATE", func(h api.Host) string {
			s := h.State
			if !h.Enabled {
				s += ",disabled"
			}
			if h.Draining {
				s += ",draining"
			}
			return s
		}),
		col("DRIVER", func(h api.Host) string { return h.Driver }),
		col("INSTANCES", func(h api.Host) string { return strconv.Itoa(h.Instances) }),
		col("VCPUS", func(h api.Host) string {
			return fmt.Sprintf("%d/%d", h.Allocated.VCPUs, int64(float64(h.Capacity.VCPUs)*h.Ratios.CPU))
		}),
		col("MEMORY MIB", func(h api.Host) string {
			return fmt.Sprintf("%d/%d", h.Allocated.MemoryMiB, int64(float64(h.Capacity.MemoryMiB)*h.Ratios.Memory))
		}),
		col("LABELS", func(h api.Host) string { return labelString(h.Labels) }),
	}
}

func (a *app) hostCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "host", Aliases: []string{"hosts"}, Short: "Compute hosts (cloud admin)"}
	list := &cobra.Command{
		Use: "list", Short: "List hosts with their allocations", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			hs, err := c.Hosts(cmd.Context())
			if err != nil {
				return err
			}
			return printList(a, hs, hostColumns())
		},
	}
	show := &cobra.Command{
		Use: "show NAME", Short: "Show a host", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			h, err := c.Host(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			return a.printObject(h)
		},
	}
	patch := func(use, short string, mk func() api.HostPatch) *cobra.Command {
		return &cobra.Command{
			Use: use + " NAME...", Short: short, Args: cobra.MinimumNArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error {
				c, err := a.client()
				if err != nil {
					return err
				}
				for _, n := range args {
					h, err := c.PatchHost(cmd.Context(), n, mk())
					if err != nil {
						return err
					}
					if a.output == "table" {
						fmt.Fprintf(a.stdout, "%s: enabled=%v draining=%v\n", h.Name, h.Enabled, h.Draining)
					} else if err := a.printObject(h); err != nil {
						return err
					}
				}
				return nil
			},
		}
	}
	yes, no := true, false
	var hlabels []string
	var cpuR, memR, diskR float64
	set := &cobra.Command{
		Use: "set NAME [--label K=V]... [--cpu-ratio R] [--memory-ratio R] [--disk-ratio R]", Short: "Set a host's labels or allocation ratios", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			var p api.HostPatch
			if cmd.Flags().Changed("label") {
				if p.Labels, err = parseLabels(hlabels); err != nil {
					return err
				}
				if p.Labels == nil {
					p.Labels = map[string]string{}
				}
			}
			if cmd.Flags().Changed("cpu-ratio") || cmd.Flags().Changed("memory-ratio") || cmd.Flags().Changed("disk-ratio") {
				h, err := c.Host(cmd.Context(), args[0])
				if err != nil {
					return err
				}
				r := h.Ratios
				if cmd.Flags().Changed("cpu-ratio") {
					r.CPU = cpuR
				}
				if cmd.Flags().Changed("memory-ratio") {
					r.Memory = memR
				}
				if cmd.Flags().Changed("disk-ratio") {
					r.Disk = diskR
				}
				p.Ratios = &r
			}
			h, err := c.PatchHost(cmd.Context(), args[0], p)
			if err != nil {
				return err
			}
			return a.printObject(h)
		},
	}
	set.Flags().StringArrayVarP(&hlabels, "label", "l", nil, "the host's labels KEY=VALUE (repeatable; replaces all)")
	set.Flags().Float64Var(&cpuR, "cpu-ratio", 16, "vCPUs per core")
	set.Flags().Float64Var(&memR, "memory-ratio", 1.5, "memory overcommit")
	set.Flags().Float64Var(&diskR, "disk-ratio", 1, "disk overcommit")

	jt := &cobra.Command{Use: "join-token", Short: "Tokens agents join with"}
	var ttl time.Duration
	var desc string
	jtCreate := &cobra.Command{
		Use: "create", Short: "Make a join token (it carries the server's CA fingerprint)", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			t, err := c.CreateJoinToken(cmd.Context(), api.JoinTokensPost{TTLSeconds: int64(ttl.Seconds()), Description: desc})
			if err != nil {
				return err
			}
			if a.output == "table" {
				fmt.Fprintf(a.stdout, "%s\n(expires %s; on a new host: kumo agent --server https://SERVER:8443 --join-token TOKEN)\n", t.Token, t.ExpiresAt.Local().Format(time.RFC1123))
				return nil
			}
			return a.printObject(t)
		},
	}
	jtCreate.Flags().DurationVar(&ttl, "ttl", 24*time.Hour, "how long agents may join with it")
	jtCreate.Flags().StringVar(&desc, "description", "", "what it is for")
	jtList := &cobra.Command{
		Use: "list", Short: "List join tokens", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			ts, err := c.JoinTokens(cmd.Context())
			if err != nil {
				return err
			}
			return printList(a, ts, []column[api.JoinToken]{
				col("ID", func(t api.JoinToken) string { return t.ID }),
				col("DESCRIPTION", func(t api.JoinToken) string { return t.Description }),
				col("EXPIRES", func(t api.JoinToken) string { return t.ExpiresAt.Local().Format("2006-01-02 15:04") }),
			})
		},
	}
	jtDelete := &cobra.Command{
		Use: "delete ID", Short: "Revoke a join token", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			return c.DeleteJoinToken(cmd.Context(), args[0])
		},
	}
	jt.AddCommand(jtCreate, jtList, jtDelete)
	del := &cobra.Command{
		Use: "delete NAME...", Short: "Delete hosts without live instances: their agents can no longer act for them, and they may join again (under any agent)", Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			for _, n := range args {
				if err := c.DeleteHost(cmd.Context(), n); err != nil {
					return err
				}
			}
			return nil
		},
	}
	cmd.AddCommand(list, show, set, del, a.evacuateCmd(),
		patch("enable", "Let the scheduler place instances on hosts", func() api.HostPatch { return api.HostPatch{Enabled: &yes} }),
		patch("disable", "Stop placing instances on hosts (running ones stay)", func() api.HostPatch { return api.HostPatch{Enabled: &no} }),
		patch("drain", "Mark hosts as draining: no new placements, for maintenance", func() api.HostPatch { return api.HostPatch{Draining: &yes} }),
		patch("undrain", "End draining", func() api.HostPatch { return api.HostPatch{Draining: &no} }),
		jt)
	return cmd
}
