// Package images is the image service (the Glance part): images are
// project objects whose bytes are uploaded as a stream, hashed while they
// are written to a temporary file, checked (a container rootfs must be a
// tarball that cannot write outside its root; a VM disk must be the
// qcow2 or raw it claims and name no other file - backing file, data file
// - as vmimage.InspectDisk reads it; a vm-kernel tarball holds only a
// kernel, initrd, cmdline and such a disk), its unpacked size counted
// against the project's quota and the cloud's cap, and renamed into a
// content-addressed store only when complete; a failed upload leaves
// nothing on disk. Identical uploads share one file.
//
// Who may use an image: its project; every project when it is public
// (only cloud admins publish, checked by the API); a project it is shared
// with once that project accepted the share (shares.go). A bare name
// resolves to the project's own image first, then to the one public or
// accepted image of that name; several are a conflict, never a pick.
//
// Snapshots of VM disks become images through the same upload, as
// operations (snapshot.go).
//
// Keys: /images/{project}/{name}; files: DATA_DIR/images/blobs/<sha256>.
package images

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/kumocloud/kumo/api"
	"github.com/kumocloud/kumo/internal/errs"
	"github.com/kumocloud/kumo/internal/events"
	"github.com/kumocloud/kumo/internal/idempotency"
	"github.com/kumocloud/kumo/internal/quota"
	"github.com/kumocloud/kumo/internal/store"
	"github.com/kumocloud/kumo/internal/validate"
	"github.com/kumocloud/kumo/internal/vmimage"
)

const prefix = "/images/"

func key(project, name string) string { return prefix + project + "/" + name }

func url(project, name string) string { return "/v1/projects/" + project + "/images/" + name }

// DefaultMaxSize is the largest image, unpacked, a cloud takes unless
// told otherwise (kumo server --max-image-size).
const DefaultMaxSize = 20 << 30

// Users is what the image service needs to know of instances (the
// compute service owns them): how many live ones use an image, named
// "owner/name".
type Users interface {
	ImageUsers(ctx context.Context, project, image string) (int, error)
}

// Service is the image service.
type Service struct {
	s     store.Store
	dir   string
	users Users
	now   func() time.Time
	// maxSize bounds an image's upload and its unpacked size, in bytes.
	maxSize int64
}

// New returns the service keeping files under dir, taking images of at
// most maxSize bytes unpacked (0: DefaultMaxSize).
func New(s store.Store, dir string, maxSize int64, users Users, now func() time.Time) (*Service, error) {
	if maxSize <= 0 {
		maxSize = DefaultMaxSize
	}
	for _, d := range []string{"blobs", "tmp"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o700); err != nil {
			return nil, err
		}
	}
	// Uploads cut short by a crash leave temp files: nobody owns them now.
	tmps, _ := filepath.Glob(filepath.Join(dir, "tmp", "*"))
	for _, f := range tmps {
		os.Remove(f)
	}
	return &Service{s: s, dir: dir, users: users, now: now, maxSize: maxSize}, nil
}

var formats = map[string][]string{
	api.KindContainerRootfs: {"tar.gz", "tar"},
	api.KindVMDisk:          {"qcow2", "raw"},
	api.KindVMKernel:        {"tar.gz"},
}

func validatePost(req *api.ImagesPost) error {
	if err := validate.Name("name", req.Name); err != nil {
		return err
	}
	fs, ok := formats[req.Kind]
	if !ok {
		return errs.Invalid("kind", "kind %q: use container-rootfs, vm-disk or vm-kernel", req.Kind)
	}
	if req.Format == "" {
		req.Format = fs[0]
	}
	if !slices.Contains(fs, req.Format) {
		return errs.Invalid("format", "format %q for a %s: use %s", req.Format, req.Kind, strings.Join(fs, " or "))
	}
	if req.Visibility == "" {
		req.Visibility = api.VisibilityPrivate
	}
	if err := checkVisibility(req.Visibility, req.SharedWith); err != nil {
		return err
	}
	if req.SHA256 != "" {
		if b, err := hex.DecodeString(req.SHA256); err != nil || len(b) != 32 {
			return errs.Invalid("sha256", "sha256 must be 64 hex digits")
		}
	}
	if err := validate.Labels("properties", req.Properties); err != nil {
		return err
	}
	return validate.Labels("labels", req.Labels)
}

func checkVisibility(v string, shared []string) error {
	switch v {
	case api.VisibilityPrivate, api.VisibilityPublic, api.VisibilityShared:
	default:
		return errs.Invalid("visibility", "visibility %q: use private, public or shared", v)
	}
	for i, p := range shared {
		if err := validate.Name(fmt.Sprintf("shared_with[%d]", i), p); err != nil {
			return err
		}
	}
	return nil
}

