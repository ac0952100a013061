package images

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kumocloud/kumo/api"
	"github.com/kumocloud/kumo/internal/errs"
	"github.com/kumocloud/kumo/internal/quota"
	"github.com/kumocloud/kumo/internal/store"
	"github.com/kumocloud/kumo/internal/store/memstore"
)

type entry struct {
	name, link string
	typ        byte
	body       string
}

func tarball(t *testing.T, gz bool, entries ...entry) []byte {
	var buf bytes.Buffer
	var w *tar.Writer
	var zw *gzip.Writer
	if gz {
		zw = gzip.NewWriter(&buf)
		w = tar.NewWriter(zw)
	} else {
		w = tar.NewWriter(&buf)
	}
	for _, e := range entries {
		h := &tar.Header{Name: e.name, Linkname: e.link, Typeflag: e.typ, Mode: 0o755, Size: int64(len(e.body))}
		if e.typ != tar.TypeReg {
			h.Size = 0
		}
		if err := w.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if e.typ == tar.TypeReg {
			w.Write([]byte(e.body))
		}
	}
	w.Close()
	if zw != nil {
		zw.Close()
	}
	return buf.Bytes()
}

var good = []entry{
	{name: "bin/", typ: tar.TypeDir},
	{name: "bin/busybox", typ: tar.TypeReg, body: "ELF..."},
	{name: "bin/sh", link: "busybox", typ: tar.TypeSymlink},
	{name: "sbin/init", link: "/bin/busybox", typ: tar.TypeSymlink},
	{name: "bin/ash", link: "bin/busybox", typ: tar.TypeLink},
}

func TestCheckRootfs(t *testing.T) {
	tests := []struct {
		name string
		add  entry
		want string // "" = accepted
	}{
		{"good", entry{name: "etc/hostname", typ: tar.TypeReg, body: "x"}, ""},
		{"dot-dot path", entry{name: "../../etc/cron.d/evil", typ: tar.TypeReg, body: "x"}, "climbs out"},
		{"dot-dot inside", entry{name: "etc/../../x", typ: tar.TypeReg, body: "x"}, "climbs out"},
		{"absolute path", entry{name: "/etc/passwd", typ: tar.TypeReg, body: "x"}, "absolute path"},
		{"relative symlink out", entry{name: "etc/evil", link: "../../../etc/shadow", typ: tar.TypeSymlink}, "points out"},
		{"absolute symlink out", entry{name: "etc/evil", link: "/../../etc/shadow", typ: tar.TypeSymlink}, "climbs out"},
		{"device node", entry{name: "dev/sda", typ: tar.TypeBlock}, "device nodes"},
		{"char device", entry{name: "dev/mem", typ: tar.TypeChar}, "device nodes"},
		{"hard link out", entry{name: "etc/hl", link: "../outside", typ: tar.TypeLink}, "hard link"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for _, gz := range []bool{true, false} {
				b := tarball(t, gz, append(append([]entry{}, good...), tc.add)...)
				_, err := CheckRootfs(bytes.NewReader(b), gz, -1)
				if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
					t.Fatalf("gzip=%v: %v, want %q", gz, err, tc.want)
				}
			}
		})
	}
	b := tarball(t, true, good...)
	if _, err := CheckRootfs(bytes.NewReader(b[:len(b)/2]), true, -1); err == nil {
		t.Fatal("a truncated tarball was accepted")
	}
	if _, err := CheckRootfs(strings.NewReader("not a tarball at all"), true, -1); err == nil {
		t.Fatal("garbage was accepted")
	}
}

func newSvc(t *testing.T, limitMiB int64) (*Service, store.Store, string) {
	st := memstore.New()
	st.Txn(context.Background(), nil, []store.Op{quota.InitOp("p", api.ResourceCounts{Images: 3, ImageMiB: limitMiB})})
	dir := t.TempDir()
	used := map[string]int{}
	svc, err := New(st, dir, 0, usersFunc(func(_ context.Context, _, name string) (int, error) { return used[name], nil }), time.Now)
	if err != nil {
		t.Fatal(err)
	}
	return svc, st, dir
}

func files(t *testing.T, dir string) int {
	n := 0
	for _, d := range []string{"blobs", "tmp"} {
		es, _ := os.ReadDir(filepath.Join(dir, d))
		n += len(es)
	}
	return n
}

