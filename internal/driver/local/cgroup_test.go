package local

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

func TestCgroupParent(t *testing.T) {
	for _, tc := range []struct {
		parent, path string
		ok           bool
	}{
		{"", "/kumo/i1", true},
		{"kumo", "/kumo/i1", true},
		{"kumo-m1", "/kumo-m1/i1", true},
		{"machine.slice/kumo_2", "/machine.slice/kumo_2/i1", true},
		{"../escape", "", false},
		{"a/../b", "", false},
		{"/abs", "", false},
		{"a//b", "", false},
		{".", "", false},
		{"sp ace", "", false},
	} {
		err := ValidCgroupParent(tc.parent)
		if (err == nil) != tc.ok {
			t.Errorf("ValidCgroupParent(%q) = %v, want ok %v", tc.parent, err, tc.ok)
		}
		if tc.ok {
			if got := (Cgroups{Parent: tc.parent}).Path("i1"); got != tc.path {
				t.Errorf("Path with parent %q = %q, want %q", tc.parent, got, tc.path)
			}
		}
	}
}

// TestCgroupsOfTwoParents: one instance id under two parents (two agents
// on one machine, each holding one side of a migration) is two cgroups,
// each holding its own process, and removing one leaves the other.
func TestCgroupsOfTwoParents(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to make cgroups")
	}
	a, b := Cgroups{Parent: "kumo-test-a"}, Cgroups{Parent: "kumo-test-b"}
	sleep := func() *exec.Cmd {
		c := exec.Command("sleep", "600")
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Process.Kill(); c.Wait() })
		return c
	}
	pa, pb := sleep(), sleep()
	t.Cleanup(func() {
		pa.Process.Kill()
		pb.Process.Kill()
		pa.Wait()
		pb.Wait()
		a.Remove("i1")
		b.Remove("i1")
		a.RemoveParent()
		b.RemoveParent()
	})
	if err := a.Join(pa.Process.Pid, "i1", Limits{MemoryBytes: 64 << 20}); err != nil {
		t.Fatal(err)
	}
	if err := b.Join(pb.Process.Pid, "i1", Limits{MemoryBytes: 32 << 20}); err != nil {
		t.Fatal(err)
	}
	cgroupOf := func(pid int) string {
		bs, _ := os.ReadFile(filepathProc(pid))
		return string(bs)
	}
	if got := cgroupOf(pa.Process.Pid); !strings.Contains(got, a.Path("i1")) {
		t.Errorf("a's process is not in %s: %s", a.Path("i1"), got)
	}
	if got := cgroupOf(pb.Process.Pid); !strings.Contains(got, b.Path("i1")) || strings.Contains(got, a.Path("i1")) {
		t.Errorf("b's process is not in %s alone: %s", b.Path("i1"), got)
	}
	pa.Process.Kill()
	pa.Wait()
	a.Remove("i1")
	if got := cgroupOf(pb.Process.Pid); !strings.Contains(got, b.Path("i1")) {
		t.Errorf("removing a's cgroup moved b's process: %s", got)
	}
	pb.Process.Kill()
	pb.Wait()
	b.Remove("i1")
	a.RemoveParent()
	b.RemoveParent()
	left, _ := filepath.Glob("/sys/fs/cgroup/*/kumo-test-[ab]")
	if len(left) > 0 {
		t.Errorf("parents left behind: %v", left)
	}
}

func filepathProc(pid int) string { return filepath.Join("/proc", strconv.Itoa(pid), "cgroup") }
