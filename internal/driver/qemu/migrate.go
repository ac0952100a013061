package qemu

import (
	"archive/tar"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"

	"github.com/kumocloud/kumo/internal/driver"
)

// Cold migration of VMs: a stopped or saved VM travels as a tar stream of
// its overlay (the disk's changes over the base image), its saved state
// (memory and devices, restored on the target with the guest's memory
// intact), its swap, its console log and a few words of its record (a VM
// booting from a volume has no overlay: the agent sends its volumes). The
// target prepares the VM as PROLOG does - the base image fetched by hash
// into its own cache, a fresh seed disk - then takes the files and points
// the overlay at its own copy of the base.

var _ driver.Migrator = (*Driver)(nil)

// migrationFiles are the files that travel, and nothing else is taken.
var migrationFiles = []string{"record.json", "disk.qcow2", "state.bin", "swap.img", "console.log"}

// migrationRecord is what travels of a VM's record.
type migrationRecord struct {
	Want   want   `json:"want"`
	Accel  string `json:"accel,omitempty"`
	Reason string `json:"reason,omitempty"`
}

// SendCold implements driver.Migrator.
func (d *Driver) SendCold(ctx context.Context, id string, w io.Writer) (int64, error) {
	l := d.lock(id)
	l.Lock()
	defer l.Unlock()
	m, err := d.readMeta(id)
	if err != nil {
		return 0, err
	}
	if d.pid(id) != 0 || m.Want == wantRunning {
		return 0, fmt.Errorf("%w: a cold migration needs the VM stopped or saved", driver.ErrState)
	}
	cw := &driver.CountWriter{W: w}
	tw := tar.NewWriter(cw)
	rec, _ := json.Marshal(migrationRecord{Want: m.Want, Accel: m.Accel, Reason: m.Reason})
	if err := tw.WriteHeader(&tar.Header{Name: "record.json", Mode: 0o600, Size: int64(len(rec))}); err != nil {
		return cw.N, err
	}
	if _, err := tw.Write(rec); err != nil {
		return cw.N, err
	}
	for _, name := range migrationFiles[1:] {
		if err := addFile(ctx, tw, d.path(id, name), name); err != nil {
			return cw.N, err
		}
	}
	err = tw.Close()
	return cw.N, err
}

func addFile(ctx context.Context, tw *tar.Writer, path, name string) error {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o600, Size: st.Size()}); err != nil {
		return err
	}
	_, err = io.Copy(tw, &ctxReader{ctx: ctx, r: f})
	return err
}

// ReceiveCold implements driver.Migrator. Only the files it knows are
// taken, each no larger than what the flavor allows; the overlay must be
// a plain qcow2 (no data file), and its backing is set to this host's copy
// of the base. On any error the VM is removed again.
func (d *Driver) ReceiveCold(ctx context.Context, s driver.Spec, r io.Reader) (err error) {
	undo, err := driver.PrepareAfresh(ctx, d, s)
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			undo()
		}
	}()
	l := d.lock(s.ID)
	l.Lock()
	defer l.Unlock()
	m, err := d.readMeta(s.ID)
	if err != nil {
		return err
	}
	// The disk this host prepared for it: the received one may not be
	// larger. (A VM booting from a volume has none: its root disk is the
	// volume, checked by the agent that receives it.)
	var prepared overlay
	if s.BootVolume == "" {
		if prepared, err = overlayInfo(ctx, d.path(s.ID, "disk.qcow2")); err != nil {
			return err
		}
	}
	limit := map[string]int64{
		"record.json": 64 << 10,
		"disk.qcow2":  max(s.Size.DiskGiB, 1)<<30 + 64<<20,
		"state.bin":   s.Size.MemoryMiB<<20*2 + 64<<20,
		"swap.img":    s.Size.SwapMiB<<20 + 1<<20,
		"console.log": 64 << 20,
	}
	var rec migrationRecord
	got := map[string]bool{}
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("migration stream: %w", err)
		}
		max, ok := limit[h.Name]
		switch {
		case !ok || h.Typeflag != tar.TypeReg:
			return fmt.Errorf("migration stream: unexpected entry %q", h.Name)
		case got[h.Name]:
			return fmt.Errorf("migration stream: %q twice", h.Name)
		case h.Size < 0 || h.Size > max:
			return fmt.Errorf("migration stream: %s is %d bytes, more than the flavor allows (%d)", h.Name, h.Size, max)
		}
		got[h.Name] = true
		if h.Name == "record.json" {
			if err := json.NewDecoder(io.LimitReader(tr, max)).Decode(&rec); err != nil {
				return fmt.Errorf("migration stream: record: %w", err)
			}
			continue
		}
		if err := writeFile(ctx, d.path(s.ID, h.Name), tr, h.Size); err != nil {
			return err
		}
	}
	// A VM booting from a volume has no overlay: its root disk is the
	// volume, which travels beside this stream (the agent's).
	if !got["record.json"] || !got["disk.qcow2"] && s.BootVolume == "" {
		return errors.New("migration stream: incomplete (no record or no disk)")
	}
	if got["disk.qcow2"] && s.BootVolume != "" {
		return errors.New("migration stream: an overlay for a VM booting from a volume")
	}
	switch rec.Want {
	case wantStopped, wantPrepared:
	case wantSaved:
		if !got["state.bin"] {
			return errors.New("migration stream: a saved VM without its state")
		}
	default:
		return fmt.Errorf("migration stream: a VM that is %q cannot move cold", rec.Want)
	}
	if s.BootVolume == "" {
		if err := d.adoptOverlay(ctx, s.ID, m, prepared.VirtualSize); err != nil {
			return err
		}
	}
	m.Want, m.Accel, m.Reason = rec.Want, rec.Accel, rec.Reason
	return d.writeMeta(s.ID, m)
}

