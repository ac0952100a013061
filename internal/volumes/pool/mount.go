package pool

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"

	"golang.org/x/sys/unix"
)

// A filesystem volume reaches a container as a directory of the host: its
// ext4 image loop-mounted there (so its size is enforced by the
// filesystem), then bind-mounted into the container by the container
// driver. mount(8) sets up the loop device with autoclear: unmounting
// frees it, so no loop device outlives its mount.

// MountFS mounts an ext4 volume file on dir (made if missing): nosuid,
// nodev. Mounted already is fine.
func MountFS(file, dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	if IsMount(dir) {
		return nil
	}
	out, err := exec.Command("mount", "-t", "ext4", "-o", "loop,nosuid,nodev", file, dir).CombinedOutput()
	if err != nil {
		return fmt.Errorf("mount %s: %v: %s", file, err, strings.TrimSpace(string(out)))
	}
	return nil
}

// UnmountFS unmounts dir (lazily when busy, so the loop device goes once
// its last user does) and removes it.
func UnmountFS(dir string) error {
	if IsMount(dir) {
		if err := unix.Unmount(dir, 0); err != nil {
			if err := unix.Unmount(dir, unix.MNT_DETACH); err != nil {
				return fmt.Errorf("unmount %s: %w", dir, err)
			}
		}
	}
	if err := os.Remove(dir); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

// IsMount says whether dir is a mount point.
func IsMount(dir string) bool {
	var st, parent unix.Stat_t
	if unix.Lstat(dir, &st) != nil || unix.Lstat(dir+"/..", &parent) != nil {
		return false
	}
	return st.Dev != parent.Dev
}

// LoopOf is the loop device backing file ("" when none).
func LoopOf(file string) (string, error) {
	out, err := exec.Command("losetup", "-n", "-O", "NAME", "-j", file).Output()
	if err != nil {
		return "", err
	}
	f := strings.Fields(string(out))
	if len(f) == 0 {
		return "", nil
	}
	return f[0], nil
}