type record struct {
	api.Image
	// Expect is the sha256 the uploader announced.
	Expect string `json:"expect,omitempty"`
	// ActiveAt and DeletedAt bound the time its bytes were stored
	// (metering bills image storage for it).
	ActiveAt  time.Time `json:"active_at,omitzero"`
	DeletedAt time.Time `json:"deleted_at,omitzero"`
}

// archivePrefix keeps deleted images that had bytes, for metering.
const archivePrefix = "/archive/images/"

// Create registers an image (status queued), counting it in the quota.
func (svc *Service) Create(ctx context.Context, project string, req api.ImagesPost) (api.Image, error) {
	if err := validatePost(&req); err != nil {
		return api.Image{}, err
	}
	t := svc.now().UTC()
	r := record{Image: api.Image{Meta: api.Meta{ID: uuid.NewString(), Name: req.Name, Labels: req.Labels, CreatedAt: t, UpdatedAt: t},
		Project: project, Kind: req.Kind, Format: req.Format, Status: api.ImageQueued, Visibility: req.Visibility,
		MinFlavor: req.MinFlavor, Properties: req.Properties}, Expect: strings.ToLower(req.SHA256)}
	if err := offer(&r, req.SharedWith); err != nil {
		return api.Image{}, err
	}
	k := key(project, req.Name)
	rev, err := quota.Reserve(ctx, svc.s, project, api.ResourceCounts{Images: 1}, []store.Cond{store.Absent(k)}, append([]store.Op{
		store.PutJSON(k, r), events.Op(ctx, "image", events.Created, project, url(project, req.Name), r.Image),
	}, idempotency.Done(ctx, r.Image)...))
	if errors.Is(err, store.ErrConflict) {
		return api.Image{}, errs.Conflict("image %q already exists in project %q", req.Name, project)
	}
	if err != nil {
		return api.Image{}, err
	}
	r.Revision = rev
	return r.Image, nil
}

func (svc *Service) get(ctx context.Context, project, name string) (record, int64, error) {
	var r record
	rev, err := store.GetJSON(ctx, svc.s, key(project, name), &r)
	if errors.Is(err, store.ErrNotFound) {
		return r, 0, errs.NotFound("image %q not found in project %q", name, project)
	}
	r.Revision = rev
	return r, rev, err
}

// usable says whether project may use the image: its own, a public one,
// or one shared with it that it accepted.
func usable(img api.Image, project string) bool {
	return img.Project == project || img.Visibility == api.VisibilityPublic ||
		img.Visibility == api.VisibilityShared && shareStatus(img, project) == api.ShareAccepted
}

// view is the image as project sees it: whom it is shared with is its
// owner's business.
func view(img api.Image, project string) api.Image {
	if img.Project != project {
		img.SharedWith, img.Shares = nil, nil
	}
	return img
}

// Get returns an image by name as project sees it: its own, or another
// project's public or accepted one named "owner/name".
func (svc *Service) Get(ctx context.Context, project, ref string) (api.Image, error) {
	owner, name := project, ref
	if o, n, ok := strings.Cut(ref, "/"); ok {
		owner, name = o, n
	}
	r, _, err := svc.get(ctx, owner, name)
	if errors.Is(err, errs.ErrNotFound) || err == nil && !usable(r.Image, project) {
		return api.Image{}, errs.NotFound("image %q not found", ref)
	}
	if err != nil {
		return api.Image{}, err
	}
	return view(r.Image, project), nil
}

// Resolve finds the image a request names. "owner/name" is that image
// if project may use it. A bare name is the project's own image of that
// name, else the one public image or accepted share of that name; when
// there are several it is a conflict that lists them, never a pick by key
// order (a project named to sort first would capture the name for every
// other project).
func (svc *Service) Resolve(ctx context.Context, project, ref string) (api.Image, error) {
	if strings.Contains(ref, "/") {
		return svc.Get(ctx, project, ref)
	}
	if r, _, err := svc.get(ctx, project, ref); err == nil {
		return r.Image, nil
	} else if !errors.Is(err, errs.ErrNotFound) {
		return api.Image{}, err
	}
	all, err := svc.List(ctx, project)
	if err != nil {
		return api.Image{}, err
	}
	var found []api.Image
	var names []string
	for _, img := range all {
		if img.Name == ref {
			found = append(found, img)
			names = append(names, img.Project+"/"+img.Name)
		}
	}
	switch len(found) {
	case 0:
		return api.Image{}, errs.NotFound("image %q not found (own, public or shared with project %q and accepted)", ref, project)
	case 1:
		return found[0], nil
	}
	return api.Image{}, errs.Conflict("image name %q is ambiguous: it is public or shared with project %q in several projects; name one of %s", ref, project, strings.Join(names, ", "))
}

