package container

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"runtime"
	"slices"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/kumocloud/kumo/internal/driver"
	"github.com/kumocloud/kumo/internal/driver/local"
)

// Persistent volumes in a container: the agent mounts a volume's
// filesystem on the host (Volume.Source), and the container sees it at
// Volume.Target - a bind mount in its bundle at every start (runc
// resolves the target inside the rootfs), and, while it runs, a mount
// moved into its mount namespace at once: the host mount is cloned
// (open_tree), the thread enters the container's mount namespace (its
// root is then the container's root), opens the target there following
// no symlink (made if missing) and moves the clone onto it (move_mount).
// Detaching unmounts it there the same way.

var _ driver.VolumeAttacher = (*Driver)(nil)

// volumeMounts are the bundle's mounts of the volumes.
func volumeMounts(vs []driver.Volume) []specs.Mount {
	var out []specs.Mount
	for _, v := range vs {
		out = append(out, specs.Mount{Destination: v.Target, Type: "bind", Source: v.Source, Options: []string{"rbind", "nosuid", "nodev", "rw"}})
	}
	return out
}

// withVolumes takes the volumes a start is given into the record and the
// bundle.
func (d *Driver) withVolumes(m meta, s driver.Spec) (meta, error) {
	if slices.Equal(m.Spec.Volumes, s.Volumes) {
		return m, nil
	}
	m.Spec.Volumes = s.Volumes
	if err := d.writeBundle(m.Spec); err != nil {
		return m, err
	}
	return m, d.writeMeta(m.Spec.ID, m)
}

// initPID is a running container's init process, as runc says.
func (d *Driver) initPID(ctx context.Context, id string) (int, string) {
	out, err := d.runcCmd(ctx, "state", id)
	if err != nil {
		return 0, ""
	}
	var st struct {
		Status string `json:"status"`
		PID    int    `json:"pid"`
	}
	json.Unmarshal(out, &st)
	return st.PID, st.Status
}

// changeVolumes updates the record and bundle, and runs live on a running
// container.
func (d *Driver) changeVolumes(ctx context.Context, id string, change func([]driver.Volume) []driver.Volume, live func(pid int) error) error {
	m, err := d.readMeta(id)
	if err != nil {
		return err
	}
	if pid, status := d.initPID(ctx, id); pid > 0 && (status == "running" || status == "paused") {
		if err := live(pid); err != nil {
			return err
		}
	}
	m.Spec.Volumes = change(slices.Clone(m.Spec.Volumes))
	if err := d.writeBundle(m.Spec); err != nil {
		return err
	}
	return d.writeMeta(id, m)
}

// AttachVolume implements driver.VolumeAttacher.
func (d *Driver) AttachVolume(ctx context.Context, id string, v driver.Volume) error {
	return d.changeVolumes(ctx, id, func(vs []driver.Volume) []driver.Volume {
		vs = slices.DeleteFunc(vs, func(x driver.Volume) bool { return x.ID == v.ID })
		return append(vs, v)
	}, func(pid int) error {
		return inMountNS(pid, v.Source, func(tree int) error {
			root, err := local.OpenRoot("/")
			if err != nil {
				return err
			}
			defer root.Close()
			rel := strings.TrimPrefix(v.Target, "/")
			if err := root.Mkdir(rel, 0o755); err != nil {
				return err
			}
			fd, err := root.OpenDir(rel)
			if err != nil {
				return err
			}
			defer unix.Close(fd)
			if mounted(fd) {
				return nil
			}
			return unix.MoveMount(tree, "", fd, "", unix.MOVE_MOUNT_F_EMPTY_PATH|unix.MOVE_MOUNT_T_EMPTY_PATH)
		})
	})
}

// DetachVolume implements driver.VolumeAttacher.
func (d *Driver) DetachVolume(ctx context.Context, id string, v driver.Volume) error {
	return d.changeVolumes(ctx, id, func(vs []driver.Volume) []driver.Volume {
		return slices.DeleteFunc(vs, func(x driver.Volume) bool { return x.ID == v.ID })
	}, func(pid int) error {
		return inMountNS(pid, "", func(int) error {
			root, err := local.OpenRoot("/")
			if err != nil {
				return err
			}
			defer root.Close()
			fd, err := root.OpenDir(strings.TrimPrefix(v.Target, "/"))
			if err != nil {
				return nil // nothing there
			}
			defer unix.Close(fd)
			if !mounted(fd) {
				return nil
			}
			// By its path (this thread's /proc is not the container's): the
			// root is the container's, so no link leads out of it, and the
			// last name is not followed.
			return unix.Unmount(v.Target, unix.MNT_DETACH|unix.UMOUNT_NOFOLLOW)
		})
	})
}

// mounted says whether the directory fd is a mount point.
func mounted(fd int) bool {
	var st, parent unix.Stat_t
	if unix.Fstat(fd, &st) != nil || unix.Fstatat(fd, "..", &parent, 0) != nil {
		return false
	}
	return st.Dev != parent.Dev
}

// inMountNS runs fn on a thread of its own in the mount namespace of pid,
// with a clone of the host's mount at source (when given). The thread is
// never given back: it dies with its goroutine.
func inMountNS(pid int, source string, fn func(tree int) error) error {
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread is left in the namespace
		tree := -1
		if source != "" {
			var err error
			if tree, err = unix.OpenTree(unix.AT_FDCWD, source, unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC|unix.AT_RECURSIVE); err != nil {
				done <- fmt.Errorf("open_tree %s: %w", source, err)
				return
			}
			defer unix.Close(tree)
		}
		ns, err := os.Open(fmt.Sprintf("/proc/%d/ns/mnt", pid))
		if err != nil {
			done <- err
			return
		}
		defer ns.Close()
		if err := unix.Unshare(unix.CLONE_FS); err != nil {
			done <- fmt.Errorf("unshare: %w", err)
			return
		}
		if err := unix.Setns(int(ns.Fd()), unix.CLONE_NEWNS); err != nil {
			done <- fmt.Errorf("setns: %w", err)
			return
		}
		done <- fn(tree)
	}()
	return <-done
}
