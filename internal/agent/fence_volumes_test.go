package agent_test

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kumocloud/kumo/api"
	"github.com/kumocloud/kumo/internal/driver"
	"github.com/kumocloud/kumo/internal/driver/sim"
	"github.com/kumocloud/kumo/internal/volumes/pool"
)

// specsDriver is a sim driver that keeps the spec of every start.
type specsDriver struct {
	*sim.Driver
	mu    sync.Mutex
	specs map[string]driver.Spec
}

func (d *specsDriver) Start(ctx context.Context, s driver.Spec) error {
	d.mu.Lock()
	d.specs[s.ID] = s
	d.mu.Unlock()
	return d.Driver.Start(ctx, s)
}

func (d *specsDriver) spec(id string) (driver.Spec, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	s, ok := d.specs[id]
	return s, ok
}

// qemuIO runs qemu-io on a qcow2 file.
func qemuIO(t *testing.T, file, cmd string) error {
	t.Helper()
	out, err := exec.Command("qemu-io", "-f", "qcow2", "-c", cmd, file).CombinedOutput()
	if err == nil && strings.Contains(string(out), "Pattern verification failed") {
		err = errors.New("pattern verification failed")
	}
	if err != nil {
		return errors.New(err.Error() + ": " + string(out))
	}
	return nil
}

