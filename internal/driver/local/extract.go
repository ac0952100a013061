package local

import (
	"archive/tar"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"path"
	"strings"
)

// DefaultMaxUnpacked bounds what one image may unpack to in a host's image
// cache when the agent is not told otherwise (the container and qemu drivers' MaxUnpacked,
// 'kumo agent --image-max-unpacked'): 8 GiB holds any container rootfs
// or vm-kernel bundle kumo builds many times over, and a gzip bomb (a few
// MiB that inflate a thousandfold) stops there instead of filling the
// disk instances run from.
const DefaultMaxUnpacked = 8 << 30

// headerCost is what each archive entry counts against the limit besides
// its bytes: a tar header block, so a bomb of millions of empty files is
// bounded too.
const headerCost = 512

// Extract unpacks a tarball (a container rootfs, a vm-kernel bundle) into
// dir, never touching anything outside it: names with .. or absolute paths
// are refused, no entry is written through a symlink (the parents and the
// entry itself are resolved with no link followed: an existing link at an
// entry's name is replaced, never written through or chmodded), and hard
// links join only files inside dir. Once the entries' sizes (and a header
// each) pass max bytes (DefaultMaxUnpacked when max <= 0) it stops with an
// error, before writing the entry that would pass it.
func Extract(r io.Reader, gzipped bool, dir string, max int64) error {
	if max <= 0 {
		max = DefaultMaxUnpacked
	}
	if gzipped {
		zr, err := gzip.NewReader(r)
		if err != nil {
			return err
		}
		defer zr.Close()
		r = zr
	}
	root, err := OpenRoot(dir)
	if err != nil {
		return err
	}
	defer root.Close()
	tr := tar.NewReader(r)
	var total int64
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		name, err := entryName(h.Name)
		if err != nil {
			return err
		}
		if name == "" {
			continue
		}
		// A sparse entry's size is what it unpacks to, not what it carries.
		size := int64(0)
		if h.Typeflag == tar.TypeReg || h.Typeflag == tar.TypeGNUSparse {
			size = h.Size
		}
		if size < 0 || total+headerCost+size > max {
			return fmt.Errorf("the archive unpacks to more than %s (entry %q); the limit is the agent's --image-max-unpacked", gib(max), h.Name)
		}
		total += headerCost + size
		mode := uint32(h.Mode & 0o7777)
		switch h.Typeflag {
		case tar.TypeDir:
			err = root.Mkdir(name, mode)
		case tar.TypeReg, tar.TypeGNUSparse:
			var n int64
			n, err = root.Create(name, tr, mode)
			if err == nil && n != h.Size {
				err = fmt.Errorf("entry %q is truncated", h.Name)
			}
		case tar.TypeSymlink:
			err = root.Symlink(name, h.Linkname)
		case tar.TypeLink:
			var src string
			if src, err = entryName(h.Linkname); err == nil {
				err = root.Link(name, src)
			}
		default:
			// Device nodes, fifos: the runtime provides /dev.
		}
		if err != nil {
			return fmt.Errorf("unpacking %q: %w", h.Name, err)
		}
	}
}

// entryName cleans an archive name into a path relative to the root ("" for
// the root itself), refusing one that leaves it.
func entryName(name string) (string, error) {
	clean := path.Clean(strings.TrimPrefix(name, "./"))
	if path.IsAbs(clean) || clean == ".." || strings.HasPrefix(clean, "../") {
		return "", fmt.Errorf("entry %q leaves the root", name)
	}
	if clean == "." {
		return "", nil
	}
	return clean, nil
}

// gib writes a byte count in GiB (or MiB when under one).
func gib(n int64) string {
	if n < 1<<30 {
		return fmt.Sprintf("%d MiB", n>>20)
	}
	return fmt.Sprintf("%.4g GiB", float64(n)/(1<<30))
}
