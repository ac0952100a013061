package images

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/kumocloud/kumo/api"
	"github.com/kumocloud/kumo/internal/errs"
	"github.com/kumocloud/kumo/internal/quota"
	"github.com/kumocloud/kumo/internal/store"
	"github.com/kumocloud/kumo/internal/store/memstore"
)

// cloud is an image service with projects: "default" (where the cloud
// admin publishes), "aaa" (an attacker, named to sort first), "vic".
func cloud(t *testing.T) *Service {
	st := memstore.New()
	for _, p := range []string{"default", "aaa", "vic", "zzz"} {
		st.Txn(context.Background(), nil, []store.Op{quota.InitOp(p, quota.Defaults())})
	}
	svc, err := New(st, t.TempDir(), 0, usersFunc(func(context.Context, string, string) (int, error) { return 0, nil }), time.Now)
	if err != nil {
		t.Fatal(err)
	}
	return svc
}

func mkImage(t *testing.T, svc *Service, project, name, vis string, with ...string) {
	t.Helper()
	if _, err := svc.Create(context.Background(), project, api.ImagesPost{Name: name, Kind: api.KindContainerRootfs, Visibility: vis, SharedWith: with}); err != nil {
		t.Fatal(err)
	}
	if _, err := svc.Upload(context.Background(), project, name, bytes.NewReader(tarball(t, true, good...))); err != nil {
		t.Fatal(err)
	}
}

func resolved(t *testing.T, svc *Service, project, ref string) string {
	t.Helper()
	img, err := svc.Resolve(context.Background(), project, ref)
	if err != nil {
		return "error: " + err.Error()
	}
	return img.Project + "/" + img.Name
}

// TestNameSquatting: a project named to sort first that shares an image
// called "tiny" with everyone cannot capture the bare name "tiny" of any
// project: not while its share is pending or rejected, and not from the
// project's own image; accepting it makes the name ambiguous (a 409 that
// lists the choices), never silently the attacker's.
func TestNameSquatting(t *testing.T) {
	svc := cloud(t)
	ctx := context.Background()
	mkImage(t, svc, "default", "tiny", api.VisibilityPublic)
	mkImage(t, svc, "zzz", "tiny", api.VisibilityPrivate)
	mkImage(t, svc, "aaa", "tiny", api.VisibilityShared, "vic", "zzz")

	// Pending: the victim's bare name is still the public image; the
	// project with its own "tiny" keeps it.
	if got := resolved(t, svc, "vic", "tiny"); got != "default/tiny" {
		t.Fatalf("vic's tiny with aaa's share pending: %s", got)
	}
	if got := resolved(t, svc, "zzz", "tiny"); got != "zzz/tiny" {
		t.Fatalf("zzz's own tiny: %s", got)
	}
	if got := resolved(t, svc, "vic", "aaa/tiny"); !strings.Contains(got, "not found") {
		t.Fatalf("a pending share is usable by its full name: %s", got)
	}
	// Accepted by zzz: its own image still wins.
	if _, err := svc.AnswerShare(ctx, "zzz", "aaa", "tiny", api.ShareAccepted); err != nil {
		t.Fatal(err)
	}
	if got := resolved(t, svc, "zzz", "tiny"); got != "zzz/tiny" {
		t.Fatalf("zzz's own tiny after accepting aaa's: %s", got)
	}
	// Accepted by vic: two candidates, a conflict naming both.
	if _, err := svc.AnswerShare(ctx, "vic", "aaa", "tiny", api.ShareAccepted); err != nil {
		t.Fatal(err)
	}
	_, err := svc.Resolve(ctx, "vic", "tiny")
	if !errors.Is(err, errs.ErrConflict) || !strings.Contains(err.Error(), "aaa/tiny, default/tiny") {
		t.Fatalf("an ambiguous name: %v", err)
	}
	if got := resolved(t, svc, "vic", "aaa/tiny"); got != "aaa/tiny" {
		t.Fatalf("an accepted share by its full name: %s", got)
	}
	// Rejected: back to the public one.
	if _, err := svc.AnswerShare(ctx, "vic", "aaa", "tiny", api.ShareRejected); err != nil {
		t.Fatal(err)
	}
	if got := resolved(t, svc, "vic", "tiny"); got != "default/tiny" {
		t.Fatalf("vic's tiny after rejecting aaa's: %s", got)
	}
}

