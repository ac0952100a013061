// Package pool is a storage pool as a host's agent uses it: where a
// volume's bytes are, made, grown and removed. A pool is a small
// interface (Backend) so that other kinds fit: the directory backend
// serves both the local pool (a directory under the agent's data dir) and
// shared-dir pools (a directory every host mounts). A networked backend
// such as Ceph RBD would implement Backend with rbd create/resize/rm and
// return from Source the URI QEMU opens natively (rbd:pool/image); see
// docs/volumes.md.
//
// Volume files are named by the volume's id (a UUID the server makes),
// never by a tenant's name, and are made under a temporary name and
// renamed into place, so a crash leaves either nothing or a whole volume
// (and the temporary files are swept).
package pool

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/kumocloud/kumo/internal/vmimage"
)

// Formats.
const (
	Qcow2 = "qcow2" // a sparse qcow2 disk, for VMs
	Ext4  = "ext4"  // a sparse raw file holding an ext4 filesystem, for containers
)

// Volume is what a backend needs to make a volume.
type Volume struct {
	ID      string
	Format  string
	SizeGiB int64
	// Image, in ImageFormat (qcow2 or raw), fills a new qcow2 volume: a
	// file the caller checked (no backing or data file).
	Image       string
	ImageFormat string
}

// Backend is a storage pool on one host.
type Backend interface {
	// Ensure makes the volume if it is missing (zeros, or the image's
	// content) and grows it to SizeGiB if it is smaller; it returns the
	// size it has. Idempotent.
	Ensure(ctx context.Context, v Volume) (int64, error)
	// Exists says whether the volume is there.
	Exists(v Volume) bool
	// Source is what QEMU opens, or what is mounted for a container.
	Source(v Volume) string
	// Remove deletes the volume (missing is fine).
	Remove(ctx context.Context, id string) error
	// IDs lists the volumes the pool holds (snapshots' volumes too).
	IDs() ([]string, error)
	// Snapshots (snapshot.go): kept beside their volume.
	SnapshotSource(v Volume, snap string) string
	HasSnapshot(v Volume, snap string) bool
	TakeSnapshot(ctx context.Context, v Volume, snap string) error
	RemoveSnapshot(v Volume, snap string) error
	Revert(ctx context.Context, v Volume, snap string) error
	Snapshots(volID string) []string
}

// Dir is a pool in a directory.
type Dir struct{ Path string }

var idRE = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)

// CheckID refuses anything but a UUID as a volume id (ids name files).
func CheckID(id string) error {
	if !idRE.MatchString(id) {
		return fmt.Errorf("volume id %q is not a UUID", id)
	}
	return nil
}

func (d Dir) file(id, format string) string { return filepath.Join(d.Path, id+"."+format) }

// Source implements Backend.
func (d Dir) Source(v Volume) string { return d.file(v.ID, v.Format) }

// Exists implements Backend.
func (d Dir) Exists(v Volume) bool {
	st, err := os.Lstat(d.Source(v))
	return err == nil && st.Mode().IsRegular()
}

// Ensure implements Backend.
func (d Dir) Ensure(ctx context.Context, v Volume) (int64, error) {
	if err := CheckID(v.ID); err != nil {
		return 0, err
	}
	if v.Format != Qcow2 && v.Format != Ext4 {
		return 0, fmt.Errorf("volume format %q", v.Format)
	}
	if err := os.MkdirAll(d.Path, 0o700); err != nil {
		return 0, err
	}
	f := d.Source(v)
	if !d.Exists(v) {
		if err := d.make(ctx, v, f); err != nil {
			return 0, err
		}
	}
	have, err := sizeOf(ctx, f, v.Format)
	if err != nil {
		return 0, err
	}
	if want := v.SizeGiB << 30; have < want {
		if err := grow(ctx, f, v.Format, want); err != nil {
			return have >> 30, err
		}
		have = want
	}
	return have >> 30, nil
}

// make writes a new volume under a temporary name, then renames it.
func (d Dir) make(ctx context.Context, v Volume, f string) error {
	tmp := f + ".tmp"
	os.Remove(tmp)
	size := fmt.Sprint(v.SizeGiB << 30)
	var steps [][]string
	switch {
	case v.Image != "":
		if v.ImageFormat != vmimage.FormatQcow2 && v.ImageFormat != vmimage.FormatRaw {
			return fmt.Errorf("image format %q", v.ImageFormat)
		}
		// The image is given as an explicit node (format and file), so no
		// name in its header is followed; the volume stands alone.
		src := vmimage.JSONFilename(vmimage.Node(v.Image, v.ImageFormat))
		steps = [][]string{{"qemu-img", "convert", "-O", "qcow2", src, tmp}, {"qemu-img", "resize", "-f", "qcow2", tmp, size}}
	case v.Format == Qcow2:
		steps = [][]string{{"qemu-img", "create", "-q", "-f", "qcow2", tmp, size}}
	default:
		steps = [][]string{{"truncate", "-s", size, tmp}, {"mkfs.ext4", "-q", "-F", "-m", "0", "-E", "lazy_itable_init=1,lazy_journal_init=1,nodiscard", tmp}}
	}
	for _, s := range steps {
		if out, err := exec.CommandContext(ctx, s[0], s[1:]...).CombinedOutput(); err != nil {
			os.Remove(tmp)
			return fmt.Errorf("%s: %v: %s", s[0], err, strings.TrimSpace(string(out)))
		}
	}
	return os.Rename(tmp, f)
}