// List returns the images project can use: its own, public ones and
// those shared with it that it accepted.
func (svc *Service) List(ctx context.Context, project string) ([]api.Image, error) {
	items, err := store.ListJSON[record](ctx, svc.s, prefix)
	if err != nil {
		return nil, err
	}
	out := []api.Image{}
	for _, it := range items {
		if r := it.Value; usable(r.Image, project) {
			r.Revision = it.Revision
			out = append(out, view(r.Image, project))
		}
	}
	return out, nil
}

// Patch changes visibility and sharing (the owner project).
func (svc *Service) Patch(ctx context.Context, project, name string, p api.ImagePatch) (api.Image, error) {
	r, rev, err := store.UpdateJSON(ctx, svc.s, key(project, name), func(r *record) error {
		if p.Visibility != nil {
			r.Visibility = *p.Visibility
		}
		if err := checkVisibility(r.Visibility, p.SharedWith); err != nil {
			return err
		}
		if p.SharedWith != nil {
			if err := offer(r, p.SharedWith); err != nil {
				return err
			}
		}
		r.UpdatedAt = svc.now().UTC()
		return nil
	}, func(r *record) []store.Op {
		return []store.Op{events.Op(ctx, "image", events.Updated, project, url(project, name), r.Image)}
	})
	if errors.Is(err, store.ErrNotFound) {
		return api.Image{}, errs.NotFound("image %q not found in project %q", name, project)
	}
	r.Revision = rev
	return r.Image, err
}

// BlobPath is where the bytes with this sha256 are kept.
func (svc *Service) BlobPath(sum string) string { return filepath.Join(svc.dir, "blobs", sum) }

// Upload streams an image's bytes: hashed while written to a temp file,
// checked, and renamed into the store only when complete and valid. What
// is left of the project's image storage and the cloud's MaxSize bound
// both the upload and what it unpacks to, and the quota is charged the
// larger of the two sizes; any failure removes the temp file and puts the
// image in error, with the reason.
func (svc *Service) Upload(ctx context.Context, project, name string, body io.Reader) (api.Image, error) {
	return svc.upload(ctx, project, name, "", body)
}

// upload is Upload into the image of that name only if its id is id ("":
// any): work that registered an image must not fill another one made
// under the same name after the first was deleted.
func (svc *Service) upload(ctx context.Context, project, name, id string, body io.Reader) (api.Image, error) {
	r, rev, err := svc.get(ctx, project, name)
	if err == nil && id != "" && r.ID != id {
		err = errs.NotFound("image %q was deleted", name)
	}
	if err != nil {
		return api.Image{}, err
	}
	if r.Status != api.ImageQueued && r.Status != api.ImageError {
		return api.Image{}, errs.Conflict("image %q is %s; its bytes can be uploaded once, while queued", name, r.Status)
	}
	q, _, err := quota.Get(ctx, svc.s, project)
	if err != nil {
		return api.Image{}, err
	}
	lim := limits{left: -1, max: svc.maxSize}
	if lim.max <= 0 {
		lim.max = math.MaxInt64
	}
	if q.Limit.ImageMiB >= 0 {
		lim.left = max(q.Limit.ImageMiB-q.Usage.ImageMiB, 0) << 20
	}
	r.Status, r.Error = api.ImageSaving, ""
	if rev, err = svc.s.Update(ctx, key(project, name), store.MustJSON(r), rev); err != nil {
		return api.Image{}, errs.Conflict("image %q changed; try again", name)
	}
	sum, size, unpacked, tmp, err := svc.receive(ctx, body, lim, r)
	if err == nil {
		// Charge the bytes and go active in one transaction.
		r.Status, r.Size, r.SHA256, r.UpdatedAt = api.ImageActive, size, sum, svc.now().UTC()
		r.UnpackedSize, r.VirtualSize = unpacked.Bytes, unpacked.VirtualSize
		r.ActiveAt = r.UpdatedAt
		if rerr := os.Rename(tmp, svc.BlobPath(sum)); rerr != nil {
			err = rerr
		} else {
			var nrev int64
			nrev, err = quota.Reserve(ctx, svc.s, project, api.ResourceCounts{ImageMiB: chargedMiB(r.Image)}, []store.Cond{store.At(key(project, name), rev)},
				[]store.Op{store.PutJSON(key(project, name), r), events.Op(ctx, "image", "active", project, url(project, name), r.Image)})
			if err == nil {
				r.Revision = nrev
				return r.Image, nil
			}
			svc.dropBlobIfUnused(ctx, sum)
		}
	}
	os.Remove(tmp)
	fail := r
	fail.Status, fail.Error, fail.Size, fail.SHA256, fail.UnpackedSize, fail.VirtualSize = api.ImageError, err.Error(), 0, "", 0, 0
	svc.s.Update(context.WithoutCancel(ctx), key(project, name), store.MustJSON(fail), rev)
	return api.Image{}, err
}

