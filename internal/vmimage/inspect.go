package vmimage

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"slices"
	"strings"
)

// DiskInfo is what kumo and qemu-img say of a checked disk image.
type DiskInfo struct {
	Format      string `json:"format"`
	VirtualSize int64  `json:"virtual-size"`
	ActualSize  int64  `json:"actual-size"`
}

// Node is the QEMU block node of a disk file with every driver named: the
// format driver (QEMU never probes the format) over the "file" protocol
// driver (the path is only a path, never a protocol or json: spec), and
// for qcow2 "backing": null, so a backing file named in a header is never
// opened. QEMU (-blockdev), qemu-img info and convert (json:) all open
// disks through it; callers add node names, read-only and backings.
func Node(path, format string) map[string]any {
	n := map[string]any{"driver": format, "file": map[string]any{"driver": "file", "filename": path}}
	if format == FormatQcow2 {
		n["backing"] = nil
	}
	return n
}

// JSONFilename is a node as a qemu-img "json:" filename.
func JSONFilename(node map[string]any) string {
	b, _ := json.Marshal(node)
	return "json:" + string(b)
}

// InspectDisk checks a disk image that claims format (qcow2 or raw): its
// bytes must be that format as Sniff reads them (a "raw" disk that looks
// like qcow2 or any other format QEMU knows is refused, so nothing that
// probes could ever read it as one), and it may name no other file. A
// qcow2 header is read by kumo first (backing file, external data file,
// encryption, unknown features: refused) so that qemu-img never opens an
// image that names another file; qemu-img info then runs on Node (format
// and protocol explicit, no backing, -U: it takes no lock and needs none,
// since it only reads) and everything it reports is checked against what
// kumo knows, failing closed on anything else.
func InspectDisk(ctx context.Context, path, format string) (DiskInfo, error) {
	var info DiskInfo
	if format != FormatQcow2 && format != FormatRaw {
		return info, fmt.Errorf("the disk is %s; kumo takes qcow2 or raw", format)
	}
	got, err := SniffFile(path)
	if err != nil {
		return info, err
	}
	if got != format {
		return info, fmt.Errorf("the disk is %s, not %s as the image says", got, format)
	}
	if format == FormatQcow2 {
		f, err := os.Open(path)
		if err != nil {
			return info, err
		}
		err = checkQcow2Header(f)
		f.Close()
		if err != nil {
			return info, err
		}
	}
	out, err := exec.CommandContext(ctx, "qemu-img", "info", "-U", "--output=json", JSONFilename(Node(path, format))).Output()
	if err != nil {
		msg := err.Error()
		if ee, ok := err.(*exec.ExitError); ok {
			msg = strings.TrimSpace(string(ee.Stderr))
		}
		return info, fmt.Errorf("qemu-img info: %s", msg)
	}
	d := json.NewDecoder(bytes.NewReader(out))
	d.UseNumber()
	var m map[string]any
	if err := d.Decode(&m); err != nil {
		return info, fmt.Errorf("qemu-img info: %w", err)
	}
	if info, err = checkInfo(m, path, format); err != nil {
		return info, err
	}
	if info.VirtualSize <= 0 {
		return info, fmt.Errorf("the disk has no size")
	}
	return info, nil
}

// refusedKeys are what qemu-img info says of references to other files.
var refusedKeys = map[string]string{
	"backing-filename":        "a backing file",
	"full-backing-filename":   "a backing file",
	"backing-filename-format": "a backing file",
	"backing-image":           "a backing file",
	"data-file":               "an external data file",
	"data-file-raw":           "an external data file",
	"encrypt":                 "encryption",
}

