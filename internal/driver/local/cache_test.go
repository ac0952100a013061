package local

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/kumocloud/kumo/internal/driver"
)

// source serves byte strings by sha256 and counts the fetches.
type source struct {
	by      map[string][]byte
	fetches atomic.Int32
}

func newSource(images ...string) (*source, []string) {
	s := &source{by: map[string][]byte{}}
	var sums []string
	for _, img := range images {
		sum := sha256.Sum256([]byte(img))
		s.by[hex.EncodeToString(sum[:])] = []byte(img)
		sums = append(sums, hex.EncodeToString(sum[:]))
	}
	return s, sums
}

func (s *source) FetchImage(_ context.Context, sum string) (io.ReadCloser, error) {
	s.fetches.Add(1)
	b, ok := s.by[sum]
	if !ok {
		return nil, fmt.Errorf("no image %s", sum)
	}
	return io.NopCloser(bytes.NewReader(b)), nil
}

// copyTo is a fill that copies the bytes into the form as file name.
func copyTo(name string) func(blob, dir string) error {
	return func(blob, dir string) error {
		b, err := os.ReadFile(blob)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dir, name), b, 0o600)
	}
}

// TestSharedCacheFetchesOnce: the drivers opened together share one cache
// (one directory beside their state dirs): an image two drivers make
// their forms of is fetched once, and each form is filled once however
// many ask at the same time.
func TestSharedCacheFetchesOnce(t *testing.T) {
	ctx := context.Background()
	src, sums := newSource("an image both drivers use")
	shared := &driver.Shared{Dir: t.TempDir()}
	ct, err := SharedCache(driver.Common{StateDir: filepath.Join(shared.Dir, "container"), Images: src, Shared: shared})
	if err != nil {
		t.Fatal(err)
	}
	vm, err := SharedCache(driver.Common{StateDir: filepath.Join(shared.Dir, "qemu"), Images: src, Shared: shared})
	if err != nil {
		t.Fatal(err)
	}
	if ct != vm || ct.Dir != filepath.Join(shared.Dir, "images") {
		t.Fatalf("two caches (%s, %s) for the drivers of one machine", ct.Dir, vm.Dir)
	}
	var fills atomic.Int32
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := ct.Get(ctx, "img", sums[0], "rootfs", func(blob, dir string) error { fills.Add(1); return copyTo("f")(blob, dir) }); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	dir, err := vm.Get(ctx, "img", sums[0], "vm", copyTo("disk"))
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "disk")); string(b) != "an image both drivers use" {
		t.Fatalf("the vm form holds %q", b)
	}
	if n := src.fetches.Load(); n != 1 {
		t.Errorf("the image was fetched %d times for two forms", n)
	}
	if n := fills.Load(); n != 1 {
		t.Errorf("one form was filled %d times", n)
	}
	// A driver standing alone keeps its own cache in its state dir.
	alone, _ := SharedCache(driver.Common{StateDir: t.TempDir(), Images: src})
	if alone == ct || filepath.Dir(alone.Dir) == shared.Dir {
		t.Errorf("a driver alone shares the cache %s", alone.Dir)
	}
}

// TestCacheRefuses: a sha256 that is not one (the agent protocol is not
// trusted to name paths), bytes that hash to something else, and a fill
// that fails leave nothing in the cache.
func TestCacheRefuses(t *testing.T) {
	ctx := context.Background()
	src, sums := newSource("good")
	c, err := NewCache(t.TempDir(), src)
	if err != nil {
		t.Fatal(err)
	}
	for _, sum := range []string{"../../etc", strings.Repeat("A", 64), sums[0][:63]} {
		if _, err := c.Get(ctx, "bad", sum, "rootfs", copyTo("f")); err == nil || !strings.Contains(err.Error(), "is not a sha256") {
			t.Errorf("Get(%q): %v", sum, err)
		}
	}
	src.by[strings.Repeat("a", 64)] = []byte("other bytes")
	if _, err := c.Get(ctx, "liar", strings.Repeat("a", 64), "rootfs", copyTo("f")); err == nil || !strings.Contains(err.Error(), "hash to") {
		t.Errorf("bytes that hash to another sum: %v", err)
	}
	if _, err := c.Get(ctx, "good", sums[0], "rootfs", func(string, string) error { return fmt.Errorf("no") }); err == nil {
		t.Error("a failed fill succeeded")
	}
	if _, err := os.Stat(filepath.Join(c.Dir, sums[0], "rootfs")); err == nil {
		t.Error("a failed fill left its form")
	}
	es, _ := os.ReadDir(c.Dir)
	for _, e := range es {
		if strings.HasPrefix(e.Name(), ".") || e.Name() == strings.Repeat("a", 64) {
			t.Errorf("left in the cache: %s", e.Name())
		}
	}
}