// chargedMiB is what an image counts in its project's image storage: the
// larger of its upload (kept by the server) and what it unpacks to (kept
// by every host that runs it), in MiB rounded up.
func chargedMiB(img api.Image) int64 {
	return (max(img.Size, img.UnpackedSize) + 1<<20 - 1) >> 20
}

// limits bound an upload: the project's image storage left (-1: no
// quota) and the cloud's largest image; the smaller binds.
type limits struct{ left, max int64 }

func (l limits) quotaBinds() bool { return l.left >= 0 && l.left < l.max }

func (l limits) bytes() int64 {
	if l.quotaBinds() {
		return l.left
	}
	return l.max
}

// tooLarge is the error for what (the upload, or what it unpacks to)
// going past the limit that binds.
func (l limits) tooLarge(what string) error {
	if l.quotaBinds() {
		return &errs.Error{Kind: errs.KindQuotaExceeded, Field: "image_mib", Message: fmt.Sprintf("quota exceeded for image_mib: %s is larger than the %s of image storage the project has left", what, human(l.left))}
	}
	return errs.Invalid("body", "%s is larger than %s, the largest image this cloud takes (kumo server --max-image-size)", what, human(l.max))
}

// human writes a size for people.
func human(n int64) string {
	switch {
	case n >= 1<<30 && n%(1<<30) == 0:
		return fmt.Sprintf("%d GiB", n>>30)
	case n >= 1<<20:
		return fmt.Sprintf("%d MiB", n>>20)
	}
	return fmt.Sprintf("%d bytes", n)
}

// receive writes body to a temp file, hashing it, and checks it.
func (svc *Service) receive(ctx context.Context, body io.Reader, lim limits, r record) (sum string, size int64, u vmimage.Unpacked, tmp string, err error) {
	f, err := os.CreateTemp(filepath.Join(svc.dir, "tmp"), "upload-*")
	if err != nil {
		return "", 0, u, "", err
	}
	tmp = f.Name()
	defer f.Close()
	h := sha256.New()
	size, err = io.Copy(io.MultiWriter(f, h), io.LimitReader(body, lim.bytes()+1))
	if err != nil {
		return "", size, u, tmp, errs.Invalid("body", "upload broken off after %d bytes: %v", size, err)
	}
	if size > lim.bytes() {
		return "", size, u, tmp, lim.tooLarge("the upload")
	}
	if size == 0 {
		return "", 0, u, tmp, errs.Invalid("body", "the upload is empty")
	}
	if err := f.Sync(); err != nil {
		return "", size, u, tmp, err
	}
	sum = hex.EncodeToString(h.Sum(nil))
	if r.Expect != "" && r.Expect != sum {
		return "", size, u, tmp, errs.Invalid("sha256", "the upload's sha256 is %s, not %s as announced: corrupt or truncated", sum, r.Expect)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return "", size, u, tmp, err
	}
	switch r.Kind {
	case api.KindContainerRootfs:
		u.Bytes, err = CheckRootfs(f, r.Format == "tar.gz", lim.bytes())
	case api.KindVMDisk:
		// A host's cache keeps the disk file as it is.
		var info vmimage.DiskInfo
		if info, err = vmimage.InspectDisk(ctx, tmp, r.Format); err != nil {
			err = errs.Invalid("body", "not a usable %s disk: %v", r.Format, err)
		}
		u = vmimage.Unpacked{Bytes: size, VirtualSize: info.VirtualSize}
	case api.KindVMKernel:
		if u, err = vmimage.CheckKernelImage(ctx, f, filepath.Dir(tmp), lim.bytes()); err != nil && !errors.Is(err, vmimage.ErrTooLarge) {
			err = errs.Invalid("body", "not a usable vm-kernel image: %v", err)
		}
	}
	if errors.Is(err, vmimage.ErrTooLarge) {
		err = lim.tooLarge("the image unpacked")
	}
	if err != nil {
		return "", size, u, tmp, err
	}
	return sum, size, u, tmp, nil
}

