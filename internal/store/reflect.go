package store

import (
	"context"
	"errors"
	"log/slog"
	"time"
)

// View is what a Reflector keeps up to date: a consumer's copy of the
// keys under one prefix (a cache, an event stream).
type View interface {
	// Replace makes the view exactly these keys, as they were at rev.
	// It is called first, and again after every relist.
	Replace(kvs []KV, rev int64)
	// Apply applies one change made after the last Replace, in revision
	// order; RevisionEnd marks the last change of its revision. After a
	// broken watch resumes, the rest of a revision the view had partly
	// seen comes again: a change not newer than what the view holds for
	// its key is a replay, to be ignored.
	Apply(ev WatchEvent)
}

// Reflect keeps v equal to the keys under prefix until ctx ends, as
// client-go's reflector does: it lists them at one revision, then watches
// from the very next revision, so a write committed between the two is in
// one or the other, never in neither. A watch that breaks is resumed
// after the last revision applied; one that fell behind compaction starts
// over with a new listing. Failures back off (200 ms doubling to 10 s) and
// are logged; nothing is ever skipped silently.
func Reflect(ctx context.Context, s Store, prefix string, v View, log *slog.Logger) {
	Follow(ctx, s, prefix, 0, v, log)
}

// Follow is Reflect for a view that already holds the keys as of revision
// after (a stream that starts "from now"): it watches from after+1 and
// lists only when the watch has fallen behind compaction. after 0 lists
// first, as Reflect does.
func Follow(ctx context.Context, s Store, prefix string, after int64, v View, log *slog.Logger) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	b := backoff{min: 200 * time.Millisecond, max: 10 * time.Second}
	last := after // the newest revision the view holds; 0: list first
	for ctx.Err() == nil {
		if last == 0 {
			kvs, rev, err := Snapshot(ctx, s, prefix)
			if err != nil {
				if ctx.Err() == nil {
					log.Warn("listing for a watch failed; retrying", "prefix", prefix, "err", err)
					b.wait(ctx)
				}
				continue
			}
			v.Replace(kvs, rev)
			last = rev
		}
		applied := false
		var werr error
		for ev := range s.Watch(ctx, prefix, last+1) {
			if ev.Err != nil {
				werr = ev.Err
				break
			}
			v.Apply(ev)
			applied = true
			if ev.RevisionEnd {
				last = ev.KV.Revision
			}
		}
		if ctx.Err() != nil {
			return
		}
		if applied {
			b.reset()
		}
		if errors.Is(werr, ErrCompacted) {
			log.Warn("watch fell behind the store's history; listing again", "prefix", prefix)
			last = 0
		} else {
			log.Warn("watch broke; resuming", "prefix", prefix, "after", last, "err", werr)
		}
		b.wait(ctx)
	}
}

// backoff is a doubling wait between retries.
type backoff struct {
	min, max, cur time.Duration
}

func (b *backoff) reset() { b.cur = 0 }

func (b *backoff) wait(ctx context.Context) {
	b.cur = min(max(b.cur*2, b.min), b.max)
	t := time.NewTimer(b.cur)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
