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

// volumeIs waits for a volume to satisfy cond.
func volumeIs(t *testing.T, c *client.Client, name, what string, d time.Duration, cond func(api.Volume) bool) api.Volume {
	t.Helper()
	var v api.Volume
	eventually(t, d, what, func() (bool, string) {
		var err error
		v, err = c.Volume(context.Background(), "default", name)
		return err == nil && cond(v), fmt.Sprintf("%+v %v", v, err)
	})
	return v
}

// loopDevicesUnder lists the loop devices backed by a file under dir.
func loopDevicesUnder(dir string) string {
	out, _ := exec.Command("losetup", "-a").CombinedOutput()
	var left []string
	for _, l := range strings.Split(string(out), "\n") {
		if strings.Contains(l, dir) {
			left = append(left, l)
		}
	}
	return strings.Join(left, "\n")
}

// TestVolumesContainer: a filesystem volume made on the container's host,
// mounted into a running container (live), its size enforced, refused
// deletion while attached, surviving the container's terminate, mounted
// live into a new container with its data, detached live, grown, deleted
// with nothing left (files, mounts, loop devices); quota refusal is clear.
func TestVolumesContainer(t *testing.T) {
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
	dir := t.TempDir()
	img := filepath.Join(dir, "tiny-rootfs.tar.gz")
	must(t, root, "", "image", "build", "tiny-rootfs", "-f", img)
	must(t, root, "", "image", "import", img, "--name", "tiny", "--public")
	must(t, root, "", "instance", "create", "c1", "--type", "container", "--image", "tiny", "--flavor", "tiny", "--wait")
	c := client.Socket(s.socket)
	ctx := context.Background()

	// Quota: a clear refusal naming the resource.
	must(t, root, "", "project", "set-quota", "default", "volume-size=3")
	if r := kumo(t, root, "", "volume", "create", "big", "--size", "4GiB", "--format", "ext4", "--near", "c1"); r.code == 0 || !strings.Contains(r.err, "volume_gib") {
		t.Fatalf("over quota: %d %q", r.code, r.err)
	}
	must(t, root, "", "volume", "create", "files", "--size", "1GiB", "--format", "ext4", "--near", "c1")
	v := volumeIs(t, c, "files", "the volume made on its host", 60*time.Second, func(v api.Volume) bool { return v.Status == api.VolumeAvailable })
	if v.HostSizeGiB != 1 {
		t.Fatalf("made %d GiB", v.HostSizeGiB)
	}
	file := ""
	filepath.Walk(s.dir, func(p string, fi os.FileInfo, err error) error {
		if err == nil && fi.Name() == v.ID+".ext4" {
			file = p
		}
		return nil
	})
	if file == "" {
		t.Fatal("no volume file on the host")
	}
	// Sparse: a 1 GiB volume takes little room until written.
	var st = statBlocks(t, file)
	if st > 200<<20 {
		t.Errorf("a fresh 1 GiB volume takes %d bytes on disk", st)
	}

	must(t, root, "", "volume", "attach", "files", "c1", "--path", "/data")
	volumeIs(t, c, "files", "attached to c1", 60*time.Second, func(v api.Volume) bool { return v.Attachment != nil && v.Attachment.Attached })
	// Live: the running container sees it at once, its size enforced.
	must(t, root, "", "instance", "exec", "c1", "--", "sh", "-c", "echo kept-across-instances > /data/f")
	out := must(t, root, "", "instance", "exec", "c1", "--", "df", "-k", "/data")
	if k := dfKiB(out); k < 900<<10 || k > 1<<20 {
		t.Errorf("df of a 1 GiB volume: %q", out)
	}
	if r := kumo(t, root, "", "instance", "exec", "c1", "--", "dd", "if=/dev/zero", "of=/data/big", "bs=1048576", "count=1200"); r.code == 0 {
		t.Error("wrote 1200 MiB to a 1 GiB volume")
	}
	must(t, root, "", "instance", "exec", "c1", "--", "rm", "-f", "/data/big")
	if r := kumo(t, root, "", "volume", "delete", "files"); r.code == 0 || !strings.Contains(r.err, "attached") {
		t.Fatalf("delete while attached: %d %q", r.code, r.err)
	}

	// The volume outlives its container.
	must(t, root, "", "instance", "terminate", "c1", "--wait")
	volumeIs(t, c, "files", "let go after terminate", 60*time.Second, func(v api.Volume) bool { return v.Attachment == nil && v.Status == api.VolumeAvailable })
	must(t, root, "", "instance", "create", "c2", "--type", "container", "--image", "tiny", "--flavor", "tiny", "--wait")
	// kill -9 of the server and its agent right after the attach: after
	// the restart the host and the store agree.
	must(t, root, "", "volume", "attach", "files", "c2")
	s.kill9()
	s.start()
	c = client.Socket(s.socket)
	volumeIs(t, c, "files", "attached to c2 after the restart", 60*time.Second, func(v api.Volume) bool { return v.Attachment != nil && v.Attachment.Attached })
	if out := must(t, root, "", "instance", "exec", "c2", "--", "cat", "/data/f"); strings.TrimSpace(out) != "kept-across-instances" {
		t.Fatalf("the data in the new container: %q", out)
	}
	// A snapshot of the attached volume (its filesystem frozen while
	// copied), then a change the revert takes back.
	// 32 MiB that do not compress: what a full backup must store.
	must(t, root, "", "instance", "exec", "c2", "--", "sh", "-c", "dd if=/dev/urandom of=/data/rand bs=1048576 count=32 2>/dev/null; sync")
	must(t, root, "", "volume", "snapshot", "create", "files", "s1")
	eventually(t, 60*time.Second, "the snapshot made", func() (bool, string) {
		sn, err := c.VolumeSnapshot(ctx, "default", "files", "s1")
		return err == nil && sn.Status == api.VolumeAvailable, fmt.Sprintf("%+v %v", sn, err)
	})
	must(t, root, "", "instance", "exec", "c2", "--", "sh", "-c", "echo changed-after-s1 > /data/f")
	// Grown while attached: online where the host allows it (resize2fs
	// of a mounted filesystem needs CAP_SYS_RESOURCE), else as soon as
	// it is detached; the volume says which.
	must(t, root, "", "volume", "resize", "files", "--size", "2GiB")
	volumeIs(t, c, "files", "grown, or waiting for detach", 60*time.Second, func(v api.Volume) bool {
		return v.HostSizeGiB == 2 || strings.Contains(v.Error, "grows when detached")
	})
	// Detached live: gone from the running container.
	must(t, root, "", "volume", "detach", "files")
	volumeIs(t, c, "files", "detached and grown", 60*time.Second, func(v api.Volume) bool { return v.Attachment == nil && v.HostSizeGiB == 2 && v.Error == "" })
	if r := kumo(t, root, "", "instance", "exec", "c2", "--", "cat", "/data/f"); r.code == 0 {
		t.Errorf("the file is still there after detach: %q", r.out)
	}
	must(t, root, "", "volume", "attach", "files", "c2", "--path", "/srv/vol")
	volumeIs(t, c, "files", "attached again", 60*time.Second, func(v api.Volume) bool { return v.Attachment != nil && v.Attachment.Attached })
	if out := must(t, root, "", "instance", "exec", "c2", "--", "df", "-k", "/srv/vol"); dfKiB(out) < 1900<<10 {
		t.Errorf("the container does not see 2 GiB: %q", out)
	}
	if out := must(t, root, "", "instance", "exec", "c2", "--", "cat", "/srv/vol/f"); strings.TrimSpace(out) != "changed-after-s1" {
		t.Errorf("the data after growing: %q", out)
	}
	must(t, root, "", "volume", "detach", "files")
	volumeIs(t, c, "files", "detached", 60*time.Second, func(v api.Volume) bool { return v.Attachment == nil })
	if r := kumo(t, root, "", "volume", "delete", "files"); r.code == 0 || !strings.Contains(r.err, "snapshots") {
		t.Fatalf("delete with snapshots: %d %q", r.code, r.err)
	}
	// Revert, and a new volume made from the snapshot: both hold what the
	// volume held when it was taken.
	must(t, root, "", "project", "set-quota", "default", "volume-size=10")
	must(t, root, "", "volume", "revert", "files", "--snapshot", "s1")
	must(t, root, "", "volume", "create", "copy", "--size", "1GiB", "--from-snapshot", "files/s1")
	volumeIs(t, c, "files", "reverted", 60*time.Second, func(v api.Volume) bool { return v.Status == api.VolumeAvailable })
	volumeIs(t, c, "copy", "the copy made", 60*time.Second, func(v api.Volume) bool { return v.Status == api.VolumeAvailable })
	must(t, root, "", "volume", "attach", "files", "c2", "--path", "/data")
	must(t, root, "", "volume", "attach", "copy", "c2", "--path", "/copy")
	volumeIs(t, c, "files", "attached", 60*time.Second, func(v api.Volume) bool { return v.Attachment != nil && v.Attachment.Attached })
	volumeIs(t, c, "copy", "attached", 60*time.Second, func(v api.Volume) bool { return v.Attachment != nil && v.Attachment.Attached })
	for _, f := range []string{"/data/f", "/copy/f"} {
		if out := must(t, root, "", "instance", "exec", "c2", "--", "cat", f); strings.TrimSpace(out) != "kept-across-instances" {
			t.Errorf("%s after the revert: %q", f, out)
		}
	}
	must(t, root, "", "volume", "detach", "files")
	must(t, root, "", "volume", "detach", "copy")
	volumeIs(t, c, "files", "detached", 60*time.Second, func(v api.Volume) bool { return v.Attachment == nil })
	volumeIs(t, c, "copy", "detached", 60*time.Second, func(v api.Volume) bool { return v.Attachment == nil })
	must(t, root, "", "volume", "delete", "copy")

	// A backup to the server, restored into a new volume: the same bytes.
	must(t, root, "", "volume", "backup", "create", "files", "b1")
	backupIs := func(name string) api.VolumeBackup {
		var b api.VolumeBackup
		eventually(t, 120*time.Second, "backup "+name+" made", func() (bool, string) {
			var err error
			b, err = c.VolumeBackup(ctx, "default", name)
			return err == nil && b.Status == api.VolumeAvailable, fmt.Sprintf("%+v %v", b, err)
		})
		return b
	}
	b1 := backupIs("b1")
	must(t, root, "", "volume", "create", "restored", "--size", "2GiB", "--from-backup", "b1", "--near", "c2")
	rv := volumeIs(t, c, "restored", "restored", 120*time.Second, func(v api.Volume) bool { return v.Status == api.VolumeAvailable })
	restoredFile := filepath.Join(filepath.Dir(file), rv.ID+".ext4")
	if a, b := sha256File(t, file), sha256File(t, restoredFile); a != b {
		t.Errorf("the restored volume differs from the one backed up: %s %s", a, b)
	}
	// A small change: the next backup stores little.
	must(t, root, "", "volume", "attach", "restored", "c2", "--path", "/restored")
	volumeIs(t, c, "restored", "attached", 60*time.Second, func(v api.Volume) bool { return v.Attachment != nil && v.Attachment.Attached })
	if out := must(t, root, "", "instance", "exec", "c2", "--", "cat", "/restored/f"); strings.TrimSpace(out) != "kept-across-instances" {
		t.Errorf("the restored data: %q", out)
	}
	must(t, root, "", "instance", "exec", "c2", "--", "sh", "-c", "echo small-change > /restored/g; sync")
	must(t, root, "", "volume", "backup", "create", "restored", "b2", "--incremental")
	b2 := backupIs("b2")
	t.Logf("backup sizes: full %d bytes stored (of %d GiB), incremental %d bytes stored", b1.StoredBytes, b1.SizeGiB, b2.StoredBytes)
	if b1.StoredBytes < 32<<20 || b2.StoredBytes > b1.StoredBytes/3 {
		t.Errorf("full backup stored %d bytes, the incremental after a small change %d", b1.StoredBytes, b2.StoredBytes)
	}
	must(t, root, "", "volume", "detach", "restored")
	volumeIs(t, c, "restored", "detached", 60*time.Second, func(v api.Volume) bool { return v.Attachment == nil })
	must(t, root, "", "volume", "delete", "restored")
	must(t, root, "", "volume", "backup", "delete", "b1")
	must(t, root, "", "volume", "backup", "delete", "b2")
	if left, _ := os.ReadDir(filepath.Join(s.dir, "volume-backups", "chunks")); len(left) != 0 {
		t.Errorf("%d chunks left after every backup was deleted", len(left))
	}
	must(t, root, "", "volume", "snapshot", "delete", "files", "s1")
	eventually(t, 60*time.Second, "the snapshot gone", func() (bool, string) {
		_, err := c.VolumeSnapshot(ctx, "default", "files", "s1")
		return err != nil && strings.Contains(err.Error(), "not found"), fmt.Sprint(err)
	})
	must(t, root, "", "volume", "delete", "files")
	eventually(t, 60*time.Second, "the volume gone", func() (bool, string) {
		_, err := c.Volume(ctx, "default", "files")
		return err != nil && strings.Contains(err.Error(), "not found"), fmt.Sprint(err)
	})
	if _, err := os.Stat(file); !os.IsNotExist(err) {
		t.Errorf("volume file left: %v", err)
	}
	if left := loopDevicesUnder(filepath.Dir(file)); left != "" {
		t.Errorf("loop devices left: %s", left)
	}
	if mi, _ := os.ReadFile("/proc/self/mountinfo"); strings.Contains(string(mi), filepath.Join(s.dir, "agent", "volumes")) {
		t.Error("volume mounts left")
	}
	if p, err := c.Project(ctx, "default"); err != nil || p.Usage.Volumes != 0 || p.Usage.VolumeGiB != 0 {
		t.Errorf("quota usage after delete: %+v %v", p.Usage, err)
	}
	must(t, root, "", "instance", "terminate", "c2", "--wait")
}