func TestUploadLifecycle(t *testing.T) {
	svc, st, dir := newSvc(t, 10)
	ctx := context.Background()
	body := tarball(t, true, good...)
	sum := sha256.Sum256(body)
	hexsum := hex.EncodeToString(sum[:])
	if _, err := svc.Create(ctx, "p", api.ImagesPost{Name: "tiny", Kind: api.KindContainerRootfs, SHA256: hexsum, Visibility: "public"}); err != nil {
		t.Fatal(err)
	}
	img, err := svc.Upload(ctx, "p", "tiny", bytes.NewReader(body))
	if err != nil || img.Status != api.ImageActive || img.SHA256 != hexsum || img.Size != int64(len(body)) {
		t.Fatalf("upload: %+v %v", img, err)
	}
	if _, err := svc.Upload(ctx, "p", "tiny", bytes.NewReader(body)); !errors.Is(err, errs.ErrConflict) {
		t.Fatalf("second upload: %v", err)
	}
	// The same bytes again share one file.
	svc.Create(ctx, "p", api.ImagesPost{Name: "tiny2", Kind: api.KindContainerRootfs})
	if _, err := svc.Upload(ctx, "p", "tiny2", bytes.NewReader(body)); err != nil {
		t.Fatal(err)
	}
	if n := files(t, dir); n != 1 {
		t.Fatalf("%d files for two identical images", n)
	}
	q, _, _ := quota.Get(ctx, st, "p")
	if q.Usage.Images != 2 || q.Usage.ImageMiB != 2 {
		t.Fatalf("usage %+v", q.Usage)
	}
	// Another project sees the public image, not the private one.
	if _, err := svc.Resolve(ctx, "other", "tiny"); err != nil {
		t.Fatalf("public image from another project: %v", err)
	}
	if _, err := svc.Get(ctx, "other", "p/tiny2"); !errors.Is(err, errs.ErrNotFound) {
		t.Fatalf("private image from another project: %v", err)
	}
	// Deleting one keeps the shared file; deleting both removes it.
	if err := svc.Delete(ctx, "p", "tiny2", false); err != nil {
		t.Fatal(err)
	}
	if n := files(t, dir); n != 1 {
		t.Fatalf("file gone while still used: %d", n)
	}
	svc.Delete(ctx, "p", "tiny", false)
	if n := files(t, dir); n != 0 {
		t.Fatalf("%d files left after deleting every image", n)
	}
	q, _, _ = quota.Get(ctx, st, "p")
	if q.Usage.Images != 0 || q.Usage.ImageMiB != 0 {
		t.Fatalf("usage after deletes %+v", q.Usage)
	}
}

func TestBadUploadsLeaveNothing(t *testing.T) {
	ctx := context.Background()
	good := tarball(t, true, good...)
	evil := tarball(t, true, entry{name: "../../x", typ: tar.TypeReg, body: "x"})
	big := bytes.Repeat([]byte("A"), 3<<20)
	tests := []struct {
		name, sha string
		body      []byte
		limit     int64
		want      string
	}{
		{"wrong sha256", strings.Repeat("0", 64), good, 10, "not " + strings.Repeat("0", 64)},
		{"truncated", "", good[:len(good)-10], 10, "truncated or corrupt"},
		{"path traversal", "", evil, 10, "climbs out"},
		{"over quota", "", big, 2, "quota exceeded for image_mib"},
		{"empty", "", nil, 10, "empty"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			svc, st, dir := newSvc(t, tc.limit)
			svc.Create(ctx, "p", api.ImagesPost{Name: "x", Kind: api.KindContainerRootfs, SHA256: tc.sha})
			_, err := svc.Upload(ctx, "p", "x", bytes.NewReader(tc.body))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("%v, want %q", err, tc.want)
			}
			if n := files(t, dir); n != 0 {
				t.Fatalf("%d files left on disk", n)
			}
			img, _ := svc.Get(ctx, "p", "x")
			q, _, _ := quota.Get(ctx, st, "p")
			if img.Status != api.ImageError || img.Error == "" || q.Usage.ImageMiB != 0 {
				t.Fatalf("image %+v, usage %+v", img, q.Usage)
			}
		})
	}
}

func TestDeleteInUse(t *testing.T) {
	st := memstore.New()
	st.Txn(context.Background(), nil, []store.Op{quota.InitOp("p", quota.Defaults())})
	svc, _ := New(st, t.TempDir(), 0, usersFunc(func(context.Context, string, string) (int, error) { return 2, nil }), time.Now)
	ctx := context.Background()
	svc.Create(ctx, "p", api.ImagesPost{Name: "x", Kind: api.KindContainerRootfs})
	if err := svc.Delete(ctx, "p", "x", false); !errors.Is(err, errs.ErrConflict) || !strings.Contains(err.Error(), "used by 2 instances") {
		t.Fatalf("delete in use: %v", err)
	}
	if err := svc.Delete(ctx, "p", "x", true); err != nil {
		t.Fatalf("forced delete: %v", err)
	}
}

