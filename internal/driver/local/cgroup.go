package local

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/containerd/cgroups/v3"
	"github.com/containerd/cgroups/v3/cgroup1"
	"github.com/containerd/cgroups/v3/cgroup2"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// An instance's processes live in cgroup /kumo/<id> of every hierarchy
// the host has (runc puts containers there, from config.json's
// cgroupsPath; JoinCgroup puts VMs there): their usage is read there, the
// flavor's limits hold there, and a restart of the agent's own cgroup (a
// systemd unit) does not take them along. The hierarchies are found by
// github.com/containerd/cgroups: cgroup v2, or v1 with its controllers
// mounted together (cpu,cpuacct) or apart (cpu and cpuacct, as on hosts
// with a hybrid layout), plus, in the hybrid layout, the v2 hierarchy at
// /sys/fs/cgroup/unified that systemd tracks units by.

// CgroupPeriod is the CPU accounting period (µs) limits are set in.
const CgroupPeriod = 100000

// Limits are what an instance's cgroup holds it to; zero means no limit.
type Limits struct {
	// VCPUs bounds CPU time: a quota of VCPUs periods per period.
	VCPUs int64
	// MemoryBytes bounds memory (and page cache the instance causes).
	MemoryBytes int64
}

func (l Limits) resources() *specs.LinuxResources {
	r := &specs.LinuxResources{}
	if l.VCPUs > 0 {
		period, quota := uint64(CgroupPeriod), l.VCPUs*CgroupPeriod
		r.CPU = &specs.LinuxCPU{Period: &period, Quota: &quota}
	}
	if l.MemoryBytes > 0 {
		mem := l.MemoryBytes
		r.Memory = &specs.LinuxMemory{Limit: &mem}
	}
	return r
}

// CgroupPath is an instance's cgroup, below each hierarchy's root.
func CgroupPath(id string) string { return "/kumo/" + id }

// unifiedHybrid is where the v2 hierarchy is mounted in the hybrid layout.
const unifiedHybrid = "/sys/fs/cgroup/unified"

// JoinCgroup makes the instance's cgroup with its limits and moves pid
// (all its threads) into it.
func JoinCgroup(pid int, id string, lim Limits) error {
	if cgroups.Mode() == cgroups.Unified {
		m, err := cgroup2.NewManager("/sys/fs/cgroup", CgroupPath(id), cgroup2.ToResources(lim.resources()))
		if err != nil {
			return fmt.Errorf("cgroup %s: %w", CgroupPath(id), err)
		}
		return m.AddProc(uint64(pid))
	}
	cg, err := cgroup1.New(cgroup1.StaticPath(CgroupPath(id)), lim.resources())
	if err != nil {
		return fmt.Errorf("cgroup %s: %w", CgroupPath(id), err)
	}
	if err := cg.Add(cgroup1.Process{Pid: pid}); err != nil {
		return fmt.Errorf("cgroup %s: %w", CgroupPath(id), err)
	}
	if cgroups.Mode() == cgroups.Hybrid {
		// No controllers there: only systemd's tracking of the process.
		m, err := cgroup2.NewManager(unifiedHybrid, CgroupPath(id), &cgroup2.Resources{})
		if err != nil {
			return fmt.Errorf("cgroup %s: %w", CgroupPath(id), err)
		}
		return m.AddProc(uint64(pid))
	}
	return nil
}

// RemoveCgroup removes the instance's cgroup. A process that was just
// killed may still be leaving it (the kernel refuses to remove a cgroup
// with a task in it), so removal is retried for up to two seconds.
func RemoveCgroup(id string) {
	remove := func() error {
		if cgroups.Mode() == cgroups.Unified {
			return removeV2("/sys/fs/cgroup", id)
		}
		var errs []error
		if cg, err := cgroup1.Load(cgroup1.StaticPath(CgroupPath(id))); err == nil {
			errs = append(errs, cg.Delete())
		} else if !errors.Is(err, cgroup1.ErrCgroupDeleted) {
			errs = append(errs, err)
		}
		if cgroups.Mode() == cgroups.Hybrid {
			errs = append(errs, removeV2(unifiedHybrid, id))
		}
		return errors.Join(errs...)
	}
	for i := 0; i < 100 && remove() != nil; i++ {
		time.Sleep(20 * time.Millisecond)
	}
}

func removeV2(mount, id string) error {
	if _, err := os.Stat(filepath.Join(mount, CgroupPath(id))); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	m, err := cgroup2.Load(CgroupPath(id), cgroup2.WithMountpoint(mount))
	if err != nil {
		return err
	}
	return m.Delete()
}

// CgroupUsage reads the CPU time (seconds) and memory (MiB) of the
// instance's cgroup; zeros when it has none.
func CgroupUsage(id string) (float64, int64) {
	if cgroups.Mode() == cgroups.Unified {
		m, err := cgroup2.Load(CgroupPath(id))
		if err != nil {
			return 0, 0
		}
		st, err := m.StatFiltered(cgroup2.StatCPU | cgroup2.StatMemory)
		if err != nil || st.CPU == nil || st.Memory == nil {
			return 0, 0
		}
		return float64(st.CPU.UsageUsec) / 1e6, int64(st.Memory.Usage >> 20)
	}
	cg, err := cgroup1.Load(cgroup1.StaticPath(CgroupPath(id)), cgroup1.WithHierarchy(usageHierarchy))
	if err != nil {
		return 0, 0
	}
	st, err := cg.Stat(cgroup1.IgnoreNotExist)
	if err != nil {
		return 0, 0
	}
	var cpu float64
	var mem int64
	if st.CPU != nil && st.CPU.Usage != nil {
		cpu = float64(st.CPU.Usage.Total) / 1e9
	}
	if st.Memory != nil && st.Memory.Usage != nil {
		mem = int64(st.Memory.Usage.Usage >> 20)
	}
	return cpu, mem
}

// usageHierarchy is the v1 hierarchies usage is read from (not all of
// them: a status is asked for often).
func usageHierarchy() ([]cgroup1.Subsystem, error) {
	all, err := cgroup1.Default()
	var out []cgroup1.Subsystem
	for _, s := range all {
		if s.Name() == cgroup1.Cpuacct || s.Name() == cgroup1.Memory {
			out = append(out, s)
		}
	}
	return out, err
}