// statBlocks is what a file takes on disk.
func statBlocks(t *testing.T, path string) int64 {
	out, err := exec.Command("stat", "-c", "%b %B", path).Output()
	if err != nil {
		t.Fatal(err)
	}
	var blocks, size int64
	fmt.Sscan(string(out), &blocks, &size)
	return blocks * size
}

// dfKiB is the size in df -k's last line.
func dfKiB(out string) int64 {
	ls := lines(out)
	if len(ls) == 0 {
		return 0
	}
	f := strings.Fields(ls[len(ls)-1])
	var n int64
	if len(f) > 1 {
		fmt.Sscan(f[1], &n)
	}
	return n
}

// TestVolumesVM: a block volume hot-plugged into a running VM (QEMU, TCG
// here): the guest sees a disk with the volume's serial appear, writes to
// it, sees it grow when the volume is resized, and sees it go on detach;
// a snapshot taken while it runs and the volume itself hold what it
// wrote, and a second VM the volume is attached to reads it.
func TestVolumesVM(t *testing.T) {
	s := startQEMUServer(t)
	root := []string{"KUMO_SOCKET=" + s.socket}
	dir := t.TempDir()
	must(t, root, "", "image", "build", "tiny-vm", "-f", filepath.Join(dir, "tiny-vm.tar.gz"), "--import", "--public")
	// The guest says which disks it has (serial:sectors) whenever that
	// changes, and writes a marker on each new disk that is not its own.
	ud := filepath.Join(dir, "disks.sh")
	os.WriteFile(ud, []byte(`#!/bin/sh
(last=""; while :; do
	now=""
	for b in /sys/block/vd*; do
		s=$(cat $b/serial 2>/dev/null); n=$(cat $b/size)
		now="$now $s:$n"
		case "$last" in *" $s:"*) ;; *) if [ -n "$s" ]; then
			echo "head-$s: $(head -c 40 /dev/${b##*/} | tr -dc 'a-z0-9-')" >/dev/ttyS0
			echo "volume-marker-$s-$(hostname)" | dd of=/dev/${b##*/} conv=notrunc,fsync 2>/dev/null
		fi ;; esac
	done
	[ "$now" != "$last" ] && echo "disks:$now" >/dev/ttyS0
	last="$now"; sleep 1
done) &
`), 0o644)
	must(t, root, "", "instance", "create", "vm1", "--type", "vm", "--image", "tiny-vm", "--flavor", "tiny", "--user-data", ud, "--wait")
	c := client.Socket(s.socket)
	eventually(t, 120*time.Second, "vm1 ready", func() (bool, string) {
		in, _ := instanceState(t, c, "default", "vm1")
		return in.Ready, fmt.Sprint(in.State, " ready=", in.Ready, " ", in.ReadyReason)
	})
	must(t, root, "", "volume", "create", "data", "--size", "1GiB", "--near", "vm1")
	v := volumeIs(t, c, "data", "made", 60*time.Second, func(v api.Volume) bool { return v.Status == api.VolumeAvailable })
	serial := v.ID[:20]
	guestSees := func(what, want string, absent bool) {
		t.Helper()
		eventually(t, 120*time.Second, what, func() (bool, string) {
			ls := lines(must(t, root, "", "instance", "logs", "vm1", "--tail", "200"))
			last := ""
			for _, l := range ls {
				if i := strings.Index(l, "disks:"); i >= 0 {
					last = l[i:]
				}
			}
			return strings.Contains(last, want) != absent, last
		})
	}
	must(t, root, "", "volume", "attach", "data", "vm1")
	volumeIs(t, c, "data", "attached", 120*time.Second, func(v api.Volume) bool { return v.Attachment != nil && v.Attachment.Attached })
	guestSees("the hot-plugged disk in the guest", " "+serial+":2097152", false)
	// A snapshot while the guest runs (QEMU copies the disk it has open):
	// it holds what the guest wrote.
	must(t, root, "", "volume", "snapshot", "create", "data", "s1")
	eventually(t, 120*time.Second, "the snapshot made", func() (bool, string) {
		sn, err := c.VolumeSnapshot(context.Background(), "default", "data", "s1")
		return err == nil && sn.Status == api.VolumeAvailable, fmt.Sprintf("%+v %v", sn, err)
	})
	// Backups of the attached disk: the first copies it whole and starts
	// QEMU's dirty bitmap on it; the next reads only the chunks written
	// since (none: the agent keeps its manifest as the base of the next)
	// and restores to the volume's bytes (checked once it is detached).
	vbIs := func(name string) api.VolumeBackup {
		var b api.VolumeBackup
		eventually(t, 120*time.Second, "backup "+name+" made", func() (bool, string) {
			var err error
			b, err = c.VolumeBackup(context.Background(), "default", name)
			return err == nil && b.Status == api.VolumeAvailable, fmt.Sprintf("%+v %v", b, err)
		})
		return b
	}
	must(t, root, "", "volume", "backup", "create", "data", "vb1")
	vbIs("vb1")
	must(t, root, "", "volume", "backup", "create", "data", "vb2", "--incremental")
	vb2 := vbIs("vb2")
	var base []byte
	filepath.Walk(s.dir, func(p string, fi os.FileInfo, err error) error {
		if err == nil && fi.Name() == v.ID+".json" && filepath.Base(filepath.Dir(p)) == "backup-bases" {
			base, _ = os.ReadFile(p)
		}
		return nil
	})
	if !strings.Contains(string(base), `"backup":"`+vb2.ID+`"`) {
		t.Errorf("the agent's base manifest after vb2: %.200s", base)
	}
	if vb2.StoredBytes != 0 {
		t.Errorf("vb2 stored %d bytes with nothing written since vb1", vb2.StoredBytes)
	}
	must(t, root, "", "volume", "resize", "data", "--size", "2GiB")
	volumeIs(t, c, "data", "grown", 60*time.Second, func(v api.Volume) bool { return v.HostSizeGiB == 2 })
	guestSees("the guest sees the new size", " "+serial+":4194304", false)
	must(t, root, "", "volume", "detach", "data")
	volumeIs(t, c, "data", "detached", 120*time.Second, func(v api.Volume) bool { return v.Attachment == nil })
	guestSees("the disk gone from the guest", serial, true)
	// What the guest wrote is in the volume.
	var file string
	filepath.Walk(s.dir, func(p string, fi os.FileInfo, err error) error {
		if err == nil && fi.Name() == v.ID+".qcow2" {
			file = p
		}
		return nil
	})
	head := filepath.Join(dir, "head")
	if out, err := exec.Command("qemu-img", "dd", "-f", "qcow2", "-O", "raw", "bs=512", "count=1", "if="+file, "of="+head).CombinedOutput(); err != nil {
		t.Fatalf("reading the volume: %v %s", err, out)
	}
	if b, _ := os.ReadFile(head); !strings.HasPrefix(string(b), "volume-marker-"+serial+"-vm1") {
		t.Errorf("the volume's first bytes: %q", b[:min(len(b), 40)])
	}
	// vb2 restored is the volume's first GiB (it grew by zeros since).
	must(t, root, "", "volume", "create", "fromvb2", "--size", "1GiB", "--from-backup", "vb2", "--near", "vm1")
	rv := volumeIs(t, c, "fromvb2", "restored", 120*time.Second, func(v api.Volume) bool { return v.Status == api.VolumeAvailable })
	rawSum := func(qcow2 string, size int64) string {
		raw := filepath.Join(dir, "raw")
		defer os.Remove(raw)
		if out, err := exec.Command("qemu-img", "convert", "-U", "-f", "qcow2", "-O", "raw", qcow2, raw).CombinedOutput(); err != nil {
			t.Fatalf("qemu-img convert: %v %s", err, out)
		}
		os.Truncate(raw, size)
		return sha256File(t, raw)
	}
	if a, b := rawSum(file, 1<<30), rawSum(filepath.Join(filepath.Dir(file), rv.ID+".qcow2"), 1<<30); a != b {
		t.Errorf("the incremental backup restored differs from the volume: %s %s", a, b)
	}
	must(t, root, "", "volume", "delete", "fromvb2")
	must(t, root, "", "volume", "backup", "delete", "vb1")
	must(t, root, "", "volume", "backup", "delete", "vb2")
	snapFile := strings.TrimSuffix(file, ".qcow2") + "@" + mustSnapshotID(t, c, "data", "s1") + ".qcow2"
	os.Remove(head)
	if out, err := exec.Command("qemu-img", "dd", "-f", "qcow2", "-O", "raw", "bs=512", "count=1", "if="+snapFile, "of="+head).CombinedOutput(); err != nil {
		t.Fatalf("reading the snapshot: %v %s", err, out)
	}
	if b, _ := os.ReadFile(head); !strings.HasPrefix(string(b), "volume-marker-"+serial) {
		t.Errorf("the snapshot's first bytes: %q", b[:min(len(b), 40)])
	}
	must(t, root, "", "instance", "terminate", "vm1", "--wait")
	// A second VM gets the volume and reads what the first wrote.
	must(t, root, "", "instance", "create", "vm2", "--type", "vm", "--image", "tiny-vm", "--flavor", "tiny", "--user-data", ud, "--wait")
	eventually(t, 120*time.Second, "vm2 ready", func() (bool, string) {
		in, _ := instanceState(t, c, "default", "vm2")
		return in.Ready, fmt.Sprint(in.State, " ready=", in.Ready, " ", in.ReadyReason)
	})
	must(t, root, "", "volume", "attach", "data", "vm2")
	eventually(t, 120*time.Second, "vm2 reads what vm1 wrote", func() (bool, string) {
		out := must(t, root, "", "instance", "logs", "vm2", "--tail", "200")
		return strings.Contains(out, "head-"+serial+": volume-marker-"+serial+"-vm1"), out
	})
	must(t, root, "", "instance", "terminate", "vm2", "--wait")
	volumeIs(t, c, "data", "let go after terminate", 60*time.Second, func(v api.Volume) bool { return v.Attachment == nil })
	must(t, root, "", "volume", "snapshot", "delete", "data", "s1")
	eventually(t, 60*time.Second, "the snapshot gone", func() (bool, string) {
		_, err := os.Stat(snapFile)
		return os.IsNotExist(err), fmt.Sprint(err)
	})
	must(t, root, "", "volume", "delete", "data")
	eventually(t, 60*time.Second, "the volume gone", func() (bool, string) {
		_, err := os.Stat(file)
		return os.IsNotExist(err), fmt.Sprint(err)
	})
}

func mustSnapshotID(t *testing.T, c *client.Client, volume, name string) string {
	t.Helper()
	sn, err := c.VolumeSnapshot(context.Background(), "default", volume, name)
	if err != nil {
		t.Fatal(err)
	}
	return sn.ID
}

func sha256File(t *testing.T, path string) string {
	out, err := exec.Command("sha256sum", path).Output()
	if err != nil {
		t.Fatal(err)
	}
	return strings.Fields(string(out))[0]
}
