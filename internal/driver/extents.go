package driver

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"

	"golang.org/x/sys/unix"
)

// A sparse file travels by its data extents only (SEEK_DATA/SEEK_HOLE):
// a 10 GiB disk holding 5 MiB sends 5 MiB. The stream is a run of
// extents - offset and length (big-endian uint64s), then the bytes -
// ended by a zero length. Container disks (cold migration) and local
// volumes (cold migration with their instance) travel so.

// maxExtent bounds one extent of the stream.
const maxExtent = 8 << 20

// SendExtents writes the data extents of f's first size bytes to w.
func SendExtents(ctx context.Context, f *os.File, size int64, w io.Writer) error {
	var hdr [16]byte
	for off := int64(0); off < size; {
		data, err := unix.Seek(int(f.Fd()), off, unix.SEEK_DATA)
		if errors.Is(err, unix.ENXIO) {
			break // only a hole is left
		}
		if err != nil {
			return err
		}
		hole, err := unix.Seek(int(f.Fd()), data, unix.SEEK_HOLE)
		if err != nil {
			return err
		}
		hole = min(hole, size)
		for data < hole {
			if err := ctx.Err(); err != nil {
				return err
			}
			n := min(hole-data, maxExtent)
			binary.BigEndian.PutUint64(hdr[:8], uint64(data))
			binary.BigEndian.PutUint64(hdr[8:], uint64(n))
			if _, err := w.Write(hdr[:]); err != nil {
				return err
			}
			if _, err := io.Copy(w, io.NewSectionReader(f, data, n)); err != nil {
				return err
			}
			data += n
		}
		off = hole
	}
	binary.BigEndian.PutUint64(hdr[:8], 0)
	binary.BigEndian.PutUint64(hdr[8:], 0)
	_, err := w.Write(hdr[:])
	return err
}

// ReceiveExtents writes what SendExtents sent into f, made size bytes
// long (holes stay holes). An extent reaching past size is refused: the
// sender's word on where bytes go is never trusted. It reads exactly the
// stream's bytes from r, nothing after them.
func ReceiveExtents(ctx context.Context, r io.Reader, f *os.File, size int64) error {
	if err := f.Truncate(size); err != nil {
		return err
	}
	var hdr [16]byte
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			return fmt.Errorf("migration stream: %w", err)
		}
		off, n := binary.BigEndian.Uint64(hdr[:8]), binary.BigEndian.Uint64(hdr[8:])
		if n == 0 {
			return nil
		}
		if n > maxExtent || off > uint64(size) || off+n > uint64(size) {
			return fmt.Errorf("migration stream: an extent at %d of %d bytes is outside the %d-byte file", off, n, size)
		}
		if _, err := io.Copy(io.NewOffsetWriter(f, int64(off)), io.LimitReader(r, int64(n))); err != nil {
			return fmt.Errorf("migration stream: %w", err)
		}
	}
}
