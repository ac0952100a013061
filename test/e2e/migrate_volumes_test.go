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
)

// TestMigrateColdContainerVolume: a real container (runc) with a local
// ext4 volume mounted at /data holding files migrates cold between two
// hosts, each an agent in a network namespace of its own. A first try
// whose target agent is killed -9 while the volume streams (the source
// capped at 1 MiB/s) is abandoned: the container runs on the source with
// its volume, and the target, back, keeps nothing. The second runs on
// the target with the volume mounted at /data again and the files in it;
// the volume's home is the target and the source keeps no copy of it.
func TestMigrateColdContainerVolume(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("hosts in namespaces, containers and loop mounts need root; CI runs as root")
	}
	if _, err := exec.LookPath("runc"); err != nil {
		t.Skip("runc is not installed (scripts/deps.sh installs it)")
	}
	lh := startLinkedHosts(t, 2, "--host-grace", "5s")
	s, root, c := lh.s, lh.root, lh.c
	ctx := context.Background()
	dirs := map[string]string{}
	startHost := func(i int, extra ...string) *netAgent {
		name := fmt.Sprintf("cv%d", i)
		a := lh.startAgent(i, name, append([]string{"--driver", "container", "--fence-grace", "0"}, extra...)...)
		dirs[name] = a.stateDir
		return a
	}
	// cv1 sends volume files at 1 MiB/s: a move lasts long enough to be
	// cut in the middle.
	a1 := startHost(1, "--migrate-volume-bandwidth", "1")
	img := filepath.Join(t.TempDir(), "tiny-rootfs.tar.gz")
	must(t, root, "", "image", "build", "tiny-rootfs", "-f", img)
	must(t, root, "", "image", "import", img, "--name", "tiny", "--public")
	must(t, root, "", "instance", "create", "c1", "--type", "container", "--image", "tiny", "--flavor", "tiny", "--wait")
	must(t, root, "", "volume", "create", "cdata", "--size", "1GiB", "--format", "ext4", "--near", "c1")
	volumeIs(t, c, "cdata", "made", 60*time.Second, func(v api.Volume) bool { return v.Status == api.VolumeAvailable })
	must(t, root, "", "volume", "attach", "cdata", "c1", "--path", "/data")
	v := volumeIs(t, c, "cdata", "attached", 60*time.Second, func(v api.Volume) bool { return v.Attachment != nil && v.Attachment.Attached })
	must(t, root, "", "instance", "exec", "c1", "--", "sh", "-c", "echo kept-across-hosts > /data/hello && dd if=/dev/urandom of=/data/blob bs=1M count=12 2>/dev/null && sync")
	sum := must(t, root, "", "instance", "exec", "c1", "--", "md5sum", "/data/blob")
	a2 := startHost(2)
	t.Cleanup(func() {
		if t.Failed() {
			t.Log(s.out.String(), a1.out.String(), a2.out.String())
		}
	})
	file := func(host string) string { return filepath.Join(dirs[host], "volumes", "local", v.ID+".ext4") }

	// A first try: cv2's agent is killed -9 while the volume streams to
	// it. The move is abandoned, c1 runs on cv1 with its volume, and cv2,
	// back, removes what it received.
	must(t, root, "", "instance", "migrate", "c1", "--host", "cv2")
	eventually(t, 60*time.Second, "the volume streaming to cv2", func() (bool, string) {
		st, err := os.Stat(file("cv2") + ".tmp")
		return err == nil && st.Size() > 0, fmt.Sprint(err)
	})
	a2.kill9()
	eventually(t, 120*time.Second, "c1 running on cv1 again", func() (bool, string) {
		in, _ := instanceState(t, c, "default", "c1")
		return in.Host == "cv1" && in.State == api.StateRunning, fmt.Sprint(in.State, " on ", in.Host)
	})
	if got := must(t, root, "", "instance", "exec", "c1", "--", "md5sum", "/data/blob"); got != sum {
		t.Fatalf("the volume on cv1 after the abandoned move: %q, was %q", got, sum)
	}
	a2.start()
	eventually(t, 120*time.Second, "cv2 to remove what it received", func() (bool, string) {
		in, _ := instanceState(t, c, "default", "c1")
		ents, _ := os.ReadDir(filepath.Join(dirs["cv2"], "volumes", "local"))
		return in.Migration == nil && len(ents) == 0, fmt.Sprint(in.Migration, ents)
	})
	if v, _ := c.Volume(ctx, "default", "cdata"); v.Host != "cv1" {
		t.Fatalf("the volume is on %s after the abandoned move", v.Host)
	}
	if h := must(t, root, "", "instance", "history", "c1"); !strings.Contains(h, "abandoned the migration to cv2") {
		t.Errorf("c1's history does not say the move was abandoned:\n%s", h)
	}

	must(t, root, "", "instance", "migrate", "c1", "--host", "cv2", "--wait")
	eventually(t, 60*time.Second, "c1 running on cv2", func() (bool, string) {
		in, _ := instanceState(t, c, "default", "c1")
		return in.Host == "cv2" && in.State == api.StateRunning, fmt.Sprint(in.State, " on ", in.Host)
	})
	if got := strings.TrimSpace(must(t, root, "", "instance", "exec", "c1", "--", "cat", "/data/hello")); got != "kept-across-hosts" {
		t.Fatalf("/data/hello on cv2: %q", got)
	}
	if got := must(t, root, "", "instance", "exec", "c1", "--", "md5sum", "/data/blob"); got != sum {
		t.Fatalf("/data/blob on cv2: %q, was %q", got, sum)
	}
	moved, _ := c.Volume(ctx, "default", "cdata")
	if moved.Host != "cv2" || moved.Attachment == nil || !moved.Attachment.Attached {
		t.Fatalf("the volume after the move: %+v", moved)
	}
	eventually(t, 60*time.Second, "the source's copy gone", func() (bool, string) {
		_, err := os.Stat(file("cv1"))
		_, derr := os.Stat(file("cv2"))
		return os.IsNotExist(err) && derr == nil, fmt.Sprint(err, derr)
	})
	must(t, root, "", "instance", "terminate", "c1", "--wait")
	volumeIs(t, c, "cdata", "detached", 60*time.Second, func(v api.Volume) bool { return v.Status == api.VolumeAvailable })
	if mi, _ := os.ReadFile("/proc/self/mountinfo"); strings.Contains(string(mi), v.ID) {
		t.Error("volume mounts left")
	}
}