// checkInfo reads qemu-img info's JSON with an allow-list: every key kumo
// knows to name nothing outside the file, the filename and format being
// the ones asked for; a key it does not know is refused, since a newer
// QEMU's new field could be a new kind of reference.
func checkInfo(m map[string]any, path, format string) (DiskInfo, error) {
	var info DiskInfo
	for k, v := range m {
		if why, ok := refusedKeys[k]; ok {
			return info, fmt.Errorf("the disk has %s (qemu-img reports %s): upload a standalone disk (qemu-img convert -O qcow2)", why, k)
		}
		switch k {
		case "filename":
			if v != path {
				return info, fmt.Errorf("qemu-img info names file %v, not the disk itself", v)
			}
		case "format":
			if v != format {
				return info, fmt.Errorf("qemu-img opened the disk as %v, not %s", v, format)
			}
			info.Format = format
		case "virtual-size", "actual-size", "cluster-size":
			n, ok := v.(json.Number)
			i, err := n.Int64()
			if !ok || err != nil {
				return info, fmt.Errorf("qemu-img info: %s is %v", k, v)
			}
			switch k {
			case "virtual-size":
				info.VirtualSize = i
			case "actual-size":
				info.ActualSize = i
			}
		case "dirty-flag":
		case "encrypted":
			if v != false {
				return info, fmt.Errorf("the disk is encrypted")
			}
		case "snapshots":
			// Internal snapshots live inside the file.
			if err := scalarsOnly(k, v); err != nil {
				return info, err
			}
		case "format-specific":
			if err := checkFormatSpecific(v, format); err != nil {
				return info, err
			}
		case "children":
			// QEMU 8 lists the nodes under the format: only the file itself.
			cs, _ := v.([]any)
			for _, c := range cs {
				c, _ := c.(map[string]any)
				ci, _ := c["info"].(map[string]any)
				if c["name"] != "file" || ci == nil {
					return info, fmt.Errorf("the disk opens another node (%v): refused", c["name"])
				}
				if _, err := checkInfo(ci, path, "file"); err != nil {
					return info, err
				}
			}
		default:
			return info, fmt.Errorf("qemu-img info reports %q, which kumo does not know: refused rather than risk a reference to another file", k)
		}
	}
	return info, nil
}

// formatData are the keys of qemu-img's format-specific data kumo knows
// name no other file.
var formatData = map[string][]string{
	FormatQcow2: {"compat", "compression-type", "lazy-refcounts", "refcount-bits", "corrupt", "extended-l2", "bitmaps"},
	"file":      {"extent-size-hint"},
	FormatRaw:   {},
}

func checkFormatSpecific(v any, format string) error {
	fs, _ := v.(map[string]any)
	if fs == nil || fs["type"] != format {
		return fmt.Errorf("qemu-img info: format-specific data of type %v, not %s", fs["type"], format)
	}
	data, _ := fs["data"].(map[string]any)
	for k, dv := range data {
		if why, ok := refusedKeys[k]; ok {
			return fmt.Errorf("the disk has %s (qemu-img reports %s): upload a standalone disk (qemu-img convert -O qcow2)", why, k)
		}
		if !slices.Contains(formatData[format], k) {
			return fmt.Errorf("qemu-img info reports %s %q, which kumo does not know: refused rather than risk a reference to another file", format, k)
		}
		if k == "corrupt" && dv != false {
			return fmt.Errorf("the disk is marked corrupt (qemu-img check -r all)")
		}
		if err := scalarsOnly(k, dv); err != nil {
			return err
		}
	}
	for k := range fs {
		if k != "type" && k != "data" {
			return fmt.Errorf("qemu-img info reports format-specific %q, which kumo does not know", k)
		}
	}
	return nil
}

// scalarsOnly refuses anything under v that could be a nested node: lists
// and objects of plain values only, and no key naming a file.
func scalarsOnly(k string, v any) error {
	switch v := v.(type) {
	case []any:
		for _, e := range v {
			if err := scalarsOnly(k, e); err != nil {
				return err
			}
		}
	case map[string]any:
		for ek, e := range v {
			if _, bad := refusedKeys[ek]; bad || strings.Contains(ek, "file") || strings.Contains(ek, "backing") {
				return fmt.Errorf("qemu-img info reports %s.%s: refused", k, ek)
			}
			if _, nested := e.(map[string]any); nested {
				return fmt.Errorf("qemu-img info reports a nested %s.%s: refused", k, ek)
			}
			if err := scalarsOnly(k+"."+ek, e); err != nil {
				return err
			}
		}
	}
	return nil
}

// ErrTooLarge is an image that unpacks to more than it may.
var ErrTooLarge = errors.New("the image unpacks to more bytes than allowed")

// Budget counts the bytes an image unpacks to against a limit (< 0: none),
// so a small compressed upload cannot expand without bound.
type Budget struct {
	Used, Limit int64
}

// Copy copies r to w, counting; it stops reading once past the limit.
func (b *Budget) Copy(w io.Writer, r io.Reader) error {
	src := r
	if b.Limit >= 0 {
		src = io.LimitReader(r, b.Limit-b.Used+1)
	}
	n, err := io.Copy(w, src)
	b.Used += n
	if err != nil {
		return err
	}
	if b.Limit >= 0 && b.Used > b.Limit {
		return fmt.Errorf("%w (more than %d bytes)", ErrTooLarge, b.Limit)
	}
	return nil
}

// Unpacked is what a checked image becomes on a host.
type Unpacked struct {
	// Bytes is the sum of its regular files as read (for a disk, the file).
	Bytes int64
	// VirtualSize is its disk's virtual size (0: it has none).
	VirtualSize int64
	// Disk is what InspectDisk said of its disk (a vm-kernel image's).
	Disk DiskInfo
}

