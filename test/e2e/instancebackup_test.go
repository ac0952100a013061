package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kumocloud/kumo/api"
	"github.com/kumocloud/kumo/client"
)

// TestInstanceBackupContainer: a container writes random data to its
// volume and to its root filesystem; 'kumo instance backup' keeps its
// definition, the volume and its root filesystem (its writable layer);
// a second backup after a small change stores little (chunks already
// kept are not sent again); the container is terminated and its volume
// deleted; 'kumo instance restore' brings it back under its name, the
// volume restored on its host and mounted where it was before it starts,
// its root filesystem restored: the same sha256 in both.
func TestInstanceBackupContainer(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("runc containers and loop mounts need root; CI runs as root")
	}
	s := startServer(t, "--drivers", "container")
	t.Cleanup(func() {
		if t.Failed() {
			t.Log(s.out.String())
		}
	})
	root := []string{"KUMO_SOCKET=" + s.socket}
	img := filepath.Join(t.TempDir(), "tiny-rootfs.tar.gz")
	must(t, root, "", "image", "build", "tiny-rootfs", "-f", img)
	must(t, root, "", "image", "import", img, "--name", "tiny", "--public")
	must(t, root, "", "instance", "create", "c1", "--type", "container", "--image", "tiny", "--flavor", "tiny", "--label", "app=db", "--wait")
	c := client.Socket(s.socket)
	ctx := context.Background()
	must(t, root, "", "volume", "create", "files", "--size", "1GiB", "--format", "ext4", "--near", "c1")
	volumeIs(t, c, "files", "made", 60*time.Second, func(v api.Volume) bool { return v.Status == api.VolumeAvailable })
	must(t, root, "", "volume", "attach", "files", "c1", "--path", "/data")
	volumeIs(t, c, "files", "attached", 60*time.Second, func(v api.Volume) bool { return v.Attachment != nil && v.Attachment.Attached })
	must(t, root, "", "instance", "exec", "c1", "--", "sh", "-c", "dd if=/dev/urandom of=/data/blob bs=1048576 count=8 2>/dev/null; sync")
	sum := strings.Fields(must(t, root, "", "instance", "exec", "c1", "--", "sha256sum", "/data/blob"))[0]
	must(t, root, "", "instance", "exec", "c1", "--", "sh", "-c", "dd if=/dev/urandom of=/var/rootblob bs=1048576 count=4 2>/dev/null; echo kept >/etc/kumo-marker; rm /etc/hostname; sync")
	rootSum := strings.Fields(must(t, root, "", "instance", "exec", "c1", "--", "sha256sum", "/var/rootblob"))[0]

	must(t, root, "", "instance", "backup", "c1", "nightly", "--wait")
	ib, err := c.InstanceBackup(ctx, "default", "nightly")
	if err != nil || ib.Status != api.VolumeAvailable || len(ib.Volumes) != 1 || ib.Volumes[0].Path != "/data" || ib.EphemeralRoot ||
		ib.RootBackup != "nightly-root" || ib.StoredBytes < 12<<20 {
		t.Fatalf("instance backup: %+v %v", ib, err)
	}
	t.Logf("instance backup of a container with a 1 GiB volume holding 8 MiB of random data and 4 MiB in its root filesystem: %d bytes stored, %d in all", ib.StoredBytes, ib.TotalBytes)
	// A small change: only the chunks it touched are stored.
	must(t, root, "", "instance", "exec", "c1", "--", "sh", "-c", "echo again >/etc/kumo-again; sync")
	must(t, root, "", "instance", "backup", "c1", "again", "--wait")
	again, err := c.InstanceBackup(ctx, "default", "again")
	if err != nil || again.Status != api.VolumeAvailable || again.RootBackup != "again-root" || again.StoredBytes >= 4<<20 {
		t.Fatalf("second instance backup: %+v %v", again, err)
	}
	t.Logf("the second instance backup after a small change: %d bytes stored, %d in all", again.StoredBytes, again.TotalBytes)
	must(t, root, "", "instance", "backup", "delete", "again")
	if out := must(t, root, "", "instance", "backup", "list"); !strings.Contains(out, "nightly") {
		t.Fatalf("backup list: %q", out)
	}

	// Gone: the container and its volume.
	must(t, root, "", "instance", "terminate", "c1", "--wait")
	volumeIs(t, c, "files", "let go", 60*time.Second, func(v api.Volume) bool { return v.Attachment == nil })
	must(t, root, "", "volume", "delete", "files")

	// kill -9 of the server and its agent right after the restore is
	// taken: after the restart it goes on from the store.
	must(t, root, "", "instance", "restore", "nightly")
	s.kill9()
	s.start()
	c = client.Socket(s.socket)
	eventually(t, 120*time.Second, "the restored c1 running", func() (bool, string) {
		in, _ := instanceState(t, c, "default", "c1")
		return in.State == api.StateRunning, fmt.Sprint(in.State, " ", in.Reason)
	})
	in, err := c.Instance(ctx, "default", "c1")
	if err != nil || in.State != api.StateRunning || in.Labels["app"] != "db" {
		t.Fatalf("restored c1: %+v %v", in, err)
	}
	v := volumeIs(t, c, "c1-vol1", "the restored volume attached", 60*time.Second, func(v api.Volume) bool { return v.Attachment != nil && v.Attachment.Attached })
	if v.Host != in.Host || v.Attachment.Path != "/data" {
		t.Fatalf("restored volume: %+v, instance on %s", v, in.Host)
	}
	if got := strings.Fields(must(t, root, "", "instance", "exec", "c1", "--", "sha256sum", "/data/blob"))[0]; got != sum {
		t.Fatalf("restored data: sha256 %s, backed up %s", got, sum)
	}
	if got := strings.Fields(must(t, root, "", "instance", "exec", "c1", "--", "sha256sum", "/var/rootblob"))[0]; got != rootSum {
		t.Fatalf("restored root filesystem: sha256 %s, backed up %s", got, rootSum)
	}
	if got := must(t, root, "", "instance", "exec", "c1", "--", "cat", "/etc/kumo-marker"); strings.TrimSpace(got) != "kept" {
		t.Fatalf("restored /etc/kumo-marker: %q", got)
	}
	must(t, root, "", "instance", "terminate", "c1", "--wait")
	volumeIs(t, c, "c1-vol1", "let go", 60*time.Second, func(v api.Volume) bool { return v.Attachment == nil })
	must(t, root, "", "volume", "delete", "c1-vol1")
	must(t, root, "", "instance", "backup", "delete", "nightly")
	if bs, err := c.VolumeBackups(ctx, "default"); err != nil || len(bs) != 0 {
		t.Fatalf("volume backups left: %+v %v", bs, err)
	}
}

