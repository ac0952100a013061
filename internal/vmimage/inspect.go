package vmimage

import (
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
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
