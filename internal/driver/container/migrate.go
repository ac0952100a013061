package container

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/kumocloud/kumo/internal/driver"
)

// Cold migration of containers: a container's writable layer is its own
// ext4 image (disk.go), so what travels is that image - unmounted, its
// data extents only (it is sparse: a 10 GiB disk holding 5 MiB of files
// sends 5 MiB) - and its console log. Whiteouts and xattrs of the upper
// layer travel inside the filesystem untouched. The target prepares the
// container as PROLOG does (the image's rootfs fetched by hash into its own
// cache), then puts the received disk in place of its fresh one.
//
// Stream: a header line, a JSON line (migrationHead), then the disk's
// extents - offset and length (big-endian uint64s) and the bytes - ended
// by a zero length, then the console log's length and bytes.

var _ driver.Migrator = (*Driver)(nil)

const migrationHeader = "kumo-container-migration v1\n"

type migrationHead struct {
	Saved    bool  `json:"saved"`
	DiskSize int64 `json:"disk_size"`
}

// maxConsole bounds a console log that travels.
const maxConsole = 64 << 20

// SendCold implements driver.Migrator.
func (d *Driver) SendCold(ctx context.Context, id string, w io.Writer) (int64, error) {
	m, err := d.readMeta(id)
	if err != nil {
		return 0, err
	}
	if st := d.state(ctx, id); st == "running" || st == "paused" {
		return 0, fmt.Errorf("%w: a cold migration needs the container stopped", driver.ErrState)
	}
	d.runcCmd(ctx, "delete", "--force", id)
	// Unmounted: the image is consistent, and nothing writes it.
	if err := d.unmountAll(id); err != nil {
		return 0, err
	}
	f, err := os.Open(d.diskImage(id))
	if err != nil {
		return 0, fmt.Errorf("the container has no disk image to send (prepared by an older kumo?): %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return 0, err
	}
	cw := &driver.CountWriter{W: w}
	bw := bufio.NewWriterSize(cw, 1<<20)
	head, _ := json.Marshal(migrationHead{Saved: m.Saved, DiskSize: st.Size()})
	if _, err := fmt.Fprintf(bw, "%s%s\n", migrationHeader, head); err != nil {
		return cw.N, err
	}
	if err := driver.SendExtents(ctx, f, st.Size(), bw); err != nil {
		return cw.N, err
	}
	if err := sendConsole(filepath.Join(d.dir(id), "console.log"), bw); err != nil {
		return cw.N, err
	}
	err = bw.Flush()
	return cw.N, err
}

func sendConsole(path string, w io.Writer) error {
	var n [8]byte
	f, err := os.Open(path)
	if err != nil {
		_, err = w.Write(n[:]) // none: length 0
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	size := min(st.Size(), maxConsole)
	if _, err := f.Seek(st.Size()-size, io.SeekStart); err != nil {
		return err
	}
	binary.BigEndian.PutUint64(n[:], uint64(size))
	if _, err := w.Write(n[:]); err != nil {
		return err
	}
	_, err = io.CopyN(w, f, size)
	return err
}

// ReceiveCold implements driver.Migrator. The disk may not be larger than
// the flavor's, nor any extent reach past it; on any error nothing of the
// container is left.
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
	br := bufio.NewReaderSize(r, 1<<20)
	line, err := br.ReadString('\n')
	if err != nil || line != migrationHeader {
		return fmt.Errorf("migration stream: not a container's (%v)", err)
	}
	hl, err := br.ReadSlice('\n')
	if err != nil {
		return fmt.Errorf("migration stream: %w", err)
	}
	var head migrationHead
	if err := json.Unmarshal(hl, &head); err != nil {
		return fmt.Errorf("migration stream: %w", err)
	}
	limit := max(s.Size.DiskGiB, MinDiskGiB) << 30
	if head.DiskSize <= 0 || head.DiskSize > limit {
		return fmt.Errorf("migration stream: a disk of %d bytes; the flavor allows %d", head.DiskSize, limit)
	}
	if err := d.unmountAll(s.ID); err != nil {
		return err
	}
	tmp := d.diskImage(s.ID) + ".part"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	err = driver.ReceiveExtents(ctx, br, f, head.DiskSize)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, d.diskImage(s.ID))
	}
	if err != nil {
		os.Remove(tmp)
		return err
	}
	if err := receiveConsole(br, filepath.Join(d.dir(s.ID), "console.log")); err != nil {
		return err
	}
	m, err := d.readMeta(s.ID)
	if err != nil {
		return err
	}
	m.Saved = head.Saved
	return d.writeMeta(s.ID, m)
}

func receiveConsole(r io.Reader, path string) error {
	var hdr [8]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return fmt.Errorf("migration stream: %w", err)
	}
	n := binary.BigEndian.Uint64(hdr[:])
	if n > maxConsole {
		return fmt.Errorf("migration stream: a console log of %d bytes", n)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	_, err = io.CopyN(f, r, int64(n))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}