// TestShareConsent: an offered image is listed among the offers, not
// among the images the project can use, until it is accepted; the answer
// belongs to the receiving project only; an offer withdrawn cannot be
// answered; the receiver does not see whom else the image is offered to.
func TestShareConsent(t *testing.T) {
	svc := cloud(t)
	ctx := context.Background()
	mkImage(t, svc, "aaa", "img", api.VisibilityShared, "vic", "zzz")
	usableBy := func(project string) bool {
		imgs, _ := svc.List(ctx, project)
		for _, i := range imgs {
			if i.Project == "aaa" && i.Name == "img" {
				return true
			}
		}
		return false
	}
	offers, err := svc.SharesFor(ctx, "vic")
	if err != nil || len(offers) != 1 || offers[0].Image != "aaa/img" || offers[0].Status != api.SharePending {
		t.Fatalf("vic's offers: %+v %v", offers, err)
	}
	if usableBy("vic") {
		t.Fatal("a pending share is listed as usable")
	}
	if _, err := svc.AnswerShare(ctx, "vic", "aaa", "img", "maybe"); !errors.Is(err, errs.ErrInvalid) {
		t.Fatalf("a bad answer: %v", err)
	}
	if _, err := svc.AnswerShare(ctx, "default", "aaa", "img", api.ShareAccepted); !errors.Is(err, errs.ErrNotFound) {
		t.Fatalf("a project nobody offered it to accepted: %v", err)
	}
	if _, err := svc.AnswerShare(ctx, "vic", "aaa", "img", api.ShareAccepted); err != nil {
		t.Fatal(err)
	}
	if !usableBy("vic") || usableBy("zzz") {
		t.Fatalf("after vic accepted: vic %v, zzz %v", usableBy("vic"), usableBy("zzz"))
	}
	img, _ := svc.Get(ctx, "vic", "aaa/img")
	if img.SharedWith != nil || img.Shares != nil {
		t.Fatalf("the receiver sees whom the image is offered to: %+v", img)
	}
	own, _ := svc.Get(ctx, "aaa", "img")
	if len(own.Shares) != 2 || own.Shares[0].Project != "vic" || own.Shares[0].Status != api.ShareAccepted || own.Shares[1].Status != api.SharePending {
		t.Fatalf("the owner's view of its shares: %+v", own.Shares)
	}
	// Offering it to one more project keeps vic's answer.
	vis := api.VisibilityShared
	if _, err := svc.Patch(ctx, "aaa", "img", api.ImagePatch{Visibility: &vis, SharedWith: []string{"vic", "zzz", "default"}}); err != nil {
		t.Fatal(err)
	}
	if !usableBy("vic") {
		t.Fatal("a new offer to others reset vic's acceptance")
	}
	if _, err := svc.Patch(ctx, "aaa", "img", api.ImagePatch{SharedWith: []string{"aaa"}}); !errors.Is(err, errs.ErrInvalid) {
		t.Fatalf("sharing with its own project: %v", err)
	}
	// Withdrawn: no longer usable, no longer offered, not answerable.
	priv := api.VisibilityPrivate
	if _, err := svc.Patch(ctx, "aaa", "img", api.ImagePatch{Visibility: &priv}); err != nil {
		t.Fatal(err)
	}
	if usableBy("vic") {
		t.Fatal("a private image is still usable by a project that accepted it once")
	}
	if offers, _ := svc.SharesFor(ctx, "vic"); len(offers) != 0 {
		t.Fatalf("a withdrawn offer is listed: %+v", offers)
	}
	if _, err := svc.AnswerShare(ctx, "vic", "aaa", "img", api.ShareAccepted); !errors.Is(err, errs.ErrNotFound) {
		t.Fatalf("answering a withdrawn offer: %v", err)
	}
}

// TestSharesFromBefore: an image shared before shares needed an answer
// (shared_with alone) is offered, pending, to those projects.
func TestSharesFromBefore(t *testing.T) {
	svc := cloud(t)
	ctx := context.Background()
	mkImage(t, svc, "aaa", "old", api.VisibilityShared)
	r, rev, _ := svc.get(ctx, "aaa", "old")
	r.SharedWith, r.Shares = []string{"vic"}, nil
	if _, err := svc.s.Update(ctx, key("aaa", "old"), store.MustJSON(r), rev); err != nil {
		t.Fatal(err)
	}
	if got := resolved(t, svc, "vic", "aaa/old"); !strings.Contains(got, "not found") {
		t.Fatalf("an old share is usable unanswered: %s", got)
	}
	if offers, _ := svc.SharesFor(ctx, "vic"); len(offers) != 1 || offers[0].Status != api.SharePending {
		t.Fatalf("vic's offers: %+v", offers)
	}
	if _, err := svc.AnswerShare(ctx, "vic", "aaa", "old", api.ShareAccepted); err != nil {
		t.Fatal(err)
	}
	if got := resolved(t, svc, "vic", "aaa/old"); got != "aaa/old" {
		t.Fatalf("an old share, accepted: %s", got)
	}
}
