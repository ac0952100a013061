package e2e

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kumocloud/kumo/api"
	"github.com/kumocloud/kumo/client"
)

// TestInstanceBackupContainer: a container writes random data to its
// volume; 'kumo instance backup' keeps its definition and the volume; the
// container is terminated and its volume deleted; 'kumo instance restore'
// brings it back under its name, the volume restored on its host and
// mounted where it was before it starts: the same sha256.
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

	must(t, root, "", "instance", "backup", "c1", "nightly", "--wait")
	ib, err := c.InstanceBackup(ctx, "default", "nightly")
	if err != nil || ib.Status != api.VolumeAvailable || len(ib.Volumes) != 1 || ib.Volumes[0].Path != "/data" || !ib.EphemeralRoot || ib.StoredBytes < 8<<20 {
		t.Fatalf("instance backup: %+v %v", ib, err)
	}
	if out := must(t, root, "", "instance", "backup", "list"); !strings.Contains(out, "nightly") {
		t.Fatalf("backup list: %q", out)
	}

	// Gone: the container and its volume.
	must(t, root, "", "instance", "terminate", "c1", "--wait")
	volumeIs(t, c, "files", "let go", 60*time.Second, func(v api.Volume) bool { return v.Attachment == nil })
	must(t, root, "", "volume", "delete", "files")

	must(t, root, "", "instance", "restore", "nightly", "--wait")
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
	must(t, root, "", "instance", "terminate", "c1", "--wait")
	volumeIs(t, c, "c1-vol1", "let go", 60*time.Second, func(v api.Volume) bool { return v.Attachment == nil })
	must(t, root, "", "volume", "delete", "c1-vol1")
	must(t, root, "", "instance", "backup", "delete", "nightly")
	if bs, err := c.VolumeBackups(ctx, "default"); err != nil || len(bs) != 0 {
		t.Fatalf("volume backups left: %+v %v", bs, err)
	}
}
