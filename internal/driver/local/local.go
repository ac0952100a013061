// Package local holds what the drivers that run instances on this machine
// (container, qemu) share: the host's facts, the image cache filled by
// hash from the image service, tarball extraction bounded in size and
// confined to its root (Root: every path in tenant content resolved by
// the kernel inside it), instances' cgroups, and console log tails.
package local

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"
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

// Cache keeps images by sha256 under Dir, one directory each, filled on
// first use: the bytes are fetched, hashed while written to a temp file,
// verified, handed to the filler, and the result renamed into place, so
// a half-filled entry is never seen. When free space runs under MinFree,
// entries nobody uses are removed, least recently used first.
type Cache struct {
	Dir     string
	Fetch   func(ctx context.Context, sha256 string) (io.ReadCloser, error)
	MinFree int64
	// InUse says which entries instances on this host still use.
	InUse func() map[string]bool
	mu    sync.Mutex
}

// Get returns the directory of the image with this sha256, filling it
// with fill(bytesFile, dir) the first time. name is for messages.
func (c *Cache) Get(ctx context.Context, name, sum string, fill func(blob, dir string) error) (string, error) {
	if sum == "" || c.Fetch == nil {
		return "", fmt.Errorf("image %q has no bytes in the image service (import it with 'kumo image import')", name)
	}
	dir := filepath.Join(c.Dir, sum)
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, err := os.Stat(dir); err == nil {
		os.Chtimes(dir, time.Now(), time.Now()) // last use, for eviction
		return dir, nil
	}
	c.Evict(sum)
	tmp, err := os.MkdirTemp(c.Dir, ".fill-*")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(tmp)
	blob := filepath.Join(tmp, ".blob")
	if err := c.download(ctx, name, sum, blob); err != nil {
		return "", err
	}
	out := filepath.Join(tmp, "out")
	if err := os.Mkdir(out, 0o700); err != nil {
		return "", err
	}
	if err := fill(blob, out); err != nil {
		return "", fmt.Errorf("unpacking image %s: %w", name, err)
	}
	if err := os.Rename(out, dir); err != nil {
		return "", err
	}
	return dir, nil
}

func (c *Cache) download(ctx context.Context, name, sum, path string) error {
	rc, err := c.Fetch(ctx, sum)
	if err != nil {
		return fmt.Errorf("fetching image %s: %w", name, err)
	}
	defer rc.Close()
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(io.MultiWriter(f, h), rc); err != nil {
		return fmt.Errorf("fetching image %s: %w", name, err)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != sum {
		return fmt.Errorf("image %s: fetched bytes hash to %s, not %s", name, got, sum)
	}
	return f.Close()
}

// Evict frees space (before a fill), never touching keep or an entry in
// use.
func (c *Cache) Evict(keep string) {
	free := func() int64 {
		var st syscall.Statfs_t
		if syscall.Statfs(c.Dir, &st) != nil {
			return 1 << 62
		}
		return int64(st.Bavail) * int64(st.Bsize)
	}
	if free() >= c.MinFree {
		return
	}
	used := map[string]bool{}
	if c.InUse != nil {
		used = c.InUse()
	}
	used[keep] = true
	es, _ := os.ReadDir(c.Dir)
	type cached struct {
		name string
		used time.Time
	}
	var cands []cached
	for _, e := range es {
		if info, err := e.Info(); err == nil && !used[e.Name()] && !strings.HasPrefix(e.Name(), ".") {
			cands = append(cands, cached{e.Name(), info.ModTime()})
		}
	}
	sort.Slice(cands, func(i, j int) bool { return cands[i].used.Before(cands[j].used) })
	for _, cd := range cands {
		if free() >= c.MinFree {
			return
		}
		os.RemoveAll(filepath.Join(c.Dir, cd.name))
	}
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
