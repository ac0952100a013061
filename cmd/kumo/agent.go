package main

import (
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/kumocloud/kumo/internal/agent"
	"github.com/kumocloud/kumo/internal/driver"
	"github.com/kumocloud/kumo/internal/driver/container" // registers "container"
	"github.com/kumocloud/kumo/internal/driver/local"
	"github.com/kumocloud/kumo/internal/driver/qemu" // registers "qemu"
	"github.com/kumocloud/kumo/internal/driver/sim"  // registers "sim"
)

// driverFlags are the drivers' settings, shared by 'kumo server --drivers'
// and 'kumo agent --driver': the flags fill each driver's own Config.
type driverFlags struct {
	sim  sim.Config
	qemu qemu.Config
	// maxUnpackedGiB bounds what one image unpacks to in a host's cache
	// (the container and qemu drivers' MaxUnpacked).
	maxUnpackedGiB int64
	vtep           string
	uplinks        map[string]string
}

func (d *driverFlags) register(f *pflag.FlagSet) {
	def := sim.DefaultConfig()
	f.IntVar(&d.sim.Hosts, "sim-hosts", def.Hosts, "sim driver: how many hosts to simulate")
	f.StringVar(&d.sim.Prefix, "sim-prefix", def.Prefix, "sim driver: host names are PREFIX-0000, PREFIX-0001...")
	f.Int64Var(&d.sim.CPUs, "sim-cpus", def.CPUs, "sim driver: cores per host")
	f.Int64Var(&d.sim.MemoryMiB, "sim-memory", def.MemoryMiB, "sim driver: MiB of memory per host")
	f.Int64Var(&d.sim.DiskGiB, "sim-disk", def.DiskGiB, "sim driver: GiB of disk per host")
	f.DurationVar(&d.sim.BootDelay, "sim-boot-delay", 0, "sim driver: time a boot takes")
	f.DurationVar(&d.sim.StopDelay, "sim-stop-delay", 0, "sim driver: time a graceful stop takes")
	f.Float64Var(&d.sim.FailRate, "sim-fail-rate", 0, "sim driver: share of boots that fail (0-1)")
	f.StringVar(&d.qemu.Accel, "qemu-accel", "auto", "qemu driver: auto (KVM if a probe boot under it works, else TCG), kvm or tcg")
	f.Int64Var(&d.qemu.MigrateBandwidthMiB, "qemu-migrate-bandwidth", 0, "qemu driver: MiB/s a live migration from this host may use (memory and disk each; 0: QEMU's default)")
	f.Int64Var(&d.maxUnpackedGiB, "image-max-unpacked", local.DefaultMaxUnpacked>>30, "container and qemu drivers: GiB one image may unpack to in this host's image cache (a gzip bomb stops there)")
	f.StringVar(&d.vtep, "vtep", "auto", "this host's address for the VXLAN tunnels of virtual networks (auto: the default route's interface)")
	f.StringToStringVar(&d.uplinks, "uplink", nil, "NETWORK=DEVICE: bridge this host device into external network NETWORK (floating IPs); repeatable")
}

// configs checks a driver list - sim alone, or any of container and qemu
// (combined into one host) - and returns the listed drivers' own
// configurations, checked.
func (d *driverFlags) configs(flag, list string) (driver.Configs, error) {
	all := driver.Configs{}
	names := strings.Split(list, ",")
	for _, n := range names {
		switch n {
		case "container":
			all[n] = container.Config{MaxUnpacked: d.maxUnpackedGiB << 30}
		case "qemu":
			q := d.qemu
			q.MaxUnpacked = d.maxUnpackedGiB << 30
			all[n] = q
		case "sim":
			if len(names) > 1 {
				return nil, fmt.Errorf("--%s %q: sim runs alone", flag, list)
			}
			s := d.sim
			s.Seed = time.Now().UnixNano()
			all[n] = s
		default:
			return nil, fmt.Errorf("--%s %q: use container (runc), qemu (VMs), container,qemu (both on one host) or sim", flag, list)
		}
		if err := all[n].Validate(); err != nil {
			return nil, err
		}
	}
	return all, nil
}

