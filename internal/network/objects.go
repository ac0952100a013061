package network

import (
	"context"
	"errors"

	"github.com/kumocloud/kumo/api"
	"github.com/kumocloud/kumo/internal/errs"
	"github.com/kumocloud/kumo/internal/events"
	"github.com/kumocloud/kumo/internal/store"
)

// getObject reads one of a project's objects at key, its revision set; a
// missing one is a 404 naming what.
func getObject[T any](ctx context.Context, svc *Service, project, key, what string, meta func(*T) *api.Meta) (T, error) {
	var v T
	rev, err := store.GetJSON(ctx, svc.s, key, &v)
	if errors.Is(err, store.ErrNotFound) {
		return v, errs.NotFound("%s not found in project %q", what, project)
	}
	meta(&v).Revision = rev
	return v, err
}

// listObjects reads the objects under prefix, their revisions set.
func listObjects[T any](ctx context.Context, svc *Service, prefix string, meta func(*T) *api.Meta) ([]T, error) {
	items, err := store.ListJSON[T](ctx, svc.s, prefix)
	out := []T{}
	for _, it := range items {
		meta(&it.Value).Revision = it.Revision
		out = append(out, it.Value)
	}
	return out, err
}

// updateObject is a compare-and-swap change of one of a project's
// objects that stamps its update time and records an "updated" event; a
// missing one is a 404 naming what.
func updateObject[T any](ctx context.Context, svc *Service, project, key, kind, url, what string, meta func(*T) *api.Meta, fn func(*T) error) (T, error) {
	v, rev, err := store.UpdateJSON(ctx, svc.s, key, func(v *T) error {
		if err := fn(v); err != nil {
			return err
		}
		meta(v).UpdatedAt = svc.now().UTC()
		return nil
	}, func(v *T) []store.Op {
		return []store.Op{events.Op(ctx, kind, events.Updated, project, url, *v)}
	})
	if errors.Is(err, store.ErrNotFound) {
		return v, errs.NotFound("%s not found in project %q", what, project)
	}
	meta(&v).Revision = rev
	return v, err
}