// TestInstanceBackupVM: a VM (QEMU) marks its own root disk (the image's
// copy, not a volume) and a volume hot-plugged into it; 'kumo instance
// backup' sends the root disk (flattened, paused meanwhile) and the volume
// to the backup store as chunks; the
// VM is terminated; 'kumo instance restore' makes a new VM that finds both
// marks at its first boot: its root disk from the copy, and the restored
// volume already there when it boots (PROLOG waits for it; the agent's
// TestPrologWaitsForNewVolumes shows the wait itself).
func TestInstanceBackupVM(t *testing.T) {
	s := startQEMUServer(t)
	root := []string{"KUMO_SOCKET=" + s.socket}
	dir := t.TempDir()
	must(t, root, "", "image", "build", "tiny-vm", "-f", filepath.Join(dir, "tiny-vm.tar.gz"), "--import", "--public")
	// At boot the guest says what each disk starts with and marks its root
	// disk unless marked; it marks a volume (a disk with a serial) when it
	// appears, unless marked.
	ud := filepath.Join(dir, "marks.sh")
	os.WriteFile(ud, []byte(`#!/bin/sh
for b in /sys/block/vd*; do d=${b##*/}; echo "boot-head-$d: $(head -c 40 /dev/$d | tr -dc 'a-z0-9-')" >/dev/ttyS0; done
case "$(head -c 40 /dev/vda | tr -dc 'a-z0-9-')" in ib-root-*) ;; *)
	echo "ib-root-$(hostname)" | dd of=/dev/vda conv=notrunc,fsync 2>/dev/null; sync; echo "root-marked" >/dev/ttyS0 ;;
esac
(while :; do for b in /sys/block/vd*; do d=${b##*/}; s=$(cat $b/serial 2>/dev/null)
	if [ -n "$s" ] && [ ! -e /tmp/seen-$d ]; then touch /tmp/seen-$d
		case "$(head -c 40 /dev/$d | tr -dc 'a-z0-9-')" in ib-data-*) ;; *)
			echo "ib-data-$(hostname)" | dd of=/dev/$d conv=notrunc,fsync 2>/dev/null; sync; echo "data-marked-$s" >/dev/ttyS0 ;;
		esac
	fi; done; sleep 1; done) &
`), 0o644)
	logs := func(name string) string {
		r := kumo(t, root, "", "instance", "logs", name, "--tail", "300")
		return r.out
	}
	logsSay := func(name string, want ...string) {
		t.Helper()
		eventually(t, 180*time.Second, name+" says "+strings.Join(want, ", "), func() (bool, string) {
			out := logs(name)
			for _, w := range want {
				if !strings.Contains(out, w) {
					return false, out
				}
			}
			return true, ""
		})
	}
	c := client.Socket(s.socket)
	ctx := context.Background()
	must(t, root, "", "instance", "create", "vm1", "--type", "vm", "--image", "tiny-vm", "--flavor", "tiny", "--user-data", ud, "--wait")
	logsSay("vm1", "root-marked")
	must(t, root, "", "volume", "create", "data", "--size", "1GiB", "--near", "vm1")
	v := volumeIs(t, c, "data", "made", 60*time.Second, func(v api.Volume) bool { return v.Status == api.VolumeAvailable })
	must(t, root, "", "volume", "attach", "data", "vm1", "--device", "vdc")
	logsSay("vm1", "data-marked-"+v.ID[:20])

	must(t, root, "", "instance", "backup", "vm1", "ib", "--wait")
	ib, err := c.InstanceBackup(ctx, "default", "ib")
	if err != nil || ib.Status != api.VolumeAvailable || ib.RootBackup != "ib-root" || ib.RootImage != "" || ib.EphemeralRoot || len(ib.Volumes) != 1 || ib.Volumes[0].Device != "vdc" {
		t.Fatalf("instance backup: %+v %v", ib, err)
	}
	must(t, root, "", "instance", "terminate", "vm1", "--wait")

	must(t, root, "", "instance", "restore", "ib", "--name", "vm2", "--wait")
	// Both marks are there at its first boot, and it marks nothing.
	logsSay("vm2", "boot-head-vda: ib-root-vm1", ": ib-data-vm1")
	if out := logs("vm2"); strings.Contains(out, "root-marked") || strings.Contains(out, "data-marked") {
		t.Fatalf("vm2 found a disk unmarked:\n%s", out)
	}
	rv := volumeIs(t, c, "vm2-vdc", "the restored volume attached", 60*time.Second, func(v api.Volume) bool { return v.Attachment != nil && v.Attachment.Attached })
	if in, _ := instanceState(t, c, "default", "vm2"); rv.Host != in.Host || !strings.HasSuffix(in.Image, "/tiny-vm") {
		t.Fatalf("vm2 on %s from %s, its volume on %s", in.Host, in.Image, rv.Host)
	}
	must(t, root, "", "instance", "terminate", "vm2", "--wait")
	must(t, root, "", "instance", "backup", "delete", "ib")
	if _, err := c.Image(ctx, "default", "ib-root"); err == nil {
		t.Fatal("an image was made of the root disk")
	}
	if bs, err := c.VolumeBackups(ctx, "default"); err != nil || len(bs) != 0 {
		t.Fatalf("volume backups left: %+v %v", bs, err)
	}
}
