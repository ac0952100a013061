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
	_ "github.com/kumocloud/kumo/internal/driver/container" // registers "container"
	"github.com/kumocloud/kumo/internal/driver/local"
	_ "github.com/kumocloud/kumo/internal/driver/qemu" // registers "qemu"
	_ "github.com/kumocloud/kumo/internal/driver/sim"  // registers "sim"
)

// driverFlags are the drivers' settings, shared by 'kumo server --drivers'
// and 'kumo agent --driver'.
type driverFlags struct {
	sim   simFlags
	accel string
	// maxUnpackedGiB bounds what one image unpacks to in a host's cache.
	maxUnpackedGiB int64
	vtep           string
	uplinks        map[string]string
}

func (d *driverFlags) register(f *pflag.FlagSet) {
	d.sim.register(f)
	f.StringVar(&d.accel, "qemu-accel", "auto", "qemu driver: auto (KVM if a probe boot under it works, else TCG), kvm or tcg")
	f.Int64Var(&d.maxUnpackedGiB, "image-max-unpacked", local.DefaultMaxUnpacked>>30, "container and qemu drivers: GiB one image may unpack to in this host's image cache (a gzip bomb stops there)")
	f.StringVar(&d.vtep, "vtep", "auto", "this host's address for the VXLAN tunnels of virtual networks (auto: the default route's interface)")
	f.StringToStringVar(&d.uplinks, "uplink", nil, "NETWORK=DEVICE: bridge this host device into external network NETWORK (floating IPs); repeatable")
}

func (d *driverFlags) options() driver.Options {
	o := d.sim.options()
	o.QemuAccel = d.accel
	o.MaxUnpacked = d.maxUnpackedGiB << 30
	return o
}

// checkDrivers validates a driver list: sim alone, or any of container
// and qemu (combined into one host).
func checkDrivers(flag, list string) error {
	names := strings.Split(list, ",")
	for _, n := range names {
		switch n {
		case "container", "qemu":
		case "sim":
			if len(names) == 1 {
				continue
			}
			return fmt.Errorf("--%s %q: sim runs alone", flag, list)
		default:
			return fmt.Errorf("--%s %q: use container (runc), qemu (VMs), container,qemu (both on one host) or sim", flag, list)
		}
	}
	return nil
}

// simFlags are the simulator's settings, shared by 'kumo server --drivers
// sim' and 'kumo agent --driver sim'.
type simFlags struct {
	hosts           int
	prefix          string
	cpus, mem, disk int64
	boot, stop      time.Duration
	failRate        float64
}

func (s *simFlags) register(f *pflag.FlagSet) {
	f.IntVar(&s.hosts, "sim-hosts", 1, "sim driver: how many hosts to simulate")
	f.StringVar(&s.prefix, "sim-prefix", "sim", "sim driver: host names are PREFIX-0000, PREFIX-0001...")
	f.Int64Var(&s.cpus, "sim-cpus", 16, "sim driver: cores per host")
	f.Int64Var(&s.mem, "sim-memory", 65536, "sim driver: MiB of memory per host")
	f.Int64Var(&s.disk, "sim-disk", 1000, "sim driver: GiB of disk per host")
	f.DurationVar(&s.boot, "sim-boot-delay", 0, "sim driver: time a boot takes")
	f.DurationVar(&s.stop, "sim-stop-delay", 0, "sim driver: time a graceful stop takes")
	f.Float64Var(&s.failRate, "sim-fail-rate", 0, "sim driver: share of boots that fail (0-1)")
}

func (s *simFlags) options() driver.Options {
	return driver.Options{SimHosts: s.hosts, SimPrefix: s.prefix, SimCPUs: s.cpus, SimMemoryMiB: s.mem, SimDiskGiB: s.disk,
		SimBootDelay: s.boot, SimStopDelay: s.stop, SimFailRate: s.failRate, SimSeed: time.Now().UnixNano()}
}

func agentCommand(root *cobra.Command) {
	var (
		server, token, name, stateDir, drv, logLevel, hostName string
		heartbeat                                              time.Duration
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
			if err := checkDrivers("driver", drv); err != nil {
				return err
			}
			o := drivers.options()
			o.HostName = hostName
			conn := agent.NewConn(agent.ConnConfig{Server: server, JoinToken: token, Name: name, StateDir: stateDir, Log: log})
			o.FetchImage = conn.FetchImage
			d, err := driver.Open(drv, stateDir, o)
			if err != nil {
				return err
			}
			a, err := agent.New(cmd.Context(), agent.Config{Conn: conn, Driver: d, HeartbeatEvery: heartbeat, Log: log, VTEP: drivers.vtep, Uplinks: drivers.uplinks})
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
	f.StringVar(&drv, "driver", "container", "driver: container (runc), qemu (VMs), container,qemu (both) or sim")
	f.DurationVar(&heartbeat, "heartbeat", 5*time.Second, "heartbeat interval")
	f.StringVar(&logLevel, "log-level", "info", "debug, info, warn or error")
	drivers.register(f)
	root.AddCommand(cmd)
}
