package e2e

import (
	"context"
	"encoding/json"
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

// runcStatus is what runc says of a container in an agent's state dir
// ("" when it has none).
func runcStatus(agentDir, id string) string {
	out, err := exec.Command("runc", "--root", filepath.Join(agentDir, "container", "runc"), "state", id).Output()
	if err != nil {
		return ""
	}
	var st struct {
		Status string `json:"status"`
	}
	json.Unmarshal(out, &st)
	return st.Status
}

// haHosts is a server and two container hosts, each in a network
// namespace of the test's, with short HA timings; web, an --ha container,
// runs on ha1 (ha2 joins after it is placed).
type haHosts struct {
	t          *testing.T
	root       []string
	c          *client.Client
	h1         string // ha1's namespace
	a1         *netAgent
	dir1, dir2 string
	web        api.Instance
}

func startHAHosts(t *testing.T) *haHosts {
	if os.Geteuid() != 0 {
		t.Skip("hosts in namespaces and containers need root; CI runs as root")
	}
	if _, err := exec.LookPath("runc"); err != nil {
		t.Skip("runc is not installed (scripts/deps.sh installs it)")
	}
	lh := startLinkedHosts(t, 2, "--host-grace", "3s", "--ha-fence-timeout", "12s")
	env := &haHosts{t: t, root: lh.root, c: lh.c, h1: lh.ns[0]}
	startHost := func(i int) (*netAgent, string) {
		name := fmt.Sprintf("ha%d", i)
		a := lh.startAgent(i, name, "--driver", "container", "--fence-grace", "3s")
		eventually(t, 30*time.Second, name+" registers its fence grace", func() (bool, string) {
			h, err := env.c.Host(context.Background(), name)
			return err == nil && h.FenceGraceSeconds == 3, fmt.Sprint(h, err)
		})
		return a, a.stateDir
	}
	env.a1, env.dir1 = startHost(1)
	img := filepath.Join(t.TempDir(), "tiny-rootfs.tar.gz")
	must(t, env.root, "", "image", "build", "tiny-rootfs", "-f", img)
	must(t, env.root, "", "image", "import", img, "--name", "tiny", "--public")
	// Only ha1 is up: web goes there.
	must(t, env.root, "", "instance", "create", "web", "--image", "tiny", "--flavor", "tiny", "--ha", "--wait")
	env.web, _ = instanceState(t, env.c, "default", "web")
	if env.web.Host != "ha1" || !env.web.HA || runcStatus(env.dir1, env.web.ID) != "running" {
		t.Fatalf("web: %s on %s (ha %v), runc on ha1: %q", env.web.State, env.web.Host, env.web.HA, runcStatus(env.dir1, env.web.ID))
	}
	_, env.dir2 = startHost(2)
	return env
}

// once fails the test if web runs on both hosts, and says where it runs.
func (env *haHosts) once() string {
	s1, s2 := runcStatus(env.dir1, env.web.ID), runcStatus(env.dir2, env.web.ID)
	if s1 == "running" && s2 == "running" {
		env.t.Fatalf("web runs on both hosts")
	}
	return "ha1: " + s1 + ", ha2: " + s2
}

// fencedAndMoved waits for ha1's agent (or its watchdog, whose log says
// so) to fence web and the server to recreate it on ha2, and checks the
// history says why.
func (env *haHosts) fencedAndMoved(log func() string) {
	t := env.t
	eventually(t, 30*time.Second, "ha1 fences web", func() (bool, string) {
		st := env.once()
		return runcStatus(env.dir1, env.web.ID) != "running" && strings.Contains(log(), "stopped an HA instance"), st + log()
	})
	eventually(t, 90*time.Second, "web recreated and RUNNING on ha2", func() (bool, string) {
		st := env.once()
		in, _ := instanceState(t, env.c, "default", "web")
		return in.State == api.StateRunning && in.Host == "ha2" && runcStatus(env.dir2, in.ID) == "running", fmt.Sprintf("%s on %s; %s", in.State, in.Host, st)
	})
	hist, err := env.c.InstanceHistory(context.Background(), "default", "web")
	if err != nil {
		t.Fatal(err)
	}
	why := ""
	for _, h := range hist {
		if h.Actor == "ha" {
			why = h.Reason
		}
	}
	if !strings.Contains(why, "host ha1 lost") {
		t.Fatalf("the history does not say why web moved: %+v", hist)
	}
}

// backOnce brings ha1's link back and waits for it to remove its fenced
// copy: web runs once, on ha2.
func (env *haHosts) backOnce() {
	t := env.t
	ipIn(t, env.h1, "link", "set", "ul1", "up")
	eventually(t, 90*time.Second, "ha1 back and its fenced copy gone", func() (bool, string) {
		st := env.once()
		h, err := env.c.Host(context.Background(), "ha1")
		return err == nil && h.State == api.HostOnline && runcStatus(env.dir1, env.web.ID) == "", st + env.a1.out.String()
	})
	in, _ := instanceState(t, env.c, "default", "web")
	if in.State != api.StateRunning || in.Host != "ha2" || runcStatus(env.dir2, in.ID) != "running" {
		t.Fatalf("after ha1 returned web is %s on %s (%s)", in.State, in.Host, env.once())
	}
	must(t, env.root, "", "instance", "terminate", "web", "--wait")
}

// TestHAFenceAndRecreate: the network of the host running an --ha
// container is cut and stays cut: its agent stops the container itself
// (self-fencing), and after the fence timeout the server recreates it on
// the other host. When the network is back the old host removes its
// fenced copy: at every point it runs at most once, and at the end
// exactly once, on the new host, with the history saying why.
func TestHAFenceAndRecreate(t *testing.T) {
	env := startHAHosts(t)
	ipIn(t, env.h1, "link", "set", "ul1", "down")
	env.fencedAndMoved(env.a1.out.String)
	env.backOnce()
}

// TestHAAgentKilledAndRestartedCutOff: the agent holding an --ha
// container is killed (-9: the container runs on without it), its host
// is cut off, and the agent is started again (as a supervisor would)
// while it cannot reach the server: it (or the killed agent's watchdog,
// whichever comes first) fences from the last contact recorded, and the
// rest goes as for a cut.
func TestHAAgentKilledAndRestartedCutOff(t *testing.T) {
	env := startHAHosts(t)
	env.a1.kill9()
	if st := runcStatus(env.dir1, env.web.ID); st != "running" {
		t.Fatalf("web did not outlive its agent: %q", st)
	}
	ipIn(t, env.h1, "link", "set", "ul1", "down")
	env.a1.start()
	// Either fences: the restarted agent at once from what it recorded,
	// or the killed agent's watchdog once the grace has passed (on a
	// loaded machine it may come first, the new agent finding web
	// already stopped).
	env.fencedAndMoved(func() string { return env.a1.out.String() + env.watchdogLog() })
	env.backOnce()
}

// watchdogLog is what ha1's fencing watchdog has logged.
func (env *haHosts) watchdogLog() string {
	b, _ := os.ReadFile(filepath.Join(env.dir1, "fence-watchdog.log"))
	return string(b)
}

// TestHAAgentKilledStaysDead: the agent holding an --ha container is
// killed (-9) and stays dead while its host runs on: its watchdog, a
// process of its own, stops the container once the agent's grace has
// passed, and the server recreates it on the other host. When the agent
// is started again it removes nothing that runs and web runs once.
func TestHAAgentKilledStaysDead(t *testing.T) {
	env := startHAHosts(t)
	env.a1.kill9()
	env.fencedAndMoved(env.watchdogLog)
	env.a1.start()
	env.backOnce()
}

// TestHAWithSharedVolume: the --ha container has a filesystem volume of a
// shared-dir pool (a directory both hosts see) mounted at /data, where it
// wrote a file; a local volume attached to it meanwhile is warned about
// (HA could not bring it along) and detached again. ha1's network is cut:
// ha1 fences web and unmounts the volume from its host, the server
// recreates web on ha2 with the volume mounted at /data again, and the
// file is there. When ha1 is back, web runs once, on ha2, and still reads
// it.
func TestHAWithSharedVolume(t *testing.T) {
	env := startHAHosts(t)
	ctx := context.Background()
	root := env.root
	must(t, root, "", "volume", "create", "loc", "--size", "1GiB", "--format", "ext4", "--near", "web")
	volumeIs(t, env.c, "loc", "made", 60*time.Second, func(v api.Volume) bool { return v.Status == api.VolumeAvailable })
	if r := kumo(t, root, "", "volume", "attach", "loc", "web", "--path", "/local"); r.code != 0 || !strings.Contains(r.err, "warning: volume loc is in the local pool") {
		t.Fatalf("attaching a local volume to an HA instance: exit %d, stderr %q", r.code, r.err)
	}
	volumeIs(t, env.c, "loc", "attached", 60*time.Second, func(v api.Volume) bool { return v.Attachment != nil && v.Attachment.Attached })
	must(t, root, "", "volume", "detach", "loc")
	volumeIs(t, env.c, "loc", "detached", 60*time.Second, func(v api.Volume) bool { return v.Attachment == nil })

	must(t, root, "", "storage", "pool", "create", "nfs", "--path", t.TempDir())
	must(t, root, "", "volume", "create", "files", "--size", "1GiB", "--format", "ext4", "--pool", "nfs")
	volumeIs(t, env.c, "files", "made", 60*time.Second, func(v api.Volume) bool { return v.Status == api.VolumeAvailable })
	if r := kumo(t, root, "", "volume", "attach", "files", "web", "--path", "/data"); r.code != 0 || strings.Contains(r.err, "warning") {
		t.Fatalf("attaching a shared volume to an HA instance: exit %d, stderr %q", r.code, r.err)
	}
	volumeIs(t, env.c, "files", "attached on ha1", 60*time.Second, func(v api.Volume) bool { return v.Attachment != nil && v.Attachment.Attached })
	must(t, root, "", "instance", "exec", "web", "--", "sh", "-c", "echo written-on-ha1 > /data/f")

	vol := volumeIs(t, env.c, "files", "known", time.Second, func(api.Volume) bool { return true })
	mount1 := filepath.Join(env.dir1, "volumes", "mounts", vol.ID)
	mount2 := filepath.Join(env.dir2, "volumes", "mounts", vol.ID)
	if !mountedAt(mount1) {
		t.Fatal("the volume is not mounted on ha1's host")
	}
	ipIn(t, env.h1, "link", "set", "ul1", "down")
	// ha1 unmounts it (fencing) before ha2 mounts it: never both.
	eventually(t, 30*time.Second, "ha1 to fence web and unmount its volume", func() (bool, string) {
		st := env.once()
		return !mountedAt(mount1), st
	})
	if mountedAt(mount2) {
		t.Fatal("ha2 mounted the volume while ha1 still had it")
	}
	env.fencedAndMoved(env.a1.out.String)
	if mountedAt(mount1) || !mountedAt(mount2) {
		t.Fatalf("after the move: mounted on ha1 %v, on ha2 %v", mountedAt(mount1), mountedAt(mount2))
	}
	eventually(t, 60*time.Second, "web reads its file on ha2", func() (bool, string) {
		r := kumo(t, root, "", "instance", "exec", "web", "--", "cat", "/data/f")
		return r.code == 0 && strings.TrimSpace(r.out) == "written-on-ha1", r.out + r.err
	})
	hist, err := env.c.InstanceHistory(ctx, "default", "web")
	if err != nil || !strings.Contains(fmt.Sprint(hist), "with its shared volumes files (/data)") {
		t.Fatalf("the history does not say web moved with its volume: %+v %v", hist, err)
	}
	ipIn(t, env.h1, "link", "set", "ul1", "up")
	eventually(t, 90*time.Second, "ha1 back and its fenced copy gone", func() (bool, string) {
		st := env.once()
		h, err := env.c.Host(ctx, "ha1")
		return err == nil && h.State == api.HostOnline && runcStatus(env.dir1, env.web.ID) == "", st
	})
	if out := must(t, root, "", "instance", "exec", "web", "--", "cat", "/data/f"); strings.TrimSpace(out) != "written-on-ha1" {
		t.Fatalf("after ha1 returned web reads %q", out)
	}
	if in, _ := instanceState(t, env.c, "default", "web"); in.Host != "ha2" || in.State != api.StateRunning {
		t.Fatalf("after ha1 returned web is %s on %s", in.State, in.Host)
	}
	must(t, root, "", "instance", "terminate", "web", "--wait")
}

// mountedAt says whether something is mounted at path (in this mount
// namespace: the agents enter only network namespaces).
func mountedAt(path string) bool {
	b, _ := os.ReadFile("/proc/self/mountinfo")
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) > 4 && f[4] == path {
			return true
		}
	}
	return false
}