// dropBlobIfUnused removes a file no image points at any more.
func (svc *Service) dropBlobIfUnused(ctx context.Context, sum string) {
	items, err := store.ListJSON[record](ctx, svc.s, prefix)
	if err != nil {
		return
	}
	for _, it := range items {
		if it.Value.SHA256 == sum {
			return
		}
	}
	os.Remove(svc.BlobPath(sum))
}

// Delete removes an image; one in use by live instances is refused unless
// force (cloud admins only; checked by the caller).
func (svc *Service) Delete(ctx context.Context, project, name string, force bool) error {
	r, rev, err := svc.get(ctx, project, name)
	if err != nil {
		return err
	}
	if n, err := svc.users.ImageUsers(ctx, project, name); err != nil {
		return err
	} else if n > 0 && !force {
		return errs.Conflict("image %q is used by %d instances; terminate them first (a cloud admin may force)", name, n)
	}
	return svc.remove(ctx, r, rev)
}

// remove deletes the image r read at rev, releasing its quota and, if no
// other image shares them, its bytes.
func (svc *Service) remove(ctx context.Context, r record, rev int64) error {
	project, name := r.Project, r.Name
	mib := chargedMiB(r.Image)
	ops := []store.Op{store.Del(key(project, name)), events.Op(ctx, "image", events.Deleted, project, url(project, name), nil)}
	if !r.ActiveAt.IsZero() {
		r.DeletedAt = svc.now().UTC()
		ops = append(ops, store.PutJSON(archivePrefix+project+"/"+r.ID, r))
	}
	_, err := quota.Reserve(ctx, svc.s, project, api.ResourceCounts{Images: -1, ImageMiB: -mib}, []store.Cond{store.At(key(project, name), rev)}, ops)
	if errors.Is(err, store.ErrConflict) {
		return errs.Conflict("image %q changed while being deleted; try again", name)
	}
	if err == nil && r.SHA256 != "" {
		svc.dropBlobIfUnused(ctx, r.SHA256)
	}
	return err
}

// BySum finds an active image with these bytes (agents fetch by hash).
func (svc *Service) BySum(ctx context.Context, sum string) (api.Image, error) {
	items, err := store.ListJSON[record](ctx, svc.s, prefix)
	if err != nil {
		return api.Image{}, err
	}
	for _, it := range items {
		if it.Value.SHA256 == sum && it.Value.Status == api.ImageActive {
			return it.Value.Image, nil
		}
	}
	return api.Image{}, errs.NotFound("no image with sha256 %s", sum)
}

// ForgetProject is what a project's deletion asks of images: the records
// of its deleted images (metering bills their storage) move to the name
// as, which no project can have, and the project leaves the share lists
// of other projects' images. A new project of the old name inherits
// neither.
func (svc *Service) ForgetProject(ctx context.Context, project, as string) error {
	if err := store.MoveJSON(ctx, svc.s, archivePrefix+project+"/", archivePrefix+as+"/", func(r *record) { r.Project = as }); err != nil {
		return err
	}
	items, err := store.ListJSON[record](ctx, svc.s, prefix)
	if err != nil {
		return err
	}
	for _, it := range items {
		if !slices.Contains(it.Value.SharedWith, project) {
			continue
		}
		_, _, err := store.UpdateJSON(ctx, svc.s, it.Key, func(r *record) error {
			r.SharedWith = slices.DeleteFunc(r.SharedWith, func(p string) bool { return p == project })
			return nil
		}, func(r *record) []store.Op {
			return []store.Op{events.Op(ctx, "image", events.Updated, r.Project, url(r.Project, r.Name), r.Image)}
		})
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return err
		}
	}
	return nil
}

// Stored is an image's stay in storage, for metering.
type Stored struct {
	Project, Name string
	Bytes         int64
	From, To      time.Time // To is zero while it is kept
}

// StoredImages lists every image of a project ("" = all) that has had
// bytes, deleted ones included.
func (svc *Service) StoredImages(ctx context.Context, project string) ([]Stored, error) {
	items, err := store.ListJSON[record](ctx, svc.s, store.Under(project, prefix, archivePrefix)...)
	var out []Stored
	for _, it := range items {
		if r := it.Value; !r.ActiveAt.IsZero() {
			out = append(out, Stored{Project: r.Project, Name: r.Name, Bytes: r.Size, From: r.ActiveAt, To: r.DeletedAt})
		}
	}
	return out, err
}