// sizeOf is a volume's size: the qcow2's virtual size, or the ext4
// filesystem's (which may lag behind its file's while a grow waits for
// the volume to be let go).
func sizeOf(ctx context.Context, f, format string) (int64, error) {
	if format == Ext4 {
		return fsSize(ctx, f)
	}
	out, err := exec.CommandContext(ctx, "qemu-img", "info", "-U", "--output=json", vmimage.JSONFilename(vmimage.Node(f, vmimage.FormatQcow2))).Output()
	if err != nil {
		return 0, fmt.Errorf("qemu-img info: %w", err)
	}
	var info struct {
		VirtualSize int64 `json:"virtual-size"`
	}
	err = json.Unmarshal(out, &info)
	return info.VirtualSize, err
}

// fsSize is the size of the ext4 filesystem in file, from its superblock.
func fsSize(ctx context.Context, f string) (int64, error) {
	out, err := exec.CommandContext(ctx, "dumpe2fs", "-h", f).Output()
	if err != nil {
		return 0, fmt.Errorf("dumpe2fs: %w", err)
	}
	var count, size int64
	for _, l := range strings.Split(string(out), "\n") {
		k, v, _ := strings.Cut(l, ":")
		switch strings.TrimSpace(k) {
		case "Block count":
			fmt.Sscan(strings.TrimSpace(v), &count)
		case "Block size":
			fmt.Sscan(strings.TrimSpace(v), &size)
		}
	}
	if count == 0 || size == 0 {
		return 0, fmt.Errorf("dumpe2fs: no block count in the superblock")
	}
	return count * size, nil
}

// ErrInUse says a volume is open (attached) and must grow through whoever
// has it open (QEMU's block_resize), or once it is let go.
var ErrInUse = errors.New("the volume is in use")

// grow grows a volume to size. A mounted ext4 volume grows online where
// the host allows it (resize2fs on its loop device needs CAP_SYS_RESOURCE),
// else once it is unmounted.
func grow(ctx context.Context, f, format string, size int64) error {
	run := func(steps ...[]string) error {
		for _, s := range steps {
			if out, err := exec.CommandContext(ctx, s[0], s[1:]...).CombinedOutput(); err != nil {
				if strings.Contains(string(out), "write\" lock") {
					return ErrInUse
				}
				return fmt.Errorf("%s: %v: %s", s[0], err, strings.TrimSpace(string(out)))
			}
		}
		return nil
	}
	if format != Ext4 {
		return run([]string{"qemu-img", "resize", "-f", "qcow2", f, fmt.Sprint(size)})
	}
	if st, err := os.Stat(f); err != nil {
		return err
	} else if st.Size() < size {
		if err := os.Truncate(f, size); err != nil {
			return err
		}
	}
	if loop, _ := LoopOf(f); loop != "" {
		if err := run([]string{"losetup", "-c", loop}, []string{"resize2fs", loop}); err != nil {
			return fmt.Errorf("%w: it grows when detached (online: %v)", ErrInUse, err)
		}
		return nil
	}
	return run([]string{"e2fsck", "-f", "-p", f}, []string{"resize2fs", f})
}

// Remove implements Backend.
func (d Dir) Remove(_ context.Context, id string) error {
	if err := CheckID(id); err != nil {
		return err
	}
	for _, f := range []string{Qcow2, Ext4} {
		for _, snap := range d.Snapshots(id) {
			if err := d.RemoveSnapshot(Volume{ID: id, Format: f}, snap); err != nil {
				return err
			}
		}
		for _, p := range []string{d.file(id, f), d.file(id, f) + ".tmp"} {
			if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
				return err
			}
		}
	}
	return nil
}

// IDs implements Backend (temporary files count: a sweep removes them).
func (d Dir) IDs() ([]string, error) {
	ents, err := os.ReadDir(d.Path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	var out []string
	seen := map[string]bool{}
	for _, e := range ents {
		name, _, _ := strings.Cut(e.Name(), ".")
		id, _, _ := strings.Cut(name, "@")
		if CheckID(id) == nil && !seen[id] {
			seen[id] = true
			out = append(out, id)
		}
	}
	return out, err
}