// overlay is what qemu-img says of a VM's overlay (its header only: no
// backing file is opened).
type overlay struct {
	Format      string `json:"format"`
	VirtualSize int64  `json:"virtual-size"`
	Spec        struct {
		Data struct {
			DataFile string `json:"data-file"`
		} `json:"data"`
	} `json:"format-specific"`
}

func overlayInfo(ctx context.Context, disk string) (overlay, error) {
	var info overlay
	out, err := exec.CommandContext(ctx, "qemu-img", "info", "-f", "qcow2", "--output=json", disk).Output()
	if err != nil {
		return info, fmt.Errorf("the disk is not a qcow2 image: %w", err)
	}
	if err := json.Unmarshal(out, &info); err != nil || info.Format != "qcow2" {
		return info, fmt.Errorf("the disk is not a qcow2 image (%v)", err)
	}
	return info, nil
}

// adoptOverlay checks a received overlay - a plain qcow2, no larger than
// the one this host prepared (max bytes) - and points it at this host's
// base image (only the header changes: -u).
func (d *Driver) adoptOverlay(ctx context.Context, id string, m meta, max int64) error {
	disk := d.path(id, "disk.qcow2")
	info, err := overlayInfo(ctx, disk)
	if err != nil || info.Spec.Data.DataFile != "" {
		return fmt.Errorf("the received disk is not a plain qcow2 overlay (%v)", err)
	}
	if info.VirtualSize > max {
		return fmt.Errorf("migration stream: the disk is %d bytes, more than the %d this host prepared for the instance", info.VirtualSize, max)
	}
	args := []string{"rebase", "-u", "-f", "qcow2", "-b", "", disk}
	if m.Base != "" {
		args = []string{"rebase", "-u", "-f", "qcow2", "-F", m.BaseFormat, "-b", m.Base, disk}
	}
	if out, err := exec.CommandContext(ctx, "qemu-img", args...).CombinedOutput(); err != nil {
		return fmt.Errorf("qemu-img rebase: %v: %s", err, strings.TrimSpace(string(out)))
	}
	return nil
}

func writeFile(ctx context.Context, path string, r io.Reader, size int64) error {
	tmp := path + ".part"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	n, err := io.Copy(f, &ctxReader{ctx: ctx, r: io.LimitReader(r, size)})
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil && n != size {
		err = fmt.Errorf("migration stream: %s cut short (%d of %d bytes)", path, n, size)
	}
	if err != nil {
		os.Remove(tmp)
		return err
	}
	return os.Rename(tmp, path)
}

// ctxReader stops a copy when ctx ends.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c *ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}
