package vmimage

import (
	"archive/tar"
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

// DiskInfo is what qemu-img says of a disk image.
type DiskInfo struct {
	Format      string `json:"format"`
	VirtualSize int64  `json:"virtual-size"`
	ActualSize  int64  `json:"actual-size"`
	Backing     string `json:"backing-filename"`
	Encrypted   bool   `json:"encrypted"`
}

// InspectDisk checks a disk image with qemu-img info: its format must be
// qcow2 or raw (and want, when given), and it must have no backing file
// (a backing file could point anywhere on the host) and no encryption.
func InspectDisk(ctx context.Context, path, want string) (DiskInfo, error) {
	var info DiskInfo
	out, err := exec.CommandContext(ctx, "qemu-img", "info", "--output=json", path).Output()
	if err != nil {
		msg := err.Error()
		if ee, ok := err.(*exec.ExitError); ok {
			msg = strings.TrimSpace(string(ee.Stderr))
		}
		return info, fmt.Errorf("qemu-img info: %s", msg)
	}
	if err := json.Unmarshal(out, &info); err != nil {
		return info, fmt.Errorf("qemu-img info: %w", err)
	}
	switch {
	case info.Format != "qcow2" && info.Format != "raw":
		return info, fmt.Errorf("the disk is %s; kumo takes qcow2 or raw", info.Format)
	case want != "" && info.Format != want:
		return info, fmt.Errorf("the disk is %s, not %s as the image says", info.Format, want)
	case info.Backing != "":
		return info, fmt.Errorf("the disk has a backing file (%s): upload a standalone disk (qemu-img convert -O qcow2)", info.Backing)
	case info.Encrypted:
		return info, fmt.Errorf("the disk is encrypted")
	case info.VirtualSize <= 0:
		return info, fmt.Errorf("the disk has no size")
	}
	return info, nil
}

// CheckKernelImage checks a vm-kernel tarball: only the known members
// (vmlinuz, initrd, cmdline, disk.qcow2), regular files, a vmlinuz, and a
// disk.qcow2 that InspectDisk accepts (unpacked to tmpDir to be read).
func CheckKernelImage(ctx context.Context, r io.Reader, tmpDir string) error {
	zr, err := gzip.NewReader(r)
	if err != nil {
		return fmt.Errorf("not a gzipped tarball: %w", err)
	}
	tr := tar.NewReader(zr)
	seen := map[string]bool{}
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("broken tarball: %w", err)
		}
		name := strings.TrimPrefix(h.Name, "./")
		if h.Typeflag == tar.TypeDir && (name == "" || name == ".") {
			continue
		}
		if !slices.Contains(KernelImageFiles, name) || h.Typeflag != tar.TypeReg {
			return fmt.Errorf("entry %q: a vm-kernel image holds only regular files named %s", h.Name, strings.Join(KernelImageFiles, ", "))
		}
		if seen[name] {
			return fmt.Errorf("entry %q appears twice", name)
		}
		seen[name] = true
		if name == "disk.qcow2" {
			if err := checkMember(ctx, tr, tmpDir); err != nil {
				return err
			}
		}
	}
	if !seen["vmlinuz"] {
		return errors.New("a vm-kernel image needs a vmlinuz")
	}
	return nil
}

func checkMember(ctx context.Context, r io.Reader, tmpDir string) error {
	f, err := os.CreateTemp(tmpDir, "disk-*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	defer f.Close()
	if _, err := io.Copy(f, r); err != nil {
		return fmt.Errorf("broken tarball: %w", err)
	}
	if _, err := InspectDisk(ctx, f.Name(), "qcow2"); err != nil {
		return fmt.Errorf("disk.qcow2: %w", err)
	}
	return nil
}
