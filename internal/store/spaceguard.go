package store

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"syscall"
	"time"
)

// ErrNoSpace says the store's disk is (nearly) full; writes are refused until
// space is freed. Reads go on.
var ErrNoSpace = errors.New("the store's disk is full")

// SpaceGuard is a Store whose writes are refused, before they reach the
// store, while the filesystem of its data holds less than Min free: an
// embedded etcd that runs out of space mid-write stops the whole process,
// so a write that could fill the disk is never sent. Reads always pass.
// When space comes back, writes resume by themselves.
type SpaceGuard struct {
	Store
	dir string
	min int64
	log *slog.Logger

	mu      sync.Mutex
	checked time.Time
	free    int64
	full    bool
}

// GuardSpace wraps s, watching the free space where dir is.
func GuardSpace(s Store, dir string, min int64, log *slog.Logger) *SpaceGuard {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &SpaceGuard{Store: s, dir: dir, min: min, log: log}
}

// Free returns the free space where the store's data is, and whether it
// is under the minimum (checked at most every 200 ms).
func (g *SpaceGuard) Free() (int64, bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if time.Since(g.checked) < 200*time.Millisecond {
		return g.free, g.full
	}
	var st syscall.Statfs_t
	if err := syscall.Statfs(g.dir, &st); err != nil {
		return g.free, g.full
	}
	g.checked, g.free = time.Now(), int64(st.Bavail)*int64(st.Bsize)
	full := g.free < g.min
	if full != g.full {
		if full {
			g.log.Error("the data dir's disk is full: writes are refused until space is freed", "dir", g.dir, "free_bytes", g.free, "needed_bytes", g.min)
		} else {
			g.log.Warn("the data dir's disk has space again: writes resume", "dir", g.dir, "free_bytes", g.free)
		}
	}
	g.full = full
	return g.free, g.full
}

func (g *SpaceGuard) check() error {
	if free, full := g.Free(); full {
		return fmt.Errorf("%w: %s holds %d MiB free, %d MiB are kept in reserve; free space (old images, logs) and writes resume", ErrNoSpace, g.dir, free>>20, g.min>>20)
	}
	return nil
}

// Create implements Store.
func (g *SpaceGuard) Create(ctx context.Context, key string, value []byte) (int64, error) {
	if err := g.check(); err != nil {
		return 0, err
	}
	return g.Store.Create(ctx, key, value)
}

// Update implements Store.
func (g *SpaceGuard) Update(ctx context.Context, key string, value []byte, rev int64) (int64, error) {
	if err := g.check(); err != nil {
		return 0, err
	}
	return g.Store.Update(ctx, key, value, rev)
}

// Delete implements Store.
func (g *SpaceGuard) Delete(ctx context.Context, key string, rev int64) error {
	if err := g.check(); err != nil {
		return err
	}
	return g.Store.Delete(ctx, key, rev)
}

// Txn implements Store.
func (g *SpaceGuard) Txn(ctx context.Context, conds []Cond, ops []Op) (int64, error) {
	if err := g.check(); err != nil {
		return 0, err
	}
	return g.Store.Txn(ctx, conds, ops)
}