// TestCacheEvictsForAllUsers: with space short, an image either user's
// instances use stays; one nobody uses goes.
func TestCacheEvictsForAllUsers(t *testing.T) {
	ctx := context.Background()
	src, sums := newSource("a", "b", "c")
	c, _ := NewCache(t.TempDir(), src)
	for i, form := range []string{"rootfs", "vm", "rootfs"} {
		if _, err := c.Get(ctx, "img", sums[i], form, copyTo("f")); err != nil {
			t.Fatal(err)
		}
	}
	c.Use(func() map[string]bool { return map[string]bool{sums[0]: true} })
	c.Use(func() map[string]bool { return map[string]bool{sums[1]: true} })
	c.MinFree = 1 << 62 // pretend the disk is full
	c.Evict("")
	for i, kept := range []bool{true, true, false} {
		if _, err := os.Stat(filepath.Join(c.Dir, sums[i])); (err == nil) != kept {
			t.Errorf("image %d: kept %v, want %v", i, err == nil, kept)
		}
	}
}

// TestAdopt: the per-driver caches of an earlier kumo move into the
// shared one - a container's DIR/<sum>/rootfs as its form, a VM's whole
// DIR/<sum> as its - and paths kept in records follow them.
func TestAdopt(t *testing.T) {
	ctx := context.Background()
	base := t.TempDir()
	src, sums := newSource("ct", "vm")
	oldCt, oldVM := filepath.Join(base, "container", "images"), filepath.Join(base, "qemu", "images")
	os.MkdirAll(filepath.Join(oldCt, sums[0], "rootfs", "etc"), 0o700)
	os.WriteFile(filepath.Join(oldCt, sums[0], "rootfs", "etc", "hostname"), []byte("old"), 0o600)
	os.MkdirAll(filepath.Join(oldCt, ".fill-123"), 0o700) // a fill cut short
	os.MkdirAll(filepath.Join(oldVM, sums[1]), 0o700)
	os.WriteFile(filepath.Join(oldVM, sums[1], "disk.qcow2"), []byte("old disk"), 0o600)
	c, _ := NewCache(filepath.Join(base, "images"), src)

	c.Adopt(oldCt, "rootfs", "rootfs")
	moved := c.Adopt(oldVM, "", "vm")
	if b, _ := os.ReadFile(filepath.Join(c.Dir, sums[0], "rootfs", "etc", "hostname")); string(b) != "old" {
		t.Errorf("the container's rootfs was not adopted: %q", b)
	}
	for _, old := range []string{oldCt, oldVM} {
		if _, err := os.Stat(old); !os.IsNotExist(err) {
			t.Errorf("the old cache %s is still there: %v", old, err)
		}
	}
	oldPath := filepath.Join(oldVM, sums[1], "disk.qcow2")
	if got, want := moved(oldPath), filepath.Join(c.Dir, sums[1], "vm", "disk.qcow2"); got != want {
		t.Errorf("moved(%s) = %s, want %s", oldPath, got, want)
	}
	if p := "/elsewhere/disk.qcow2"; moved(p) != p {
		t.Errorf("a path outside the old cache moved to %s", moved(p))
	}
	// The adopted forms are used as they are: nothing is fetched.
	if _, err := c.Get(ctx, "ct", sums[0], "rootfs", copyTo("f")); err != nil || src.fetches.Load() != 0 {
		t.Errorf("an adopted image was fetched again (%d): %v", src.fetches.Load(), err)
	}
	// Adopting again (the next start) changes nothing.
	if p := c.Adopt(oldVM, "", "vm")(oldPath); p != filepath.Join(c.Dir, sums[1], "vm", "disk.qcow2") {
		t.Errorf("after a second start, moved = %s", p)
	}
}
