package container

import (
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strings"

	seccomp "github.com/moby/profiles/seccomp"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/kumocloud/kumo/internal/driver"
	"github.com/kumocloud/kumo/internal/driver/local"
)

// writeBundle writes config.json from runtime-spec types: the flavor's
// limits in cgroup /kumo/<id>, namespaces of its own for everything but
// users (a cgroup namespace too, so the container sees its cgroup as the
// root), Docker's default capabilities and seccomp profile, and no new
// privileges.
func (d *Driver) writeBundle(s driver.Spec) error {
	period := uint64(local.CgroupPeriod)
	quota := int64(period) * max(s.Size.VCPUs, 1)
	mem := s.Size.MemoryMiB << 20
	pids := int64(1024)
	swap := mem + s.Size.SwapMiB<<20 // the limit of memory and swap together
	spec := specs.Spec{
		Version:  specs.Version,
		Hostname: s.Name,
		Root:     &specs.Root{Path: "rootfs"},
		Process: &specs.Process{
			Args: []string{"/sbin/init"}, Cwd: "/",
			Env:  []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "container=kumo"},
			User: specs.User{UID: 0, GID: 0},
			Capabilities: &specs.LinuxCapabilities{
				Bounding:  defaultCaps,
				Effective: defaultCaps,
				Permitted: defaultCaps,
			},
			NoNewPrivileges: true,
			Rlimits:         []specs.POSIXRlimit{{Type: "RLIMIT_NOFILE", Hard: 1024, Soft: 1024}},
		},
		Mounts: []specs.Mount{
			{Destination: "/proc", Type: "proc", Source: "proc"},
			{Destination: "/dev", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "strictatime", "mode=755", "size=65536k"}},
			{Destination: "/dev/pts", Type: "devpts", Source: "devpts", Options: []string{"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"}},
			{Destination: "/dev/shm", Type: "tmpfs", Source: "shm", Options: []string{"nosuid", "noexec", "nodev", "mode=1777", "size=65536k"}},
			{Destination: "/dev/mqueue", Type: "mqueue", Source: "mqueue", Options: []string{"nosuid", "noexec", "nodev"}},
			{Destination: "/sys", Type: "sysfs", Source: "sysfs", Options: []string{"nosuid", "noexec", "nodev", "ro"}},
			{Destination: "/run", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "nodev", "mode=755"}},
		},
		Linux: &specs.Linux{
			CgroupsPath: d.cgroups.Path(s.ID),
			Resources: &specs.LinuxResources{
				Memory:  &specs.LinuxMemory{Limit: &mem, Swap: &swap},
				CPU:     &specs.LinuxCPU{Quota: &quota, Period: &period},
				Pids:    &specs.LinuxPids{Limit: &pids},
				Devices: []specs.LinuxDeviceCgroup{{Allow: false, Access: "rwm"}},
			},
			Namespaces: []specs.LinuxNamespace{{Type: specs.PIDNamespace}, {Type: specs.MountNamespace}, {Type: specs.UTSNamespace},
				{Type: specs.IPCNamespace}, {Type: specs.NetworkNamespace}, {Type: specs.CgroupNamespace}},
			MaskedPaths:   []string{"/proc/kcore", "/proc/keys", "/proc/timer_list", "/sys/firmware"},
			ReadonlyPaths: []string{"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"},
		},
	}
	spec.Mounts = append(spec.Mounts, volumeMounts(s.Volumes)...)
	if s.NetNS != "" {
		// The agent made and wired it: eth0 with the port's address.
		for i, ns := range spec.Linux.Namespaces {
			if ns.Type == specs.NetworkNamespace {
				spec.Linux.Namespaces[i].Path = s.NetNS
			}
		}
	}
	sc, err := seccompProfile(&spec, s.Nesting)
	if err != nil {
		return err
	}
	spec.Linux.Seccomp = sc
	b, err := json.MarshalIndent(spec, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(d.inst.Path(s.ID, "config.json"), b, 0o600)
}

// nestingSyscalls are what Spec.Nesting allows beyond Docker's default
// profile, and all it relaxes: the namespace calls with any flags
// (unshare, clone, clone3, setns), the mount calls (mount, umount2, the
// new mount API, pivot_root) and sethostname/setdomainname. The container
// still has no CAP_SYS_ADMIN in the host's user namespace, so the kernel
// lets these succeed only inside a user namespace the container makes
// itself: what it gains is user namespaces and, in them, the namespaces,
// mounts and hostnames a nested runtime (runc, podman, LXC) needs; what
// the host takes on is the kernel's user-namespace attack surface, which
// is why only a flavor (made by cloud admins) turns it on.
var nestingSyscalls = []string{"unshare", "clone", "clone3", "setns", "mount", "umount", "umount2", "mount_setattr", "move_mount",
	"open_tree", "fsopen", "fsconfig", "fsmount", "fspick", "pivot_root", "sethostname", "setdomainname"}

// seccompProfile is Docker's default profile for the spec's capabilities
// (github.com/moby/profiles/seccomp): without CAP_SYS_ADMIN it refuses
// unshare, setns, mount, clone with any namespace flag and clone3 (ENOSYS,
// so libc falls back to clone), and so user namespaces; and calls such as
// keyctl, add_key, bpf and perf_event_open. With nesting, nestingSyscalls
// are allowed without conditions.
func seccompProfile(spec *specs.Spec, nesting bool) (*specs.LinuxSeccomp, error) {
	sc, err := seccomp.GetDefaultProfile(spec)
	if err != nil {
		return nil, fmt.Errorf("seccomp profile: %w", err)
	}
	if !nesting {
		return sc, nil
	}
	// Each nesting call leaves the rules that named it (with argument
	// conditions or another action: libseccomp refuses two unconditional
	// rules for one call) and joins one unconditional allow.
	var rules []specs.LinuxSyscall
	for _, r := range sc.Syscalls {
		r.Names = slices.DeleteFunc(slices.Clone(r.Names), func(n string) bool { return slices.Contains(nestingSyscalls, n) })
		if len(r.Names) > 0 {
			rules = append(rules, r)
		}
	}
	sc.Syscalls = append(rules, specs.LinuxSyscall{Names: nestingSyscalls, Action: specs.ActAllow})
	return sc, nil
}

// resolvConf lists the name servers of an instance's networks.
func resolvConf(nics []driver.NIC) string {
	var b strings.Builder
	seen := map[string]bool{}
	var search []string
	for _, n := range nics {
		for _, d := range n.DNS {
			if !seen[d] {
				seen[d] = true
				fmt.Fprintf(&b, "nameserver %s\n", d)
			}
		}
		// The network's own domain, where its instances' names are.
		if n.Domain != "" && len(n.DNS) > 0 && !slices.Contains(search, n.Domain) {
			search = append(search, n.Domain)
		}
	}
	if len(search) > 0 && b.Len() > 0 {
		fmt.Fprintf(&b, "search %s\n", strings.Join(search, " "))
	}
	return b.String()
}

var defaultCaps = []string{"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW", "CAP_SETGID",
	"CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE"}
