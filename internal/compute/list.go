package compute

import (
	"context"
	"errors"
	"strconv"
	"strings"

	"github.com/kumocloud/kumo/api"
	"github.com/kumocloud/kumo/internal/errs"
	"github.com/kumocloud/kumo/internal/store"
)

// A list's cursor ("next", given back as "after") says where the next page
// starts and which store revision the listing reads: "@REV:NAME" in the
// live instances, "@REV:archived:NAME" in the DONE ones. Every page of one
// listing reads the revision its first page did, so an instance that goes
// DONE while a client pages through - from the live keys to the archive,
// which come after them - is listed once, as it was then, not once live
// and again DONE. When the store no longer keeps that revision (its
// history is five minutes or 25,000 writes, etcdstore.DefaultHistory) the
// pages go on at the current one. A cursor without "@REV:" (what earlier
// versions gave) reads the current revision.
const (
	// archivedCursor starts the name part of a cursor that has reached the
	// archived (DONE) instances.
	archivedCursor = "archived:"
	revCursor      = "@"
)

// parseCursor splits a cursor into the revision it reads (0: now) and
// where it resumes.
func parseCursor(after string) (int64, string) {
	rest, ok := strings.CutPrefix(after, revCursor)
	if !ok {
		return 0, after
	}
	revText, name, ok := strings.Cut(rest, ":")
	rev, err := strconv.ParseInt(revText, 10, 64)
	if !ok || err != nil || rev <= 0 {
		return 0, after
	}
	return rev, name
}

// List lists a project's live instances (and DONE ones with all: after
// the live ones, paged alike), at most limit (0: all) after the cursor.
func (svc *Service) List(ctx context.Context, project string, sel map[string]string, all bool, after string, limit int) ([]api.Instance, string, error) {
	rev, after := parseCursor(after)
	if rev != 0 {
		// The cursor is the client's: a revision the store has not
		// reached is not one this server gave.
		now, err := svc.s.Revision(ctx)
		if err != nil {
			return nil, "", err
		}
		if rev > now {
			return nil, "", errs.Invalid("after", "after: %q is not a cursor this server gave (the store is at revision %d)", revCursor+strconv.FormatInt(rev, 10), now)
		}
	}
	decode := func(live bool) func(kv store.KV) (api.Instance, bool, error) {
		return func(kv store.KV) (api.Instance, bool, error) {
			var r record
			if err := store.Decode(kv, &r); err != nil {
				return api.Instance{}, false, err
			}
			if live {
				return svc.withUsage(r.api(kv.Revision)), r.HasLabels(sel), nil
			}
			return r.api(kv.Revision), r.HasLabels(sel), nil
		}
	}
	page := func(prefix, after string, limit int, live bool) ([]api.Instance, string, error) {
		items, next, at, err := store.PaginateAt(ctx, svc.s, prefix, after, limit, rev, decode(live))
		if errors.Is(err, store.ErrCompacted) && rev != 0 {
			items, next, at, err = store.PaginateAt(ctx, svc.s, prefix, after, limit, 0, decode(live))
		}
		rev = at
		return items, next, err
	}
	cursor := func(name string) string { return revCursor + strconv.FormatInt(rev, 10) + ":" + name }
	var items []api.Instance
	if !strings.HasPrefix(after, archivedCursor) {
		live, next, err := page(instancesPrefix+project+"/", after, limit, true)
		if err != nil {
			return nil, "", err
		}
		if next != "" {
			return live, cursor(next), nil
		}
		if !all {
			return live, "", nil
		}
		if limit > 0 && len(live) == limit {
			return live, cursor(archivedCursor), nil
		}
		items, after = live, archivedCursor
		if limit > 0 {
			limit -= len(live)
		}
	}
	done, next, err := page(archivePrefix+project+"/", strings.TrimPrefix(after, archivedCursor), limit, false)
	if err != nil {
		return nil, "", err
	}
	if next != "" {
		next = cursor(archivedCursor + next)
	}
	return append(items, done...), next, nil
}
