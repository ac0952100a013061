package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kumocloud/kumo/api"
	"github.com/kumocloud/kumo/client"
)

// Boot from volume with real QEMU: a VM whose root disk is a kept root
// volume of 3 GiB (the guest sees that size) writes to it and is
// terminated; the volume stays, detached, and a second VM boots from it
// and reads what the first wrote. A root volume not asked to be kept goes
// with its instance.
func TestBootVolumeVM(t *testing.T) {
	s := startQEMUServer(t)
	root := []string{"KUMO_SOCKET=" + s.socket}
	dir := t.TempDir()
	must(t, root, "", "image", "build", "tiny-vm", "-f", filepath.Join(dir, "tiny-vm.tar.gz"), "--import", "--public")
	// The guest says how big its root disk is and what it starts with,
	// and marks it (raw bytes: the tiny VM runs from its initramfs, so
	// /dev/vda is the volume, untouched by anything else) unless marked.
	ud := filepath.Join(dir, "root.sh")
	os.WriteFile(ud, []byte(`#!/bin/sh
echo "root-size: $(cat /sys/block/vda/size)" >/dev/ttyS0
head=$(head -c 64 /dev/vda | tr -dc 'a-z0-9-')
echo "root-head: $head" >/dev/ttyS0
case "$head" in boot-volume-marker-*) ;; *)
	echo "boot-volume-marker-$(hostname)" | dd of=/dev/vda conv=notrunc,fsync 2>/dev/null
	sync
	echo "root-marked" >/dev/ttyS0 ;;
esac
`), 0o644)
	c := client.Socket(s.socket)
	logsSay := func(name string, want ...string) {
		t.Helper()
		eventually(t, 180*time.Second, name+" says "+strings.Join(want, ", "), func() (bool, string) {
			r := kumo(t, root, "", "instance", "logs", name, "--tail", "300")
			out := r.out
			if r.code != 0 { // no console yet: still in PROLOG
				return false, r.err
			}
			for _, w := range want {
				if !strings.Contains(out, w) {
					return false, out
				}
			}
			return true, ""
		})
	}

	must(t, root, "", "instance", "create", "vm1", "--type", "vm", "--image", "tiny-vm", "--flavor", "tiny",
		"--root-volume-size", "3GiB", "--keep-root-volume", "--user-data", ud, "--wait")
	v := volumeIs(t, c, "vm1-root", "made and attached to vm1", 120*time.Second, func(v api.Volume) bool {
		return v.Attachment != nil && v.Attachment.Instance == "vm1" && v.Attachment.Device == api.BootDevice && v.Attachment.Attached
	})
	if v.SizeGiB != 3 || v.DeleteOnTerminate || v.Host == "" {
		t.Fatalf("vm1-root: %+v", v)
	}
	// 3 GiB in 512-byte sectors: the volume, not the flavor's 1 GiB disk.
	logsSay("vm1", "root-size: 6291456", "root-marked")
	var file string
	filepath.Walk(s.dir, func(p string, fi os.FileInfo, err error) error {
		if err == nil && fi.Name() == v.ID+".qcow2" {
			file = p
		}
		return nil
	})
	if file == "" {
		t.Fatalf("no file of volume %s under %s", v.ID, s.dir)
	}
	must(t, root, "", "instance", "terminate", "vm1", "--wait")
	volumeIs(t, c, "vm1-root", "kept, detached", 120*time.Second, func(v api.Volume) bool {
		return v.Attachment == nil && v.Status == api.VolumeAvailable
	})

	// A second VM boots from it (the image comes with the volume) and
	// reads what the first wrote; a third, with a root volume it does not
	// keep, boots meanwhile.
	must(t, root, "", "instance", "create", "vm2", "--type", "vm", "--boot-volume", "vm1-root", "--flavor", "tiny", "--user-data", ud)
	must(t, root, "", "instance", "create", "vm3", "--type", "vm", "--image", "tiny-vm", "--flavor", "tiny", "--root-volume-size", "1GiB", "--user-data", ud)
	logsSay("vm2", "root-size: 6291456", "root-head: boot-volume-marker-vm1")
	if out := must(t, root, "", "instance", "logs", "vm2", "--tail", "300"); strings.Contains(out, "root-marked") {
		t.Fatalf("vm2 found its root disk unmarked:\n%s", out)
	}
	in, _ := instanceState(t, c, "default", "vm2")
	if in.BootVolume != "vm1-root" || in.Image == "" {
		t.Fatalf("vm2: boot volume %q, image %q", in.BootVolume, in.Image)
	}
	if _, err := c.Volume(context.Background(), "default", "vm1-root"); err != nil {
		t.Fatal(err)
	}
	logsSay("vm3", "root-size: 2097152", "root-marked")
	v3 := volumeIs(t, c, "vm3-root", "attached to vm3", 60*time.Second, func(v api.Volume) bool { return v.Attachment != nil })
	if !v3.DeleteOnTerminate {
		t.Fatalf("vm3-root: %+v", v3)
	}
	must(t, root, "", "instance", "terminate", "vm2", "--wait")
	must(t, root, "", "instance", "terminate", "vm3", "--wait")
	eventually(t, 120*time.Second, "vm3-root deleted with vm3", func() (bool, string) {
		v, err := c.Volume(context.Background(), "default", "vm3-root")
		return client.StatusOf(err) == 404, fmt.Sprintf("%+v %v", v, err)
	})
	volumeIs(t, c, "vm1-root", "kept after vm2", 120*time.Second, func(v api.Volume) bool {
		return v.Attachment == nil && v.Status == api.VolumeAvailable
	})
	must(t, root, "", "volume", "delete", "vm1-root")
	eventually(t, 60*time.Second, "vm1-root's file gone", func() (bool, string) {
		_, err := os.Stat(file)
		return os.IsNotExist(err), fmt.Sprint(err)
	})
}

// startQEMUServer starts a server whose agent runs real QEMU VMs (skipped
// where they cannot run); its VMs are killed when the test ends.
func startQEMUServer(t *testing.T) *server {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("VMs' cgroups need root; CI runs as root")
	}
	if _, err := exec.LookPath("qemu-system-x86_64"); err != nil {
		t.Skip("qemu-system-x86_64 is not installed (make test installs it)")
	}
	s := startServer(t, "--drivers", "qemu")
	t.Cleanup(func() {
		exec.Command("pkill", "-9", "-f", filepath.Join(s.dir, "agent", "qemu")).Run()
		if t.Failed() {
			t.Log(s.out.String())
		}
	})
	return s
}
