package etcdstore

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
)

// History bounds the history (superseded and deleted versions of keys) an
// embedded etcd keeps. Every old revision costs twice: it is kept in the
// database, and a restart reads every one of them back to rebuild etcd's
// index (at 100,000 instances the hour etcd kept by default was a million
// revisions and most of a 10 s restart). Nothing in kumo needs old
// revisions for long: a watch that falls behind the kept history lists
// afresh (store.Reflect, store.Follow), and event streams resume from the
// events kept as keys (24 h), not from history.
type History struct {
	// MaxAge: revisions older than this are compacted.
	MaxAge time.Duration
	// MaxRevisions: at most this many revisions (store revisions, each a
	// transaction) are kept however young (a burst of writes is not all
	// kept for MaxAge).
	MaxRevisions int64
	// Every: how often the history is trimmed.
	Every time.Duration
}

// DefaultHistory is five minutes, at most 25,000 revisions, trimmed every
// 30 s. A revision is a transaction: a create is about 1.1 of them (the
// server batches), with ~9 versions of keys (the instance, its event, its
// idempotency record...), each of which a restart reads. 25,000 is a
// quarter of a 100,000-instance burst, under a second of a restart's CPU.
var DefaultHistory = History{MaxAge: 5 * time.Minute, MaxRevisions: 25_000, Every: 30 * time.Second}

// compactLoop trims the history every h.Every until ctx ends: to the newest
// revision seen at least h.MaxAge ago, or h.MaxRevisions behind the current
// one, whichever is newer. Compaction is etcd's own (it deletes in the
// background, in batches); this only says where to.
func (s *Store) compactLoop(ctx context.Context, h History, log *slog.Logger) {
	type mark struct {
		at  time.Time
		rev int64
	}
	var marks []mark
	compacted := int64(0)
	t := time.NewTicker(h.Every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		now := time.Now()
		rev, err := s.Revision(ctx)
		if err != nil {
			continue
		}
		marks = append(marks, mark{now, rev})
		target := rev - h.MaxRevisions
		for len(marks) > 0 && now.Sub(marks[0].at) >= h.MaxAge {
			target = max(target, marks[0].rev)
			marks = marks[1:]
		}
		if target <= compacted {
			continue
		}
		if _, err := s.client.Compact(ctx, target); err != nil && !errors.Is(err, rpctypes.ErrCompacted) {
			if ctx.Err() == nil {
				log.Warn("compacting the store's history", "revision", target, "err", err)
			}
			continue
		}
		compacted = target
	}
}
