package local

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/kumocloud/kumo/internal/driver"
)

// DefaultMinFree is the free space under which the image cache evicts.
const DefaultMinFree = 2 << 30

// Cache keeps images by sha256 in one directory, an entry DIR/<sha256>
// each, filled on first use. An entry holds the image's verified bytes
// (blob) and the forms drivers make of them, one directory each (the
// container driver's rootfs, the qemu driver's vm): the drivers of one
// machine share the cache (SharedCache), so an image both use is fetched
// once and one eviction budget covers both. The bytes are fetched into a
// temp dir, hashed while written, verified and renamed in; a form is
// filled in a temp dir and renamed in: a half-made entry is never seen.
// When free space runs under MinFree, entries no instance uses are
// removed, least recently used first.
type Cache struct {
	Dir     string
	Src     driver.ImageSource
	MinFree int64

	mu    sync.Mutex
	users []func() map[string]bool
	// held counts the Gets of an entry under way (never evicted), fills
	// lets one of them fill it at a time.
	held  map[string]int
	fills map[string]*sync.Mutex
}

// NewCache makes (or opens) a cache in dir.
func NewCache(dir string, src driver.ImageSource) (*Cache, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	return &Cache{Dir: dir, Src: src, MinFree: DefaultMinFree}, nil
}

// SharedCache is the image cache of the drivers opened together (c.Shared):
// SHARED_DIR/images, one for the machine; a driver standing alone has its
// own in STATE_DIR/images.
func SharedCache(c driver.Common) (*Cache, error) {
	dir := filepath.Join(c.StateDir, "images")
	if c.Shared != nil {
		dir = filepath.Join(c.Shared.Dir, "images")
	}
	return driver.Share(c.Shared, "local.Cache", func() (*Cache, error) { return NewCache(dir, c.Images) })
}

// Use adds a user's images in use (by sha256): they are never evicted.
func (c *Cache) Use(inUse func() map[string]bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.users = append(c.users, inUse)
}

// IsSHA256 says whether s names bytes: 64 lower-case hex digits (the
// server's word, never a path).
func IsSHA256(s string) bool {
	if len(s) != 64 {
		return false
	}
	for _, r := range s {
		if !('0' <= r && r <= '9' || 'a' <= r && r <= 'f') {
			return false
		}
	}
	return true
}

// Get returns the directory of one form of the image with this sha256,
// filling it with fill(blob, dir) the first time: blob is the image's
// bytes, which fill reads (or links) and never changes. name is for
// messages.
func (c *Cache) Get(ctx context.Context, name, sum, form string, fill func(blob, dir string) error) (string, error) {
	if sum == "" || c.Src == nil {
		return "", fmt.Errorf("image %q has no bytes in the image service (import it with 'kumo image import')", name)
	}
	if !IsSHA256(sum) {
		return "", fmt.Errorf("image %q: %q is not a sha256", name, sum)
	}
	entry := filepath.Join(c.Dir, sum)
	dir := filepath.Join(entry, form)
	defer c.hold(sum)()
	if _, err := os.Stat(dir); err == nil {
		os.Chtimes(entry, time.Now(), time.Now()) // last use, for eviction
		return dir, nil
	}
	c.Evict(sum)
	tmp, err := os.MkdirTemp(c.Dir, ".fill-*")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(tmp)
	blob := filepath.Join(entry, "blob")
	if _, err := os.Stat(blob); err != nil {
		part := filepath.Join(tmp, "blob")
		if err := c.download(ctx, name, sum, part); err != nil {
			return "", err
		}
		if err := os.MkdirAll(entry, 0o700); err != nil {
			return "", err
		}
		if err := os.Rename(part, blob); err != nil {
			return "", err
		}
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
	os.Chtimes(entry, time.Now(), time.Now())
	return dir, nil
}

// hold marks an entry in use by a Get and takes its fill lock; the
// function returned releases both.
func (c *Cache) hold(sum string) func() {
	c.mu.Lock()
	if c.held == nil {
		c.held, c.fills = map[string]int{}, map[string]*sync.Mutex{}
	}
	l := c.fills[sum]
	if l == nil {
		l = &sync.Mutex{}
		c.fills[sum] = l
	}
	c.held[sum]++
	c.mu.Unlock()
	l.Lock()
	return func() {
		l.Unlock()
		c.mu.Lock()
		if c.held[sum]--; c.held[sum] == 0 {
			delete(c.held, sum)
			delete(c.fills, sum)
		}
		c.mu.Unlock()
	}
}

func (c *Cache) download(ctx context.Context, name, sum, path string) error {
	rc, err := c.Src.FetchImage(ctx, sum)
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

// Evict frees space (before a fill), never touching keep, an entry a Get
// holds or one an instance of any user of the cache uses.
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
	c.mu.Lock()
	defer c.mu.Unlock()
	used := map[string]bool{keep: true}
	for _, inUse := range c.users {
		for sum := range inUse() {
			used[sum] = true
		}
	}
	for sum := range c.held {
		used[sum] = true
	}
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

// Adopt moves in the entries of a driver's own cache of an earlier kumo
// (old/<sha256>/sub, sub "" for the whole entry) as that driver's form,
// where no such form is yet, and removes old once it is empty; renames
// within one filesystem, so what runs from an entry (a container's
// overlay, a VM's open base) keeps running; an entry that cannot be moved
// (old is on another filesystem) stays where it is for what uses it, and
// the cache fills its own. It returns where a path that was under old is
// now (the path itself if it was not moved), for the records that name
// such paths.
func (c *Cache) Adopt(old, sub, form string) func(string) string {
	moved := func(p string) string {
		rel, err := filepath.Rel(old, p)
		if err != nil || !filepath.IsLocal(rel) {
			return p
		}
		sum, rest, _ := strings.Cut(rel, string(filepath.Separator))
		if sub != "" {
			var ok bool
			if rest, ok = strings.CutPrefix(rest, sub); !ok {
				return p
			}
		}
		np := filepath.Join(c.Dir, sum, form, rest)
		if _, err := os.Stat(np); err != nil {
			return p
		}
		return np
	}
	if filepath.Clean(old) == filepath.Clean(c.Dir) {
		return func(p string) string { return p }
	}
	es, _ := os.ReadDir(old)
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, e := range es {
		name := e.Name()
		if strings.HasPrefix(name, ".") { // a fill cut short
			os.RemoveAll(filepath.Join(old, name))
			continue
		}
		src, dst := filepath.Join(old, name, sub), filepath.Join(c.Dir, name, form)
		if !IsSHA256(name) || exists(dst) || !exists(src) {
			continue
		}
		if os.MkdirAll(filepath.Join(c.Dir, name), 0o700) != nil || os.Rename(src, dst) != nil {
			continue
		}
		if sub != "" {
			os.Remove(filepath.Join(old, name)) // empty now
		}
	}
	os.Remove(old) // if empty
	return moved
}

func exists(p string) bool { _, err := os.Stat(p); return err == nil }

// LinkOrCopy makes dst the same bytes as src: a hard link (no space
// taken), or a copy where links cannot be made.
func LinkOrCopy(src, dst string) error {
	if os.Link(src, dst) == nil {
		return nil
	}
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
