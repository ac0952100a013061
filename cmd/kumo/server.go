package main

import (
	"fmt"
	"log/slog"
	"os"
	"runtime/debug"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/kumocloud/kumo/internal/cli"
	"github.com/kumocloud/kumo/internal/compute"
	"github.com/kumocloud/kumo/internal/identity"
	"github.com/kumocloud/kumo/internal/quota"
	"github.com/kumocloud/kumo/internal/server"
)

func serverCommand(root *cobra.Command) {
	var (
		dataDir, listen, socket, etcdEndpoints, etcdPrefix string
		defaultQuota, logLevel, logFormat, maxImageSize    string
		heapLimit                                          string
		tokenTTL, eventRetention, hostGrace, fenceTimeout  time.Duration
		sessionIdle                                        time.Duration
		drivers, policy, currency, metricsTokenFile        string
		drvFlags                                           driverFlags
		egressNAT                                          bool
		minFreeMiB                                         int64
		apiRate                                            server.APIRate
	)
	cmd := &cobra.Command{
		Use:   "server",
		Short: "Run the kumo server (API, embedded store, controllers) on this machine",
		Long: `Run the all-in-one kumo server.

At first start it makes the data dir, a CA and server certificate for HTTPS,
the cloud admin (credentials printed once and kept 0600 in DATA_DIR/admin-credentials),
the "default" project and the default flavors. State lives in an embedded etcd
under DATA_DIR, or in an external etcd cluster with --etcd-endpoints.
Root on this machine reaches the server through the Unix socket with no login.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := newLogger(logLevel, logFormat)
			if err != nil {
				return err
			}
			opts := identity.DefaultOptions()
			if tokenTTL > 0 {
				opts.TokenTTL = tokenTTL
			}
			changes, err := quota.ParseSpec(defaultQuota)
			if err != nil {
				return fmt.Errorf("--default-quota: %w", err)
			}
			if err := quota.Apply(&opts.DefaultQuota, changes, "default-quota"); err != nil {
				return fmt.Errorf("--default-quota: %w", err)
			}
			maxImageMiB, err := quota.ParseMiB(maxImageSize)
			if err != nil || maxImageMiB <= 0 {
				return fmt.Errorf("--max-image-size %q: give a size such as 20GiB or 512MiB", maxImageSize)
			}
			if err := tuneGC(heapLimit); err != nil {
				return err
			}
			cfg := server.Config{
				DataDir: dataDir, Listen: listen, Socket: socket, EtcdPrefix: etcdPrefix,
				Identity: opts, EventRetention: eventRetention, Version: version, Logger: log,
				UnsafeNoFsync: os.Getenv("KUMO_UNSAFE_NO_FSYNC") == "1", MinFreeSpace: minFreeMiB << 20,
				HostGrace: hostGrace, HAFenceTimeout: fenceTimeout, SchedulerPolicy: policy, Currency: currency,
				EgressNAT: egressNAT, MetricsTokenFile: metricsTokenFile, MaxImageMiB: maxImageMiB,
				APIRate: apiRate, SessionIdle: sessionIdle,
			}
			if drivers != "" && drivers != "none" {
				cfgs, err := drvFlags.configs("drivers", drivers)
				if err != nil {
					return err
				}
				cfg.LocalDriver, cfg.LocalDriverConfigs, cfg.LocalVTEP, cfg.LocalUplinks = drivers, cfgs, drvFlags.vtep, drvFlags.uplinks
			}
			if etcdEndpoints != "" {
				cfg.EtcdEndpoints = strings.Split(etcdEndpoints, ",")
			}
			ctx := cmd.Context()
			srv, err := server.New(ctx, cfg)
			if err != nil {
				return err
			}
			if srv.AdminPassword != "" {
				fmt.Fprintf(cmd.OutOrStdout(), "kumo: first start. Cloud admin: user %q, password %q (also in %s/admin-credentials, mode 0600).\n",
					identity.AdminUser, srv.AdminPassword, dataDir)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "kumo: serving https://%s and %s; CA fingerprint %s\n", listen, socket, srv.CAFingerprint())
			return srv.Serve(ctx)
		},
	}
	f := cmd.Flags()
	f.StringVar(&dataDir, "data-dir", "/var/lib/kumo", "where the store, certificates and credentials live")
	f.StringVar(&listen, "listen", ":8443", "HTTPS listen address (empty: none)")
	f.StringVar(&socket, "socket", cli.DefaultSocket, "Unix socket path for local root access (empty: none)")
	f.StringVar(&etcdEndpoints, "etcd-endpoints", "", "use this external etcd cluster (comma-separated URLs) instead of the embedded one")
	f.StringVar(&etcdPrefix, "etcd-prefix", "/kumo", "key prefix in an external etcd")
	f.StringVar(&defaultQuota, "default-quota", "", "quota of new projects, e.g. instances=20,vcpus=40,memory=80GiB (unnamed limits keep the built-in defaults)")
	f.DurationVar(&tokenTTL, "token-ttl", 0, "lifetime of new API tokens (default 168h)")
	f.DurationVar(&sessionIdle, "session-idle", server.DefaultSessionIdle, "a browser session with no request for this long ends (its token is revoked; 0: sessions end only when their token expires)")
	f.StringVar(&heapLimit, "heap-limit", "1GiB", "soft limit of the server's Go heap: garbage is collected less often below it (throughput), more often near it (0: none; GOGC and GOMEMLIMIT in the environment override)")
	f.StringVar(&maxImageSize, "max-image-size", "20GiB", "the largest image the cloud takes, as uploaded and as unpacked on a host (a tarball's files, a disk file)")
	f.DurationVar(&eventRetention, "event-retention", 24*time.Hour, "how long events are kept")
	f.BoolVar(&egressNAT, "egress-nat", false, "let tenant networks reach past the hosts' default routes, masqueraded behind each host's address (off: only floating IPs leave)")
	f.StringVar(&drivers, "drivers", "", "run a local agent with these drivers: container (runc), qemu (VMs), container,qemu (both on this host) or sim")
	f.StringVar(&currency, "currency", "EUR", "currency of all prices and budgets")
	f.StringVar(&policy, "scheduler-policy", "packing", "packing, striping or load-aware")
	f.DurationVar(&hostGrace, "host-grace", 15*time.Second, "a host silent this long goes OFFLINE and its instances UNKNOWN")
	f.DurationVar(&fenceTimeout, "ha-fence-timeout", compute.DefaultFenceTimeout, "an HA instance whose host stays lost this long is recreated on another host (must exceed the agents' --fence-grace by 5s)")
	f.Int64Var(&minFreeMiB, "min-free-space-mib", 256, "MiB kept free on the data dir's disk: below it writes answer 507 and reads go on, until space is freed")
	f.StringVar(&metricsTokenFile, "metrics-token-file", "", "a file (mode 0600) holding a bearer token that lets Prometheus scrapers see per-project series on /metrics (without it: cloud admins only)")
	f.Float64Var(&apiRate.Rate, "api-rate", server.DefaultAPIRate.Rate, "requests a second each project (for its endpoints) and each user (for the rest) may make on average; cloud admins, the socket and agents are not limited (0: no limit)")
	f.IntVar(&apiRate.Burst, "api-burst", server.DefaultAPIRate.Burst, "requests a project or user may make at once before --api-rate applies")
	drvFlags.register(f)
	f.StringVar(&logLevel, "log-level", "info", "debug, info, warn or error")
	f.StringVar(&logFormat, "log-format", "text", "text or json")
	root.AddCommand(cmd)
}

func newLogger(level, format string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: use debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(os.Stderr, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(os.Stderr, opts)), nil
	}
	return nil, fmt.Errorf("--log-format %q: use text or json", format)
}

// tuneGC trades memory for CPU below a soft heap limit: the create path
// allocates briefly and much (JSON of every record written and watched),
// and with Go's default (a collection each time the heap doubles) garbage
// collection was ~15% of the server's CPU at 10,000 creates; collecting
// at thrice the live heap instead gave ~15% more creates a second on an
// idle machine (docs/SPECIFICATION.md). The limit keeps a large cloud's
// heap from growing with it: near the limit the runtime collects more
// often again. 1 GiB: at 100,000 instances the live heap is ~0.6 GiB and
// the embedded etcd's mapped database adds ~0.8 GiB of resident file
// pages; under 1.5 GiB the server's RSS passed 2 GiB. Below ~330 MiB of
// live heap (10,000 instances) the limit never bites. The environment's
// GOGC and GOMEMLIMIT win, as Go's do.
func tuneGC(limit string) error {
	mib, err := quota.ParseMiB(limit)
	if limit != "0" && (err != nil || mib <= 0) {
		return fmt.Errorf("--heap-limit %q: give a size such as 1536MiB or 2GiB, or 0 for none", limit)
	}
	if os.Getenv("GOMEMLIMIT") != "" {
		return nil // the operator's
	}
	if os.Getenv("GOGC") == "" && limit != "0" {
		debug.SetGCPercent(200)
	}
	if limit != "0" {
		debug.SetMemoryLimit(mib << 20)
	}
	return nil
}