// CheckKernelImage checks a vm-kernel tarball: only the known members
// (vmlinuz, initrd, cmdline, disk.qcow2), regular files, a vmlinuz, and a
// disk.qcow2 that InspectDisk accepts (unpacked to tmpDir to be read). The
// archive is read to its end (gzip's checksum included) and its members'
// bytes are counted against limit (< 0: none): ErrTooLarge beyond.
func CheckKernelImage(ctx context.Context, r io.Reader, tmpDir string, limit int64) (Unpacked, error) {
	u, _, err := checkKernelImage(ctx, r, tmpDir, limit, false)
	return u, err
}

// KernelImageDisk checks a vm-kernel tarball as CheckKernelImage does
// and keeps its disk.qcow2 (checked: it names no other file) in a new
// file of tmpDir, whose name it returns, with what the check said of it
// (the caller removes it). A tarball without a disk is refused.
func KernelImageDisk(ctx context.Context, r io.Reader, tmpDir string, limit int64) (string, DiskInfo, error) {
	u, disk, err := checkKernelImage(ctx, r, tmpDir, limit, true)
	if err == nil && disk == "" {
		err = errors.New("the vm-kernel image has no disk.qcow2")
	}
	if err != nil {
		if disk != "" {
			os.Remove(disk)
		}
		return "", DiskInfo{}, err
	}
	return disk, u.Disk, nil
}

// checkKernelImage is CheckKernelImage, keeping the disk's file (whose
// name it returns) when asked.
func checkKernelImage(ctx context.Context, r io.Reader, tmpDir string, limit int64, keep bool) (u Unpacked, disk string, err error) {
	zr, err := gzip.NewReader(r)
	if err != nil {
		return u, "", fmt.Errorf("not a gzipped tarball: %w", err)
	}
	tr := tar.NewReader(zr)
	seen := map[string]bool{}
	budget := Budget{Limit: limit}
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return u, disk, fmt.Errorf("broken tarball: %w", err)
		}
		name := strings.TrimPrefix(h.Name, "./")
		if h.Typeflag == tar.TypeDir && (name == "" || name == ".") {
			continue
		}
		if !slices.Contains(KernelImageFiles, name) || h.Typeflag != tar.TypeReg {
			return u, disk, fmt.Errorf("entry %q: a vm-kernel image holds only regular files named %s", h.Name, strings.Join(KernelImageFiles, ", "))
		}
		if seen[name] {
			return u, disk, fmt.Errorf("entry %q appears twice", name)
		}
		seen[name] = true
		if name == "disk.qcow2" {
			info, kept, err := checkMember(ctx, tr, tmpDir, &budget, keep)
			disk = kept
			if err != nil {
				return u, disk, err
			}
			u.VirtualSize, u.Disk = info.VirtualSize, info
		} else if err := budget.Copy(io.Discard, tr); err != nil {
			return u, disk, fmt.Errorf("entry %q: %w", name, err)
		}
	}
	if !seen["vmlinuz"] {
		return u, disk, errors.New("a vm-kernel image needs a vmlinuz")
	}
	// Read to the very end, so gzip checks its length and checksum.
	if _, err := io.Copy(io.Discard, zr); err != nil {
		return u, disk, fmt.Errorf("broken tarball: %w", err)
	}
	u.Bytes = budget.Used
	return u, disk, nil
}

// checkMember copies a tarball's disk.qcow2 into a file of tmpDir and
// inspects it; the file is removed unless keep (its name is then
// returned, also when the check failed).
func checkMember(ctx context.Context, r io.Reader, tmpDir string, budget *Budget, keep bool) (DiskInfo, string, error) {
	f, err := os.CreateTemp(tmpDir, "disk-*")
	if err != nil {
		return DiskInfo{}, "", err
	}
	kept := f.Name()
	if !keep {
		kept = ""
		defer os.Remove(f.Name())
	}
	defer f.Close()
	if err := budget.Copy(f, r); err != nil {
		if errors.Is(err, ErrTooLarge) {
			return DiskInfo{}, kept, fmt.Errorf("disk.qcow2: %w", err)
		}
		return DiskInfo{}, kept, fmt.Errorf("broken tarball: %w", err)
	}
	if err := f.Close(); err != nil {
		return DiskInfo{}, kept, err
	}
	info, err := InspectDisk(ctx, f.Name(), FormatQcow2)
	if err != nil {
		return info, kept, fmt.Errorf("disk.qcow2: %w", err)
	}
	return info, kept, nil
}
