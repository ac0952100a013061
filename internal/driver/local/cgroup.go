package local

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/containerd/cgroups/v3"
	"github.com/containerd/cgroups/v3/cgroup1"
	"github.com/containerd/cgroups/v3/cgroup2"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// An instance's processes live in cgroup /kumo/<id> of every hierarchy
// the host has (runc puts containers there, from config.json's
// cgroupsPath; Cgroups.Join puts VMs there): their usage is read there, the
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

// DefaultCgroupParent is the cgroup instances' cgroups are made in,
// below each hierarchy's root, unless the agent is given another
// (--cgroup-parent, as Docker's and the kubelet's flag of that name).
const DefaultCgroupParent = "kumo"

// Cgroups names and manages instances' cgroups below one parent. Two
// agents on one machine (tests, or a lab holding two "hosts") each need a
// parent of their own: with one, the two QEMUs of a migration between
// them would share one cgroup, its CPU quota and memory limit, and the
// target's cleanup would remove the source's cgroup.
type Cgroups struct {
	// Parent is a relative cgroup path ("" is DefaultCgroupParent).
	Parent string
}

// ValidCgroupParent checks a --cgroup-parent: one or more names of
// letters, digits, '.', '_' and '-', separated by '/', none "." or "..".
func ValidCgroupParent(p string) error {
	if p == "" {
		return nil
	}
	for _, part := range strings.Split(p, "/") {
		ok := part != "" && part != "." && part != ".."
		for _, r := range part {
			ok = ok && (r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-')
		}
		if !ok {
			return fmt.Errorf("cgroup parent %q: give a relative path of names made of letters, digits, '.', '_' and '-' (not '.' or '..')", p)
		}
	}
	return nil
}

// Path is an instance's cgroup, below each hierarchy's root.
func (c Cgroups) Path(id string) string {
	p := c.Parent
	if p == "" {
		p = DefaultCgroupParent
	}
	return "/" + p + "/" + id
}

// unifiedHybrid is where the v2 hierarchy is mounted in the hybrid layout.
const unifiedHybrid = "/sys/fs/cgroup/unified"

// RemoveParent removes the parent cgroup from every hierarchy where it is
// empty (an agent leaves its parent in place; a test that gave agents
// parents of their own removes them when it ends).
func (c Cgroups) RemoveParent() {
	p := c.Parent
	if p == "" {
		p = DefaultCgroupParent
	}
	dirs, _ := filepath.Glob(filepath.Join("/sys/fs/cgroup", "*", p))
	dirs = append(dirs, filepath.Join("/sys/fs/cgroup", p))
	for _, d := range dirs {
		// Deepest first: a parent of several names is removed name by
		// name, while each is empty.
		for rel := p; rel != "." && rel != "/"; rel = filepath.Dir(rel) {
			if os.Remove(filepath.Join(strings.TrimSuffix(d, p), rel)) != nil {
				break
			}
		}
	}
}

// Join makes the instance's cgroup with its limits and moves pid (all
// its threads) into it.
func (c Cgroups) Join(pid int, id string, lim Limits) error {
	path := c.Path(id)
	if cgroups.Mode() == cgroups.Unified {
		m, err := cgroup2.NewManager("/sys/fs/cgroup", path, cgroup2.ToResources(lim.resources()))
		if err != nil {
			return fmt.Errorf("cgroup %s: %w", path, err)
		}
		return m.AddProc(uint64(pid))
	}
	cg, err := cgroup1.New(cgroup1.StaticPath(path), lim.resources())
	if err != nil {
		return fmt.Errorf("cgroup %s: %w", path, err)
	}
	if err := cg.Add(cgroup1.Process{Pid: pid}); err != nil {
		return fmt.Errorf("cgroup %s: %w", path, err)
	}
	if cgroups.Mode() == cgroups.Hybrid {
		// No controllers there: only systemd's tracking of the process.
		m, err := cgroup2.NewManager(unifiedHybrid, path, &cgroup2.Resources{})
		if err != nil {
			return fmt.Errorf("cgroup %s: %w", path, err)
		}
		return m.AddProc(uint64(pid))
	}
	return nil
}

// Remove removes the instance's cgroup. A process that was just killed
// may still be leaving it (the kernel refuses to remove a cgroup with a
// task in it), so removal is retried for up to two seconds.
func (c Cgroups) Remove(id string) {
	path := c.Path(id)
	remove := func() error {
		if cgroups.Mode() == cgroups.Unified {
			return removeV2("/sys/fs/cgroup", path)
		}
		var errs []error
		if cg, err := cgroup1.Load(cgroup1.StaticPath(path)); err == nil {
			errs = append(errs, cg.Delete())
		} else if !errors.Is(err, cgroup1.ErrCgroupDeleted) {
			errs = append(errs, err)
		}
		if cgroups.Mode() == cgroups.Hybrid {
			errs = append(errs, removeV2(unifiedHybrid, path))
		}
		return errors.Join(errs...)
	}
	for i := 0; i < 100 && remove() != nil; i++ {
		time.Sleep(20 * time.Millisecond)
	}
}

func removeV2(mount, path string) error {
	if _, err := os.Stat(filepath.Join(mount, path)); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	m, err := cgroup2.Load(path, cgroup2.WithMountpoint(mount))
	if err != nil {
		return err
	}
	return m.Delete()
}

// Usage reads the CPU time (seconds) and memory (MiB) of the instance's
// cgroup; zeros when it has none.
func (c Cgroups) Usage(id string) (float64, int64) {
	path := c.Path(id)
	if cgroups.Mode() == cgroups.Unified {
		m, err := cgroup2.Load(path)
		if err != nil {
			return 0, 0
		}
		st, err := m.StatFiltered(cgroup2.StatCPU | cgroup2.StatMemory)
		if err != nil || st.CPU == nil || st.Memory == nil {
			return 0, 0
		}
		return float64(st.CPU.UsageUsec) / 1e6, int64(st.Memory.Usage >> 20)
	}
	cg, err := cgroup1.Load(cgroup1.StaticPath(path), cgroup1.WithHierarchy(usageHierarchy))
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
