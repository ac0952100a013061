// Package local holds what the drivers that run instances on this machine
// (container, qemu) share: the host's facts, the image cache filled by
// hash from the image service, tarball extraction bounded in size and
// confined to its root (Root: every path in tenant content resolved by
// the kernel inside it), instances' cgroups, and console log tails.
package local

import (
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"syscall"
)

// Facts are what a host says of itself.
type Facts struct {
	Arch, Kernel, CPUModel string
	CPUs                   int64
	MemoryMiB, DiskGiB     int64
}

// HostFacts reads this machine's facts; disk is the space free where dir is.
func HostFacts(dir string) Facts {
	var st syscall.Statfs_t
	syscall.Statfs(dir, &st)
	arch := runtime.GOARCH
	if arch == "amd64" {
		arch = "x86_64"
	}
	var uts syscall.Utsname
	syscall.Uname(&uts)
	rel := make([]byte, 0, len(uts.Release))
	for _, c := range uts.Release {
		if c == 0 {
			break
		}
		rel = append(rel, byte(c))
	}
	return Facts{Arch: arch, Kernel: string(rel), CPUModel: cpuModel(), CPUs: int64(runtime.NumCPU()),
		MemoryMiB: memTotalMiB(), DiskGiB: max(int64(st.Bavail)*int64(st.Bsize)>>30, 1)}
}

func memTotalMiB() int64 {
	b, _ := os.ReadFile("/proc/meminfo")
	var kb int64
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "MemTotal:") {
			fmt.Sscanf(strings.TrimPrefix(l, "MemTotal:"), "%d", &kb)
		}
	}
	return max(kb>>10, 1)
}

func cpuModel() string {
	b, _ := os.ReadFile("/proc/cpuinfo")
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "model name") {
			if _, v, ok := strings.Cut(l, ":"); ok {
				return strings.TrimSpace(v)
			}
		}
	}
	return "unknown"
}

// HostName is this machine's short name, lower case.
func HostName() string {
	h, _ := os.Hostname()
	return strings.ToLower(strings.Split(h, ".")[0])
}

// MaxLog is the console log size at which it is rotated (one old copy kept).
const MaxLog = 1 << 20

// Tail returns the last n lines of a log file, rotating it first (copy,
// then truncate: the writer keeps appending with O_APPEND) when it has
// passed MaxLog. A missing file is an empty log.
func Tail(path string, n int) ([]byte, error) {
	if st, err := os.Stat(path); err == nil && st.Size() >= MaxLog {
		if b, err := os.ReadFile(path); err == nil && os.WriteFile(path+".1", b, 0o600) == nil {
			os.Truncate(path, 0)
		}
	}
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	lines := strings.SplitAfter(string(b), "\n")
	if k := len(lines); k > n+1 {
		lines = lines[k-n-1:]
	}
	return []byte(strings.Join(lines, "")), nil
}

// ReadyMarker matches console lines that mean a guest is up: kumo's tiny
// images print the first, cloud-init's final stage the second.
var ReadyMarker = regexp.MustCompile(`kumo: ready|Cloud-init v\. \S+ finished at`)

// Readiness remembers, per log, how far it was read and whether a ready
// marker was seen, so the log is scanned once, not on every status.
type Readiness struct {
	mu   sync.Mutex
	seen map[string]readyScan
}

type readyScan struct {
	boot  int64 // where the boot began, as the caller said
	off   int64 // where the last scan stopped
	ready bool
}

// Check says whether a ready marker appears in the log at path after
// offset boot (where the current boot began). Each call reads only what
// was appended since the last one.
func (r *Readiness) Check(path string, boot int64) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.seen == nil {
		r.seen = map[string]readyScan{}
	}
	sc, ok := r.seen[path]
	if !ok || sc.boot != boot {
		sc = readyScan{boot: boot, off: boot}
	}
	if sc.ready {
		return true
	}
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	if st, err := f.Stat(); err == nil && st.Size() < sc.off {
		sc.off = 0 // rotated (copied away and truncated): all of it is new
	}
	// Re-read a little before where the last scan stopped: a marker may
	// have been cut in two. Never before the boot, while the log holds it.
	start := max(sc.off-64, 0)
	if sc.off >= sc.boot {
		start = max(start, sc.boot)
	}
	b, _ := io.ReadAll(io.NewSectionReader(f, start, 1<<22))
	sc.ready = ReadyMarker.Match(b)
	sc.off = start + int64(len(b))
	r.seen[path] = sc
	return sc.ready
}

// Forget drops what is known of a log (its instance is gone).
func (r *Readiness) Forget(path string) {
	r.mu.Lock()
	delete(r.seen, path)
	r.mu.Unlock()
}
