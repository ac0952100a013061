package pool

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"

	"github.com/kumocloud/kumo/internal/vmimage"
)

// Snapshots are whole sparse copies kept beside their volume:
// <dir>/<volume id>@<snapshot id>.<format>. A copy is made under a
// temporary name and renamed, so a snapshot is whole or absent.

// SnapshotSource is where a snapshot of v is kept.
func (d Dir) SnapshotSource(v Volume, snap string) string {
	return d.file(v.ID+"@"+snap, v.Format)
}

// HasSnapshot says whether the snapshot is there.
func (d Dir) HasSnapshot(v Volume, snap string) bool {
	st, err := os.Lstat(d.SnapshotSource(v, snap))
	return err == nil && st.Mode().IsRegular()
}

// Copy copies a volume file (qcow2 or ext4) into a new standalone file at
// dst, sparse, through a temporary name.
func Copy(ctx context.Context, src, dst, format string) error {
	tmp := dst + ".tmp"
	os.Remove(tmp)
	var cmd []string
	if format == Qcow2 {
		cmd = []string{"qemu-img", "convert", "-U", "-O", "qcow2", vmimage.JSONFilename(vmimage.Node(src, vmimage.FormatQcow2)), tmp}
	} else {
		cmd = []string{"cp", "--sparse=always", "--reflink=auto", src, tmp}
	}
	if out, err := exec.CommandContext(ctx, cmd[0], cmd[1:]...).CombinedOutput(); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("%s: %v: %s", cmd[0], err, strings.TrimSpace(string(out)))
	}
	return os.Rename(tmp, dst)
}

// TakeSnapshot copies a volume that is not in use (or frozen) into its
// snapshot.
func (d Dir) TakeSnapshot(ctx context.Context, v Volume, snap string) error {
	if err := CheckID(snap); err != nil {
		return err
	}
	return Copy(ctx, d.Source(v), d.SnapshotSource(v, snap), v.Format)
}

// RemoveSnapshot deletes a snapshot (missing is fine).
func (d Dir) RemoveSnapshot(v Volume, snap string) error {
	if err := CheckID(snap); err != nil {
		return err
	}
	for _, p := range []string{d.SnapshotSource(v, snap), d.SnapshotSource(v, snap) + ".tmp"} {
		if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	return nil
}

// Revert makes a volume's content its snapshot's (the volume not in use).
func (d Dir) Revert(ctx context.Context, v Volume, snap string) error {
	return Copy(ctx, d.SnapshotSource(v, snap), d.Source(v), v.Format)
}

// Snapshots lists the snapshots kept of a volume.
func (d Dir) Snapshots(volID string) []string {
	ents, _ := os.ReadDir(d.Path)
	var out []string
	for _, e := range ents {
		name, _, _ := strings.Cut(e.Name(), ".")
		if vol, snap, ok := strings.Cut(name, "@"); ok && vol == volID && CheckID(snap) == nil {
			out = append(out, snap)
		}
	}
	return out
}
