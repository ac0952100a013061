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

// TestVolumeMove: two agents, each with a host of its own and its own
// local pool. A detached volume holding random bytes moves from one to
// the other through the server's backup store: the same sha256 on the
// target, no copy left on the source, the move's backup gone. A second
// move back is interrupted by kill -9 of the server and the target's
// agent right after it is asked for: after the restarts it completes,
// the volume on exactly one host. Refusals (attached is not tested here:
// sim hosts run no volume attachments; see the unit tests) are clear.
func TestVolumeMove(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("ext4 volumes need mkfs and root; CI runs as root")
	}
	s := startServer(t)
	root := []string{"KUMO_SOCKET=" + s.socket}
	c := client.Socket(s.socket)
	ctx := context.Background()
	agents := map[string]*agentProc{}
	for _, name := range []string{"mva", "mvb"} {
		a := &agentProc{t: t, stateDir: t.TempDir()}
		a.args = []string{"agent", "--server", s.url(), "--join-token", joinToken(t, root), "--driver", "sim", "--sim-hosts", "1",
			"--sim-prefix", name, "--state-dir", a.stateDir, "--heartbeat", "500ms", "--name", "e2e-" + name, "--log-level", "warn"}
		a.start()
		t.Cleanup(a.stop)
		agents[name] = a
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Log(s.out.String(), agents["mva"].out.String(), agents["mvb"].out.String())
		}
	})
	hostOf := map[string]string{} // agent -> its host
	eventually(t, 60*time.Second, "two hosts online", func() (bool, string) {
		hs, err := c.Hosts(ctx)
		online := 0
		for _, h := range hs {
			if h.State == api.HostOnline {
				online++
				hostOf[strings.SplitN(h.Name, "-", 2)[0]] = h.Name
			}
		}
		return err == nil && online == 2, fmt.Sprint(hs, err)
	})
	ha, hb := hostOf["mva"], hostOf["mvb"]
	fileOn := func(agent, id string) string {
		return filepath.Join(agents[agent].stateDir, "volumes", "local", id+".ext4")
	}

	must(t, root, "", "volume", "create", "data", "--size", "1GiB", "--format", "ext4", "--host", ha)
	v := volumeIs(t, c, "data", "made on "+ha, 60*time.Second, func(v api.Volume) bool { return v.Status == api.VolumeAvailable })
	// 24 MiB of random bytes at 100 MiB into the volume's file (it is
	// detached: its file is just bytes).
	src := fileOn("mva", v.ID)
	if out, err := exec.Command("dd", "if=/dev/urandom", "of="+src, "bs=1M", "count=24", "seek=100", "conv=notrunc").CombinedOutput(); err != nil {
		t.Fatalf("dd: %v %s", err, out)
	}
	sum := sha256File(t, src)

	// Refusals: clear, naming the reason.
	for _, c := range []struct {
		args []string
		says string
	}{
		{[]string{"volume", "move", "data", "--host", "nope"}, `no host "nope"`},
		{[]string{"volume", "move", "data", "--host", ha}, "already"},
		{[]string{"volume", "move", "data"}, "host"},
	} {
		if r := kumo(t, root, "", c.args...); r.code == 0 || !strings.Contains(r.err, c.says) {
			t.Errorf("%v: %d %q", c.args, r.code, r.err)
		}
	}

	must(t, root, "", "volume", "move", "data", "--host", hb, "--wait")
	moved := volumeIs(t, c, "data", "on "+hb, 120*time.Second, func(v api.Volume) bool {
		return v.Status == api.VolumeAvailable && v.Host == hb
	})
	if moved.Error != "" || moved.ID != v.ID {
		t.Fatalf("moved: %+v", moved)
	}
	if got := sha256File(t, fileOn("mvb", v.ID)); got != sum {
		t.Fatalf("the moved volume differs: %s, was %s", got, sum)
	}
	noMoveLeft := func(old string) {
		eventually(t, 60*time.Second, "the old copy and the move's backup gone", func() (bool, string) {
			_, err := os.Stat(old)
			bs, berr := c.VolumeBackups(ctx, "default")
			return os.IsNotExist(err) && berr == nil && len(bs) == 0, fmt.Sprint(err, bs, berr)
		})
	}
	noMoveLeft(src)
	if left, _ := os.ReadDir(filepath.Join(s.dir, "volume-backups", "chunks")); len(left) != 0 {
		t.Errorf("%d chunks left after the move", len(left))
	}

	// Back again, with the server and the target's agent killed right
	// after the request.
	must(t, root, "", "volume", "move", "data", "--host", ha)
	agents["mva"].kill9()
	s.kill9()
	s.start()
	agents["mva"].start()
	c = client.Socket(s.socket)
	volumeIs(t, c, "data", "back on "+ha+" after the crashes", 180*time.Second, func(v api.Volume) bool {
		return v.Status == api.VolumeAvailable && v.Host == ha
	})
	if got := sha256File(t, fileOn("mva", v.ID)); got != sum {
		t.Fatalf("the volume moved back differs: %s, was %s", got, sum)
	}
	noMoveLeft(fileOn("mvb", v.ID))
	must(t, root, "", "volume", "delete", "data")
	eventually(t, 60*time.Second, "the volume deleted", func() (bool, string) {
		_, err := c.Volume(ctx, "default", "data")
		_, ferr := os.Stat(fileOn("mva", v.ID))
		return err != nil && os.IsNotExist(ferr), fmt.Sprint(err, ferr)
	})
}