func agentCommand(root *cobra.Command) {
	var (
		server, token, name, stateDir, drv, logLevel, hostName string
		cgroupParent                                           string
		heartbeat, fenceGrace                                  time.Duration
		volumeBandwidthMiB                                     int64
		fenceWatchdog                                          bool
		drivers                                                driverFlags
	)
	cmd := &cobra.Command{
		Use:   "agent",
		Short: "Run a host agent: join the cloud and run instances on this machine's (or simulated) hosts",
		Long: `Run a host agent. The first start joins the cloud with a join token
('kumo host join-token create' on the server makes one; it carries the server
CA's fingerprint, so no other trust setting is needed). The agent keeps its
credential in --state-dir and re-attaches to its instances on restart.`,
		Example: "  kumo agent --server https://10.0.0.1:8443 --join-token kumo-join.… --driver sim --sim-hosts 2000",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := newLogger(logLevel, "text")
			if err != nil {
				return err
			}
			if fenceWatchdog {
				drivers.qemu.Accel = "tcg" // stopping needs no probe
			}
			cfgs, err := drivers.configs("driver", drv)
			if err != nil {
				return err
			}
			if err := local.ValidCgroupParent(cgroupParent); err != nil {
				return fmt.Errorf("--cgroup-parent: %w", err)
			}
			common := driver.Common{StateDir: stateDir, HostName: hostName, CgroupParent: cgroupParent}
			if fenceWatchdog {
				return runFenceWatchdog(cmd.Context(), drv, common, cfgs, log)
			}
			// Instances outlive their agent; a dead agent's HA instances
			// are fenced by its watchdog (the simulator's live and die
			// with it).
			if fenceGrace > 0 && drv != "sim" {
				if err := startFenceWatchdog(stateDir); err != nil {
					return err
				}
			}
			conn := agent.NewConn(agent.ConnConfig{Server: server, JoinToken: token, Name: name, StateDir: stateDir, Log: log})
			// The drivers start under the command's context: an agent
			// stopped meanwhile (the qemu driver's KVM probe) stops them.
			common.Images = conn
			d, err := driver.Open(cmd.Context(), drv, common, cfgs)
			if err != nil {
				return err
			}
			a, err := agent.New(cmd.Context(), agent.Config{Conn: conn, Driver: d, HeartbeatEvery: heartbeat, FenceGrace: fenceGrace, Log: log, VTEP: drivers.vtep, Uplinks: drivers.uplinks,
				VolumeBandwidth: volumeBandwidthMiB << 20})
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "kumo agent %s running (%s driver)\n", a.ID(), drv)
			return a.Run(cmd.Context())
		},
	}
	f := cmd.Flags()
	f.StringVar(&server, "server", os.Getenv("KUMO_SERVER"), "the server's https URL")
	f.StringVar(&token, "join-token", os.Getenv("KUMO_JOIN_TOKEN"), "join token (first start only)")
	f.StringVar(&name, "name", "", "agent name (default: host name)")
	f.StringVar(&hostName, "host-name", "", "container and qemu drivers: the name of the host this agent brings (default: the machine's host name)")
	f.StringVar(&stateDir, "state-dir", "/var/lib/kumo-agent", "credential and driver state")
	f.StringVar(&cgroupParent, "cgroup-parent", local.DefaultCgroupParent, "container and qemu drivers: the cgroup (below each hierarchy's root) that instances' cgroups are made in; two agents on one machine need one each")
	f.StringVar(&drv, "driver", "container", "driver: container (runc), qemu (VMs), container,qemu (both) or sim")
	f.DurationVar(&heartbeat, "heartbeat", 5*time.Second, "heartbeat interval")
	f.DurationVar(&fenceGrace, "fence-grace", 30*time.Second, "stop this host's HA instances when the server has not answered for this long (self-fencing; 0: never, and they are never recreated elsewhere); keep it 5s under the server's --ha-fence-timeout")
	f.BoolVar(&fenceWatchdog, "fence-watchdog", false, "run as the agent's fencing watchdog (the agent starts it)")
	f.MarkHidden("fence-watchdog")
	f.Int64Var(&volumeBandwidthMiB, "migrate-volume-bandwidth", 0, "MiB/s the volume files a cold migration sends from this host may use (0: no cap)")
	f.StringVar(&logLevel, "log-level", "info", "debug, info, warn or error")
	drivers.register(f)
	root.AddCommand(cmd)
}
