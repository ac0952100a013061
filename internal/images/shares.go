package images

import (
	"context"
	"errors"
	"slices"

	"github.com/kumocloud/kumo/api"
	"github.com/kumocloud/kumo/internal/errs"
	"github.com/kumocloud/kumo/internal/events"
	"github.com/kumocloud/kumo/internal/store"
)

// Shares work as Glance's image members: the owner offers an image to
// projects (visibility shared, shared_with), each offer starts pending,
// and the image becomes usable by a receiving project - listed, resolved
// by name, booted - only once one of that project's members accepts it.
// An unsolicited share therefore changes nothing for the receiver: it
// cannot put an image under a name the receiver already uses elsewhere,
// nor make a bare name ambiguous. The statuses live in the owner's image
// record (Shares), changed by compare-and-swap like the rest of it.

// offer sets the projects an image is offered to: ones it was offered to
// already keep their answer, new ones are pending, the rest are dropped.
func offer(r *record, with []string) error {
	if slices.Contains(with, r.Project) {
		return errs.Invalid("shared_with", "shared_with names the image's own project %q", r.Project)
	}
	old := map[string]string{}
	for _, s := range r.Shares {
		old[s.Project] = s.Status
	}
	with = slices.Compact(slices.Sorted(slices.Values(with)))
	r.Shares, r.SharedWith = nil, nil
	for _, p := range with {
		st := old[p]
		if st == "" {
			st = api.SharePending
		}
		r.SharedWith = append(r.SharedWith, p)
		r.Shares = append(r.Shares, share(r.Image, p, st))
	}
	return nil
}

func share(img api.Image, project, status string) api.ImageShare {
	return api.ImageShare{Image: img.Project + "/" + img.Name, Owner: img.Project, Name: img.Name, Kind: img.Kind, Project: project, Status: status}
}

// shareStatus is project's answer to the image's offer ("" for none). An
// image shared before shares were answered has SharedWith alone: its
// offers are pending.
func shareStatus(img api.Image, project string) string {
	for _, s := range img.Shares {
		if s.Project == project {
			return s.Status
		}
	}
	if img.Shares == nil && slices.Contains(img.SharedWith, project) {
		return api.SharePending
	}
	return ""
}

// offered says whether the image is offered to project now.
func offered(img api.Image, project string) bool {
	return img.Visibility == api.VisibilityShared && shareStatus(img, project) != ""
}

// SharesFor lists the images other projects offer project, with its answer
// to each (pending, accepted or rejected).
func (svc *Service) SharesFor(ctx context.Context, project string) ([]api.ImageShare, error) {
	items, err := store.ListJSON[record](ctx, svc.s, prefix)
	if err != nil {
		return nil, err
	}
	out := []api.ImageShare{}
	for _, it := range items {
		if img := it.Value.Image; offered(img, project) {
			out = append(out, share(img, project, shareStatus(img, project)))
		}
	}
	return out, nil
}

// AnswerShare records project's answer (accepted or rejected) to the offer
// of owner's image name; an image not offered to it is not found.
func (svc *Service) AnswerShare(ctx context.Context, project, owner, name, status string) (api.ImageShare, error) {
	if status != api.ShareAccepted && status != api.ShareRejected {
		return api.ImageShare{}, errs.Invalid("status", "status %q: use accepted or rejected", status)
	}
	notFound := errs.NotFound("no image %s/%s is offered to project %q", owner, name, project)
	r, _, err := store.UpdateJSON(ctx, svc.s, key(owner, name), func(r *record) error {
		if !offered(r.Image, project) {
			return notFound
		}
		if r.Shares == nil {
			offer(r, r.SharedWith) // shared before shares were answered
		}
		for i := range r.Shares {
			if r.Shares[i].Project == project {
				r.Shares[i].Status = status
			}
		}
		return nil
	}, func(r *record) []store.Op {
		return []store.Op{events.Op(ctx, "image", events.Updated, owner, url(owner, name), r.Image)}
	})
	if errors.Is(err, store.ErrNotFound) {
		return api.ImageShare{}, notFound
	}
	if err != nil {
		return api.ImageShare{}, err
	}
	return share(r.Image, project, status), nil
}