// qcow2 makes a qcow2 disk with qemu-img create and these options (a
// backing file, a data file...).
func qcow2(t *testing.T, opts ...string) []byte {
	if _, err := exec.LookPath("qemu-img"); err != nil {
		t.Skip("qemu-img is not installed (make test installs qemu-utils)")
	}
	p := filepath.Join(t.TempDir(), "d.qcow2")
	args := append([]string{"create", "-q", "-f", "qcow2"}, opts...)
	if out, err := exec.Command("qemu-img", append(args, p, "64M")...).CombinedOutput(); err != nil {
		t.Fatalf("qemu-img: %v %s", err, out)
	}
	b, _ := os.ReadFile(p)
	return b
}

// TestVMImageChecks: VM disks are what they claim, standalone; vm-kernel
// tarballs hold a kernel and nothing unexpected. Rejections say why and
// leave nothing on disk.
func TestVMImageChecks(t *testing.T) {
	ctx := context.Background()
	disk := qcow2(t)
	// Disks that name host files: QEMU would read them as the guest's disk.
	dataFile := qcow2(t, "-o", "data_file="+filepath.Join(t.TempDir(), "host-file")+",data_file_raw=on")
	backing := qcow2(t, "-u", "-F", "raw", "-b", "/etc/shadow")
	jsonBacking := qcow2(t, "-u", "-F", "raw", "-b", `json:{"driver":"raw","file":{"driver":"file","filename":"/etc/shadow"}}`)
	withDisk := func(d []byte) []byte {
		return tarball(t, true, entry{name: "vmlinuz", typ: tar.TypeReg, body: "k"}, entry{name: "disk.qcow2", typ: tar.TypeReg, body: string(d)})
	}
	kernel := func(entries ...entry) []byte { return tarball(t, true, entries...) }
	tests := []struct {
		name, kind, format string
		body               []byte
		want               string // "" = accepted
	}{
		{"qcow2 disk", api.KindVMDisk, "qcow2", disk, ""},
		{"raw disk", api.KindVMDisk, "raw", bytes.Repeat([]byte{0}, 1<<20), ""},
		{"qcow2 claimed raw", api.KindVMDisk, "raw", disk, "is qcow2, not raw"},
		{"raw claimed qcow2", api.KindVMDisk, "qcow2", bytes.Repeat([]byte{0}, 1<<20), "is raw, not qcow2"},
		{"backing file", api.KindVMDisk, "qcow2", backing, `backing file "/etc/shadow"`},
		{"json: backing file", api.KindVMDisk, "qcow2", jsonBacking, `backing file "json:{`},
		{"external data file", api.KindVMDisk, "qcow2", dataFile, "external data file"},
		{"qcow2 bytes claimed raw", api.KindVMDisk, "raw", dataFile, "is qcow2, not raw"},
		{"kernel whose disk has a data file", api.KindVMKernel, "tar.gz", withDisk(dataFile), "disk.qcow2: the disk has an external data file"},
		{"kernel whose disk has a backing file", api.KindVMKernel, "tar.gz", withDisk(backing), "disk.qcow2: the disk has a backing file"},
		{"kernel whose disk has a json: backing", api.KindVMKernel, "tar.gz", withDisk(jsonBacking), "disk.qcow2: the disk has a backing file"},
		{"kernel image", api.KindVMKernel, "tar.gz", kernel(entry{name: "vmlinuz", typ: tar.TypeReg, body: "k"}, entry{name: "initrd", typ: tar.TypeReg, body: "i"}), ""},
		{"kernel with its disk", api.KindVMKernel, "tar.gz", kernel(entry{name: "vmlinuz", typ: tar.TypeReg, body: "k"}, entry{name: "disk.qcow2", typ: tar.TypeReg, body: string(disk)}), ""},
		{"no kernel", api.KindVMKernel, "tar.gz", kernel(entry{name: "initrd", typ: tar.TypeReg, body: "i"}), "needs a vmlinuz"},
		{"stray member", api.KindVMKernel, "tar.gz", kernel(entry{name: "vmlinuz", typ: tar.TypeReg, body: "k"}, entry{name: "etc/passwd", typ: tar.TypeReg, body: "x"}), `entry "etc/passwd"`},
		{"symlink kernel", api.KindVMKernel, "tar.gz", kernel(entry{name: "vmlinuz", typ: tar.TypeSymlink, link: "/boot/vmlinuz"}), "only regular files"},
		{"bad disk inside", api.KindVMKernel, "tar.gz", kernel(entry{name: "vmlinuz", typ: tar.TypeReg, body: "k"}, entry{name: "disk.qcow2", typ: tar.TypeReg, body: "not a disk"}), "disk.qcow2: the disk is raw, not qcow2"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			svc, _, dir := newSvc(t, 100)
			if _, err := svc.Create(ctx, "p", api.ImagesPost{Name: "x", Kind: tc.kind, Format: tc.format}); err != nil {
				t.Fatal(err)
			}
			img, err := svc.Upload(ctx, "p", "x", bytes.NewReader(tc.body))
			if tc.want == "" {
				if err != nil || img.Status != api.ImageActive {
					t.Fatalf("rejected: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("%v, want %q", err, tc.want)
			}
			if !errors.Is(err, errs.ErrInvalid) {
				t.Fatalf("%v is not a 400", err)
			}
			if n := files(t, dir); n != 0 {
				t.Fatalf("%d files left on disk", n)
			}
		})
	}
}

// TestUnpackedSizes: an image counts in the quota by what it unpacks to
// (a small archive of zeros that expands past what is left is refused
// with the quota error, before it is active, leaving nothing), the cloud's
// largest image bounds it too, and the image shows its unpacked and
// virtual sizes.
func TestUnpackedSizes(t *testing.T) {
	ctx := context.Background()
	bomb := tarball(t, true, entry{name: "zeros", typ: tar.TypeReg, body: string(make([]byte, 64<<20))})
	if len(bomb) > 1<<20 {
		t.Fatalf("the bomb is %d bytes compressed", len(bomb))
	}
	for _, tc := range []struct {
		name     string
		limitMiB int64
		maxSize  int64
		want     string
		kind     error
	}{
		{"over the quota", 10, DefaultMaxSize, "quota exceeded for image_mib: the image unpacked is larger than the 10 MiB", errs.ErrQuotaExceeded},
		{"over the cloud's cap", -1, 32 << 20, "the image unpacked is larger than 32 MiB, the largest image this cloud takes", errs.ErrInvalid},
		{"upload over the cap", -1, 16 << 10, "the upload is larger than 16384 bytes", errs.ErrInvalid},
	} {
		t.Run(tc.name, func(t *testing.T) {
			svc, st, dir := newSvc(t, tc.limitMiB)
			svc.maxSize = tc.maxSize
			svc.Create(ctx, "p", api.ImagesPost{Name: "bomb", Kind: api.KindContainerRootfs})
			_, err := svc.Upload(ctx, "p", "bomb", bytes.NewReader(bomb))
			if err == nil || !strings.Contains(err.Error(), tc.want) || !errors.Is(err, tc.kind) {
				t.Fatalf("%v, want %q", err, tc.want)
			}
			img, _ := svc.Get(ctx, "p", "bomb")
			q, _, _ := quota.Get(ctx, st, "p")
			if img.Status != api.ImageError || q.Usage.ImageMiB != 0 || files(t, dir) != 0 {
				t.Fatalf("image %s, usage %d MiB, %d files", img.Status, q.Usage.ImageMiB, files(t, dir))
			}
		})
	}
	// Within the limits: charged 64 MiB, not the compressed size.
	svc, st, _ := newSvc(t, 100)
	svc.Create(ctx, "p", api.ImagesPost{Name: "bomb", Kind: api.KindContainerRootfs})
	img, err := svc.Upload(ctx, "p", "bomb", bytes.NewReader(bomb))
	q, _, _ := quota.Get(ctx, st, "p")
	if err != nil || img.UnpackedSize != 64<<20 || img.Size != int64(len(bomb)) || q.Usage.ImageMiB != 64 {
		t.Fatalf("%+v %v; usage %d MiB", img, err, q.Usage.ImageMiB)
	}
	if err := svc.Delete(ctx, "p", "bomb", false); err != nil {
		t.Fatal(err)
	}
	if q, _, _ := quota.Get(ctx, st, "p"); q.Usage.ImageMiB != 0 {
		t.Fatalf("usage after the delete: %d MiB", q.Usage.ImageMiB)
	}
	// Disks: the file, and its virtual size.
	disk := qcow2(t)
	svc.Create(ctx, "p", api.ImagesPost{Name: "disk", Kind: api.KindVMDisk, Format: "qcow2"})
	if img, err := svc.Upload(ctx, "p", "disk", bytes.NewReader(disk)); err != nil || img.UnpackedSize != int64(len(disk)) || img.VirtualSize != 64<<20 {
		t.Fatalf("a qcow2 disk: %+v %v", img, err)
	}
	kernel := tarball(t, true, entry{name: "vmlinuz", typ: tar.TypeReg, body: "kernel"}, entry{name: "disk.qcow2", typ: tar.TypeReg, body: string(disk)})
	svc.Create(ctx, "p", api.ImagesPost{Name: "kernel", Kind: api.KindVMKernel})
	if img, err := svc.Upload(ctx, "p", "kernel", bytes.NewReader(kernel)); err != nil || img.UnpackedSize != int64(len(disk))+6 || img.VirtualSize != 64<<20 {
		t.Fatalf("a vm-kernel image: %+v %v", img, err)
	}
}

// usersFunc counts an image's users the test's way.
type usersFunc func(ctx context.Context, project, image string) (int, error)

func (f usersFunc) ImageUsers(ctx context.Context, project, image string) (int, error) {
	return f(ctx, project, image)
}