// An HA VM booting from a volume of a shared-dir pool, with a second
// shared volume attached, whose host's agent is cut off: the agent fences
// it, the server recreates it on the other host with both volumes (its
// boot volume, not its image; its data volume at the same device), and
// when the first host is back its agent lets go of its attachment records
// without touching the files: the bytes written before the loss are
// there, and the files are unchanged since the new host took them.
func TestHAFenceRecreatesWithSharedVolumes(t *testing.T) {
	if _, err := exec.LookPath("qemu-io"); err != nil {
		t.Skip("qemu-io (qemu-utils) is not installed")
	}
	ctx := context.Background()
	c := haCloud(t)
	shared := t.TempDir()
	if _, err := c.admin.CreateStoragePool(ctx, api.StoragePoolsPost{Name: "nfs", Type: api.PoolSharedDir, Path: shared}); err != nil {
		t.Fatal(err)
	}
	da := haSim(t, "hosta")
	db := &specsDriver{Driver: haSim(t, "hostb"), specs: map[string]driver.Spec{}}
	dirA := t.TempDir()
	a := c.startFencing(da, dirA)
	vols := map[string]api.Volume{}
	for _, name := range []string{"root", "data"} {
		v, err := c.admin.CreateVolume(ctx, "default", api.VolumesPost{Name: name, SizeGiB: 1, Pool: "nfs", Host: "hosta-0000"})
		if err != nil {
			t.Fatal(err)
		}
		vols[name] = v
	}
	file := func(name string) string { return filepath.Join(shared, vols[name].ID+".qcow2") }
	waitFor(t, "the shared volumes to be made", func() bool {
		for name := range vols {
			if v, _ := c.admin.Volume(ctx, "default", name); v.Status != api.VolumeAvailable {
				return false
			}
		}
		return true
	})
	if err := qemuIO(t, file("data"), "write -P 0xab 0 64k"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.admin.CreateInstance(ctx, "default", api.InstancesPost{Name: "db", Type: api.TypeVM, Flavor: "tiny", Image: "x", BootVolume: "root", HA: true}); err != nil {
		t.Fatal(err)
	}
	in := c.waitState("db", api.StateRunning)
	if _, err := c.admin.AttachVolume(ctx, "default", "data", api.VolumeAttach{Instance: "db", Device: "vdc"}); err != nil {
		t.Fatal(err)
	}
	attached := func(host string) bool {
		for name := range vols {
			v, _ := c.admin.Volume(ctx, "default", name)
			if v.Attachment == nil || !v.Attachment.Attached || v.Attachment.InstanceID != in.ID {
				return false
			}
		}
		return c.instance("db").Host == host
	}
	waitFor(t, "both volumes attached on hosta", func() bool { return attached("hosta-0000") })
	c.startFencing(db, t.TempDir())

	a.link.cut.Store(true)
	waitFor(t, "the cut-off agent to fence db", func() bool {
		st, err := da.Status(ctx, in.ID)
		return err == nil && st.State == driver.Stopped
	})
	waitFor(t, "db RUNNING on hostb with its volumes", func() bool {
		if running(da, in.ID) && running(db, in.ID) {
			t.Fatal("db runs on both hosts")
		}
		in := c.instance("db")
		return in.State == api.StateRunning && attached("hostb-0000")
	})
	if !c.history("db", "ha", "booting from its boot volume root, with its shared volumes data (vdc), root (vda)") {
		t.Fatalf("the history does not say db moved with its volumes")
	}
	s, ok := db.spec(in.ID)
	if !ok || s.BootVolume != vols["root"].ID || len(s.Volumes) != 2 {
		t.Fatalf("hostb started db with %+v", s)
	}
	for _, v := range s.Volumes {
		want := map[string]string{vols["root"].ID: "vda", vols["data"].ID: "vdc"}[v.ID]
		if v.Device != want || v.Source != filepath.Join(shared, v.ID+".qcow2") {
			t.Fatalf("hostb's volume %+v, want device %s in the shared pool", v, want)
		}
	}
	before := map[string]time.Time{}
	for name := range vols {
		st, err := os.Stat(file(name))
		if err != nil {
			t.Fatal(err)
		}
		before[name] = st.ModTime()
	}

	// hosta is back: its agent drops its attachment records (evidence its
	// volume job ran) and its fenced copy; the files stay as they were.
	a.link.cut.Store(false)
	waitFor(t, "hosta to let go of the volumes and sweep its copy", func() bool {
		b, err := os.ReadFile(filepath.Join(dirA, "volumes", "attachments.json"))
		if err != nil {
			return false
		}
		_, err = da.Status(ctx, in.ID)
		return !strings.Contains(string(b), vols["root"].ID) && !strings.Contains(string(b), vols["data"].ID) && errors.Is(err, driver.ErrNotFound)
	})
	for name := range vols {
		st, err := os.Stat(file(name))
		if err != nil || !st.ModTime().Equal(before[name]) {
			t.Fatalf("volume %s after hosta returned: %v (modified %v, was %v)", name, err, st.ModTime(), before[name])
		}
	}
	if err := qemuIO(t, file("data"), "read -P 0xab 0 64k"); err != nil {
		t.Fatalf("the data written before the loss: %v", err)
	}
	if in := c.instance("db"); in.State != api.StateRunning || in.Host != "hostb-0000" || !attached("hostb-0000") {
		t.Fatalf("db is %s on %s after hosta returned", in.State, in.Host)
	}
}

// An HA container with a filesystem volume (ext4) of a shared-dir pool,
// really loop-mounted on the host (the sim driver runs no process, the
// volume job mounts for real): its host's agent, cut off, fences it and
// unmounts the volume from its host before the server recreates it on
// the other host, which mounts it - never both at once - and a file
// written into it on the first host is there on the second, also after
// the first host is back.
func TestHAFenceReleasesSharedFilesystem(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("loop-mounting a volume needs root")
	}
	ctx := context.Background()
	c := haCloud(t)
	shared, dirA, dirB := t.TempDir(), t.TempDir(), t.TempDir()
	if _, err := c.admin.CreateStoragePool(ctx, api.StoragePoolsPost{Name: "nfs", Type: api.PoolSharedDir, Path: shared}); err != nil {
		t.Fatal(err)
	}
	da, db := haSim(t, "hosta"), haSim(t, "hostb")
	var mountA, mountB string
	// After the agents stop (cleanups run last first).
	t.Cleanup(func() {
		if mountA != "" {
			pool.UnmountFS(mountA)
			pool.UnmountFS(mountB)
		}
	})
	a := c.startFencing(da, dirA)
	vol, err := c.admin.CreateVolume(ctx, "default", api.VolumesPost{Name: "files", SizeGiB: 1, Format: api.VolumeExt4, Pool: "nfs", Host: "hosta-0000"})
	if err != nil {
		t.Fatal(err)
	}
	mountA = filepath.Join(dirA, "volumes", "mounts", vol.ID)
	mountB = filepath.Join(dirB, "volumes", "mounts", vol.ID)
	waitFor(t, "the volume to be made", func() bool {
		v, _ := c.admin.Volume(ctx, "default", "files")
		return v.Status == api.VolumeAvailable
	})
	if _, err := c.admin.CreateInstance(ctx, "default", api.InstancesPost{Name: "app", Type: api.TypeContainer, Flavor: "tiny", Image: "x", HA: true}); err != nil {
		t.Fatal(err)
	}
	in := c.waitState("app", api.StateRunning)
	if _, err := c.admin.AttachVolume(ctx, "default", "files", api.VolumeAttach{Instance: "app", Path: "/srv"}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the volume mounted on hosta", func() bool { return pool.IsMount(mountA) })
	if err := os.WriteFile(filepath.Join(mountA, "written-on-hosta"), []byte("kept"), 0o644); err != nil {
		t.Fatal(err)
	}
	c.startFencing(db, dirB)

	a.link.cut.Store(true)
	both := func() {
		if pool.IsMount(mountA) && pool.IsMount(mountB) {
			t.Fatal("the volume is mounted on both hosts")
		}
	}
	waitFor(t, "hosta to fence app and unmount its volume", func() bool {
		both()
		st, err := da.Status(ctx, in.ID)
		return err == nil && st.State == driver.Stopped && !pool.IsMount(mountA)
	})
	waitFor(t, "app RUNNING on hostb with its volume mounted there", func() bool {
		both()
		in := c.instance("app")
		v, _ := c.admin.Volume(ctx, "default", "files")
		return in.State == api.StateRunning && in.Host == "hostb-0000" && v.Attachment != nil && v.Attachment.Attached && v.Attachment.Path == "/srv" && pool.IsMount(mountB)
	})
	if b, err := os.ReadFile(filepath.Join(mountB, "written-on-hosta")); err != nil || string(b) != "kept" {
		t.Fatalf("the file written on hosta, read on hostb: %q %v", b, err)
	}

	a.link.cut.Store(false)
	waitFor(t, "hosta to sweep its fenced copy", func() bool {
		both()
		_, err := da.Status(ctx, in.ID)
		return errors.Is(err, driver.ErrNotFound)
	})
	waitFor(t, "hosta ONLINE", func() bool {
		h, err := c.admin.Host(ctx, "hosta-0000")
		return err == nil && h.State == api.HostOnline
	})
	both()
	if b, err := os.ReadFile(filepath.Join(mountB, "written-on-hosta")); err != nil || string(b) != "kept" || !pool.IsMount(mountB) {
		t.Fatalf("after hosta returned: %q %v (mounted on hostb: %v)", b, err, pool.IsMount(mountB))
	}
}
