package images

import (
	"archive/tar"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"path"
	"strings"

	"github.com/kumocloud/kumo/internal/errs"
	"github.com/kumocloud/kumo/internal/vmimage"
)

// CheckRootfs reads a container rootfs tarball and refuses anything that
// could reach outside the root when unpacked on a host: absolute paths or
// ".." in names, links whose target climbs out of the root, hard links to
// files outside it, and device nodes. It reads the whole archive, so a
// truncated or corrupt one is refused too, and returns the bytes its
// entries unpack to as read (holes of sparse files included), refusing
// with vmimage.ErrTooLarge past limit (< 0: none).
func CheckRootfs(r io.Reader, gzipped bool, limit int64) (int64, error) {
	if gzipped {
		zr, err := gzip.NewReader(r)
		if err != nil {
			return 0, errs.Invalid("body", "not a gzip file: %v", err)
		}
		defer zr.Close()
		r = zr
	}
	tr := tar.NewReader(r)
	// r stays the (decompressed) stream so the end can be checked.
	n := 0
	budget := vmimage.Budget{Limit: limit}
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return budget.Used, errs.Invalid("body", "not a valid tar archive (truncated or corrupt?): %v", err)
		}
		n++
		if err := checkEntry(h); err != nil {
			return budget.Used, errs.Invalid("body", "rootfs entry %q: %v", h.Name, err)
		}
		if err := budget.Copy(io.Discard, tr); errors.Is(err, vmimage.ErrTooLarge) {
			return budget.Used, err
		} else if err != nil {
			return budget.Used, errs.Invalid("body", "rootfs entry %q is truncated: %v", h.Name, err)
		}
	}
	if n == 0 {
		return 0, errs.Invalid("body", "the tar archive is empty")
	}
	// Read to the very end, so gzip checks its length and CRC trailer.
	if _, err := io.Copy(io.Discard, r); err != nil {
		return budget.Used, errs.Invalid("body", "the archive is truncated or corrupt: %v", err)
	}
	return budget.Used, nil
}

// escapes says whether p, relative to dir inside the root, leaves it.
func escapes(dir, p string) bool {
	depth := 0
	for _, part := range strings.Split(dir+"/"+p, "/") {
		switch part {
		case "", ".":
		case "..":
			depth--
			if depth < 0 {
				return true
			}
		default:
			depth++
		}
	}
	return false
}

func checkEntry(h *tar.Header) error {
	name := strings.TrimPrefix(h.Name, "./")
	if strings.HasPrefix(name, "/") {
		return fmt.Errorf("absolute path")
	}
	if escapes("", name) || strings.Contains("/"+name+"/", "/../") {
		return fmt.Errorf("path climbs out of the rootfs with ..")
	}
	switch h.Typeflag {
	case tar.TypeChar, tar.TypeBlock:
		return fmt.Errorf("device nodes are not allowed in an image (the runtime makes /dev)")
	case tar.TypeSymlink:
		t := h.Linkname
		if strings.HasPrefix(t, "/") {
			// Absolute targets are resolved inside the container's root;
			// one that climbs with .. is an attack on whoever unpacks it.
			if strings.Contains(t+"/", "/../") {
				return fmt.Errorf("symlink to %q climbs out of the rootfs", t)
			}
			return nil
		}
		if escapes(path.Dir(name), t) {
			return fmt.Errorf("symlink to %q points out of the rootfs", t)
		}
	case tar.TypeLink:
		t := strings.TrimPrefix(h.Linkname, "./")
		if strings.HasPrefix(t, "/") || escapes("", t) {
			return fmt.Errorf("hard link to %q points out of the rootfs", h.Linkname)
		}
	}
	return nil
}
