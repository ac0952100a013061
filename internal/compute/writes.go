package compute

import (
	"context"
	"errors"

	"github.com/kumocloud/kumo/api"
	"github.com/kumocloud/kumo/internal/errs"
	"github.com/kumocloud/kumo/internal/store"
)

// writeBatch writes many changed records in few transactions (CAS on each);
// a batch that conflicts is retried one record at a time. fn re-applies the
// change to a freshly read record and says whether it still applies.
//
// A change that no longer applies is left out of revs; one that could not
// be written (the store failed, or it kept conflicting) is left out too and
// also makes err non-nil: a caller that must not lose the change (an
// agent's report) tells its sender to try again, and the loops that call
// it redo the change on their next round anyway.
func (svc *Service) writeBatch(ctx context.Context, changes []change) (revs map[string]int64, lastRev int64, err error) {
	revs = map[string]int64{}
	const chunk = 50
	for i := 0; i < len(changes); i += chunk {
		part := changes[i:min(i+chunk, len(changes))]
		var conds []store.Cond
		var ops []store.Op
		simple := true
		for _, c := range part {
			if c.rec.State == api.StateDone {
				simple = false
				break
			}
			key := instanceKey(c.rec.Project, c.rec.Name)
			conds = append(conds, store.At(key, c.rev))
			ops = append(ops, store.PutJSON(key, c.rec), c.rec.event(ctx))
		}
		if simple {
			rev, terr := svc.s.Txn(ctx, conds, ops)
			if terr == nil {
				for _, c := range part {
					revs[c.rec.ID] = rev
				}
				lastRev = max(lastRev, rev)
				continue
			}
			if !errors.Is(terr, store.ErrConflict) {
				svc.log.Warn("batch write", "err", terr)
			}
		}
		for _, c := range part {
			rev, ok, werr := svc.writeOne(ctx, c)
			if ok {
				revs[c.rec.ID] = rev
				lastRev = max(lastRev, rev)
			} else if werr != nil && err == nil {
				err = werr
			}
		}
	}
	return revs, lastRev, err
}

// change is a record to write at a revision, with how to redo it on a
// fresh copy if the revision moved.
type change struct {
	rec  record
	rev  int64
	redo func(*record) bool
}

// writeOne writes one change, redoing it on a fresh copy after a conflict.
// ok false with a nil error: the change no longer applies (or the instance
// is gone); an error: it was not written and still may apply.
func (svc *Service) writeOne(ctx context.Context, c change) (rev int64, ok bool, err error) {
	rec, rev := c.rec, c.rev
	for attempt := 0; attempt < 10; attempt++ {
		nrev, err := svc.write(ctx, &rec, rev)
		if err == nil {
			return nrev, true, nil
		}
		if !errors.Is(err, store.ErrConflict) {
			return 0, false, err
		}
		if c.redo == nil {
			return 0, false, nil
		}
		fresh, frev, gerr := svc.get(ctx, c.rec.Project, c.rec.Name)
		if errors.Is(gerr, errs.ErrNotFound) {
			return 0, false, nil
		}
		if gerr != nil {
			return 0, false, gerr
		}
		if !c.redo(&fresh) {
			return 0, false, nil
		}
		rec, rev = fresh, frev
	}
	return 0, false, errs.Unavailable("instance %s kept changing under the write; try again", c.rec.Name)
}
