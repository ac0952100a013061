// Package container is the system-container driver: OCI bundles built
// with runtime-spec types and run by runc, an overlayfs per instance on a
// read-only, cached image rootfs (100 containers share one copy) with its
// writable layer on an ext4 disk of the flavor's size, cgroup limits from
// the flavor, Docker's default seccomp profile and no user namespaces
// (unless the flavor allows nesting), the image's /sbin/init as PID 1,
// and user-data written into the rootfs for init to run once.
//
// Containers run in their own session, so agent restarts never touch
// them; Recover finds them again from the driver's state dir and runc.
// Stop saves the filesystem, not memory (there is no CRIU here): a
// STOPPED container starts again from its kept upper layer.
package container

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/kumocloud/kumo/api"
	"github.com/kumocloud/kumo/internal/driver"
	"github.com/kumocloud/kumo/internal/driver/local"
)

func init() { driver.Register("container", New) }

// Config is the container driver's configuration; zero fields take the
// defaults.
type Config struct {
	// MaxUnpacked bounds the bytes one image may unpack to in the host's
	// image cache (--image-max-unpacked; 0: local.DefaultMaxUnpacked).
	MaxUnpacked int64
}

// Validate implements driver.Config.
func (c Config) Validate() error {
	if c.MaxUnpacked < 0 {
		return fmt.Errorf("--image-max-unpacked %d: give a size in GiB (0: the default, %d GiB)", c.MaxUnpacked>>30, local.DefaultMaxUnpacked>>30)
	}
	return nil
}

// Driver runs containers with runc.
type Driver struct {
	o    Config
	root string // state dir
	runc string
	mkfs string
	host string
	// cgroups names the instances' cgroups (below --cgroup-parent).
	cgroups local.Cgroups
	inst    local.Instances
	cache   *local.Cache
	ready   local.Readiness
}

var _ driver.Driver = (*Driver)(nil)

// New checks runc and mkfs.ext4 and prepares the state dir; its images
// are kept in the machine's shared image cache (local.SharedCache), where
// those of an earlier kumo's own cache (STATE_DIR/images) move.
func New(ctx context.Context, c driver.Common, cfg Config) (*Driver, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	runc, err := sbinTool("runc")
	if err != nil {
		return nil, fmt.Errorf("the container driver needs runc (apt-get install runc): %w", err)
	}
	mkfs, err := sbinTool("mkfs.ext4")
	if err != nil {
		return nil, fmt.Errorf("the container driver needs mkfs.ext4 for containers' disks (apt-get install e2fsprogs): %w", err)
	}
	if c.StateDir == "" {
		return nil, errors.New("the container driver needs a state dir")
	}
	d := &Driver{o: cfg, root: c.StateDir, runc: runc, mkfs: mkfs, host: c.HostName, cgroups: local.Cgroups{Parent: c.CgroupParent}}
	if d.host == "" {
		d.host = local.HostName()
	}
	d.inst = local.Instances(filepath.Join(d.root, "instances"))
	for _, sub := range []string{"instances", "runc"} {
		if err := os.MkdirAll(filepath.Join(d.root, sub), 0o700); err != nil {
			return nil, err
		}
	}
	if d.cache, err = local.SharedCache(c); err != nil {
		return nil, err
	}
	d.cache.Use(d.inst.ImagesInUse)
	// An entry of the old cache was DIR/<sha256>/rootfs: the same form.
	d.cache.Adopt(filepath.Join(d.root, "images"), imageForm, imageForm)
	d.thawDisks()
	return d, nil
}

// imageForm is the container driver's form of an image in the cache: the
// unpacked rootfs.
const imageForm = "rootfs"

// sbinTool finds a program that Debian puts in /usr/sbin or /sbin, which
// a user's PATH may lack.
func sbinTool(name string) (string, error) {
	p, err := exec.LookPath(name)
	if err == nil {
		return p, nil
	}
	for _, dir := range []string{"/usr/sbin", "/sbin", "/usr/local/sbin", "/usr/bin"} {
		if _, serr := os.Stat(filepath.Join(dir, name)); serr == nil {
			return filepath.Join(dir, name), nil
		}
	}
	return "", err
}

// Name implements driver.Driver.
func (d *Driver) Name() string { return "container" }

// Capabilities implements driver.Driver: exec, logs and a console for
// containers; their network namespaces are wired by the host's datapath.
// No disk snapshots yet.
func (d *Driver) Capabilities() driver.Capabilities {
	return driver.Same(driver.CapExec|driver.CapLogs|driver.CapConsole|driver.CapNetworks|driver.CapMigrate, api.TypeContainer)
}

// Sync implements driver.Driver: records are written as they change.
func (d *Driver) Sync() error { return nil }

// Hosts implements driver.Driver: this machine.
func (d *Driver) Hosts(ctx context.Context) ([]api.HostSpec, error) {
	f := local.HostFacts(d.root)
	return []api.HostSpec{{Name: d.host, Kinds: []string{api.TypeContainer},
		Capacity:   api.Size{VCPUs: f.CPUs, MemoryMiB: f.MemoryMiB, DiskGiB: f.DiskGiB},
		Attributes: map[string]string{"ARCH": f.Arch, "KERNEL": f.Kernel, "CPU_MODEL": f.CPUModel, "RUNTIME": "runc"}}}, nil
}

func (d *Driver) dir(id string) string { return d.inst.Dir(id) }

// meta is kept per instance.
type meta struct {
	Spec  driver.Spec `json:"spec"`
	Saved bool        `json:"saved"`
	// BootOffset is where the console log stood at the last start:
	// readiness is looked for after it.
	BootOffset int64 `json:"boot_offset,omitempty"`
}

// Has implements driver.Driver.
func (d *Driver) Has(id string) bool { return d.inst.Has(id) }

func (d *Driver) readMeta(id string) (meta, error) { return local.ReadMeta[meta](d.inst, id) }

func (d *Driver) writeMeta(id string, m meta) error { return local.WriteMeta(d.inst, id, m) }

// image returns the cached, read-only rootfs of an image (100
// containers of one image share one copy).
func (d *Driver) image(ctx context.Context, s driver.Spec) (string, error) {
	return d.cache.Get(ctx, s.Image, s.ImageSHA256, imageForm, func(blob, rootfs string) error {
		f, err := os.Open(blob)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := os.Chmod(rootfs, 0o755); err != nil {
			return err
		}
		return local.Extract(f, true, rootfs, d.o.MaxUnpacked)
	})
}

// Prepare implements driver.Driver: image cache, disk, overlay, the
// files kumo gives the guest, bundle. Nothing is left when it fails.
func (d *Driver) Prepare(ctx context.Context, s driver.Spec) (err error) {
	if _, err := d.readMeta(s.ID); err == nil {
		return nil
	}
	lower, err := d.image(ctx, s)
	if err != nil {
		return err
	}
	dir := d.dir(s.ID)
	defer func() {
		if err != nil { // nothing half-made stays behind
			d.unmountAll(s.ID)
			os.RemoveAll(dir)
		}
	}()
	for _, sub := range []string{"disk", "rootfs"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o700); err != nil {
			return err
		}
	}
	if s.RootDisk != "" {
		err = d.takeRootDisk(ctx, s)
		s.RootDisk = "" // taken: not the instance's to keep
	} else {
		err = d.makeDisk(ctx, s.ID, s.Size.DiskGiB)
	}
	if err != nil {
		return err
	}
	if err := d.mount(s.ID, lower); err != nil {
		return err
	}
	if err := writeGuestFiles(d.rootfs(s.ID), s); err != nil {
		return err
	}
	if err := d.writeBundle(s); err != nil {
		return err
	}
	return d.writeMeta(s.ID, meta{Spec: s})
}

// writeGuestFiles writes what kumo tells the guest into its rootfs: the
// hostname, the user-data (for init to run once) and, with networks, the
// name servers. The rootfs is tenant content: each file is written
// through a handle of the rootfs, resolved inside it as the guest would
// see it, and replaces (never follows) a link at its name.
func writeGuestFiles(rootfs string, s driver.Spec) error {
	root, err := local.OpenRoot(rootfs)
	if err != nil {
		return err
	}
	defer root.Close()
	if err := root.WriteGuestFile("etc/hostname", []byte(s.Name+"\n"), 0o644); err != nil {
		return err
	}
	if s.UserData != "" {
		if err := root.WriteGuestFile("var/lib/kumo/user-data", []byte(s.UserData), 0o600); err != nil {
			return err
		}
	}
	if dns := resolvConf(s.NICs); dns != "" {
		if err := root.WriteGuestFile("etc/resolv.conf", []byte(dns), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// mount mounts the instance's disk and its overlay, those not mounted yet.
func (d *Driver) mount(id, lower string) error {
	if err := d.mountDisk(id); err != nil {
		return err
	}
	if isMount(d.rootfs(id)) {
		return nil
	}
	up := d.upperRoot(id)
	opts := fmt.Sprintf("lowerdir=%s,upperdir=%s,workdir=%s", lower, filepath.Join(up, "upper"), filepath.Join(up, "work"))
	if err := unix.Mount("overlay", d.rootfs(id), "overlay", 0, opts); err != nil {
		return fmt.Errorf("overlay mount: %w", err)
	}
	return nil
}

// runcCmd runs runc with the driver's own state root.
func (d *Driver) runcCmd(ctx context.Context, args ...string) ([]byte, error) {
	full := append([]string{"--root", filepath.Join(d.root, "runc")}, args...)
	cmd := exec.CommandContext(ctx, d.runc, full...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return out, fmt.Errorf("runc %s: %v: %s", args[0], err, strings.TrimSpace(string(out)))
	}
	return out, nil
}

// state asks runc; "" when runc has no such container.
func (d *Driver) state(ctx context.Context, id string) string {
	out, err := d.runcCmd(ctx, "state", id)
	if err != nil {
		return ""
	}
	var st struct {
		Status string `json:"status"`
	}
	json.Unmarshal(out, &st)
	return st.Status
}

// Start implements driver.Driver.
func (d *Driver) Start(ctx context.Context, s driver.Spec) error {
	m, err := d.readMeta(s.ID)
	if err != nil {
		return err
	}
	switch d.state(ctx, s.ID) {
	case "running":
		return nil
	}
	if m, err = d.withVolumes(m, s); err != nil {
		return err
	}
	switch d.state(ctx, s.ID) {
	case "paused":
		return fmt.Errorf("%w: suspended (resume it)", driver.ErrState)
	case "stopped", "created":
		d.runcCmd(ctx, "delete", "--force", s.ID)
	}
	if !isMount(d.rootfs(s.ID)) || !d.diskMounted(s.ID) {
		lower, err := d.image(ctx, m.Spec)
		if err != nil {
			return err
		}
		if err := d.mount(s.ID, lower); err != nil {
			return err
		}
	}
	log, err := os.OpenFile(filepath.Join(d.dir(s.ID), "console.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer log.Close()
	if st, err := log.Stat(); err == nil {
		m.BootOffset = st.Size()
	}
	cmd := exec.Command(d.runc, "--root", filepath.Join(d.root, "runc"), "run", "--detach", "--bundle", d.dir(s.ID), s.ID)
	cmd.Stdout, cmd.Stderr = log, log
	// Its own session: an agent restart (or its process group dying)
	// leaves the container alone.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Run(); err != nil {
		tail, _ := os.ReadFile(filepath.Join(d.dir(s.ID), "console.log"))
		return fmt.Errorf("runc run: %v: %s", err, lastLine(string(tail)))
	}
	m.Saved = false
	return d.writeMeta(s.ID, m)
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}

// Stop implements driver.Driver: SIGTERM, up to 10 s, then SIGKILL.
func (d *Driver) Stop(ctx context.Context, id string, force bool) error {
	if _, err := d.readMeta(id); err != nil {
		return err
	}
	st := d.state(ctx, id)
	if st == "" || st == "stopped" {
		if st == "stopped" {
			d.runcCmd(ctx, "delete", "--force", id)
		}
		return nil
	}
	if st == "paused" {
		d.runcCmd(ctx, "resume", id)
	}
	if !force {
		d.runcCmd(ctx, "kill", id, "TERM")
		deadline := time.Now().Add(10 * time.Second)
		for time.Now().Before(deadline) && d.state(ctx, id) == "running" {
			time.Sleep(50 * time.Millisecond)
		}
	}
	if d.state(ctx, id) == "running" {
		d.runcCmd(ctx, "kill", id, "KILL")
	}
	_, err := d.runcCmd(ctx, "delete", "--force", id)
	return err
}

func (d *Driver) runcOn(ctx context.Context, verb, id, want string) error {
	if _, err := d.readMeta(id); err != nil {
		return err
	}
	st := d.state(ctx, id)
	if st == want {
		return nil
	}
	if st != map[string]string{"paused": "running", "running": "paused"}[want] {
		return fmt.Errorf("%w: container is %s", driver.ErrState, orStopped(st))
	}
	_, err := d.runcCmd(ctx, verb, id)
	return err
}

func orStopped(st string) string {
	if st == "" {
		return "stopped"
	}
	return st
}

// Suspend implements driver.Driver (the freezer).
func (d *Driver) Suspend(ctx context.Context, id string) error {
	return d.runcOn(ctx, "pause", id, "paused")
}

// Resume implements driver.Driver.
func (d *Driver) Resume(ctx context.Context, id string) error {
	return d.runcOn(ctx, "resume", id, "running")
}

// Reboot implements driver.Driver.
func (d *Driver) Reboot(ctx context.Context, id string) error {
	m, err := d.readMeta(id)
	if err != nil {
		return err
	}
	if d.state(ctx, id) != "running" {
		return fmt.Errorf("%w: container is %s", driver.ErrState, orStopped(d.state(ctx, id)))
	}
	if err := d.Stop(ctx, id, false); err != nil {
		return err
	}
	return d.Start(ctx, m.Spec)
}

// Save implements driver.Driver: the processes end, the filesystem stays.
func (d *Driver) Save(ctx context.Context, id string) error {
	m, err := d.readMeta(id)
	if err != nil {
		return err
	}
	if st := d.state(ctx, id); st != "running" && st != "paused" {
		return fmt.Errorf("%w: container is %s", driver.ErrState, orStopped(st))
	}
	if err := d.Stop(ctx, id, false); err != nil {
		return err
	}
	m.Saved = true
	return d.writeMeta(id, m)
}

// Cleanup implements driver.Driver: no runc state, mount or cgroup is left.
func (d *Driver) Cleanup(ctx context.Context, id string, keepSaved bool) error {
	m, err := d.readMeta(id)
	if errors.Is(err, driver.ErrNotFound) {
		// A PROLOG cut short (the agent died in it) may have left mounts.
		d.runcCmd(ctx, "delete", "--force", id)
		if err := d.unmountAll(id); err != nil {
			return err
		}
		return os.RemoveAll(d.dir(id))
	}
	if err != nil {
		return err
	}
	if keepSaved && m.Saved {
		// The host is freed of mounts and the loop device; the disk
		// image (the container's files) stays for Start.
		return d.unmountAll(id)
	}
	d.runcCmd(ctx, "delete", "--force", id)
	if err := d.unmountAll(id); err != nil {
		return err
	}
	d.ready.Forget(filepath.Join(d.dir(id), "console.log"))
	return os.RemoveAll(d.dir(id))
}

// Status implements driver.Driver.
func (d *Driver) Status(ctx context.Context, id string) (driver.Status, error) {
	m, err := d.readMeta(id)
	if err != nil {
		return driver.Status{}, err
	}
	return d.status(id, m, d.state(ctx, id)), nil
}

// status turns runc's word for a container into the driver's.
func (d *Driver) status(id string, m meta, runcState string) driver.Status {
	st := driver.Status{ID: id, Host: m.Spec.Host}
	switch runcState {
	case "running":
		st.State = driver.Running
	case "paused":
		st.State = driver.Suspended
	case "created":
		st.State = driver.Prepared
	default:
		st.State = driver.Stopped
		if m.Saved {
			st.State = driver.Saved
		} else if _, err := os.Stat(filepath.Join(d.dir(id), "console.log")); errors.Is(err, os.ErrNotExist) {
			st.State = driver.Prepared
		}
	}
	st.CPUSeconds, st.MemoryMiB = d.cgroups.Usage(id)
	if st.State == driver.Running {
		st.Ready = d.ready.Check(filepath.Join(d.dir(id), "console.log"), m.BootOffset)
	}
	return st
}

// states asks runc once for every container it knows.
func (d *Driver) states(ctx context.Context) (map[string]string, error) {
	out, err := d.runcCmd(ctx, "list", "--format", "json")
	if err != nil {
		return nil, err
	}
	var list []struct {
		ID     string `json:"id"`
		Status string `json:"status"`
	}
	if err := json.Unmarshal(out, &list); err != nil {
		return nil, fmt.Errorf("runc list: %w", err)
	}
	m := make(map[string]string, len(list))
	for _, c := range list {
		m[c.ID] = c.Status
	}
	return m, nil
}

// Recover implements driver.Driver.
func (d *Driver) Recover(ctx context.Context) ([]driver.Status, error) {
	ids, err := d.inst.IDs()
	if err != nil {
		return nil, err
	}
	// One runc call for all of them: agents call this on every check.
	states, err := d.states(ctx)
	if err != nil {
		return nil, err
	}
	var out []driver.Status
	for _, id := range ids {
		if m, err := d.readMeta(id); err == nil {
			out = append(out, d.status(id, m, states[id]))
		}
	}
	return out, nil
}

// Exec implements driver.Execer with runc exec.
func (d *Driver) Exec(ctx context.Context, id string, cmd []string, out io.Writer) (int, error) {
	if _, err := d.readMeta(id); err != nil {
		return 0, err
	}
	if st := d.state(ctx, id); st != "running" {
		return 0, fmt.Errorf("%w: container is %s", driver.ErrState, orStopped(st))
	}
	c := exec.CommandContext(ctx, d.runc, append([]string{"--root", filepath.Join(d.root, "runc"), "exec", id}, cmd...)...)
	c.Stdout, c.Stderr = out, out
	err := c.Run()
	var ee *exec.ExitError
	if errors.As(err, &ee) && ctx.Err() == nil {
		return ee.ExitCode(), nil
	}
	return 0, err
}

// Logs implements driver.Logger: the end of PID 1's output (rotated at
// 1 MiB).
func (d *Driver) Logs(ctx context.Context, id string, tail int) ([]byte, error) {
	if _, err := d.readMeta(id); err != nil {
		return nil, err
	}
	return local.Tail(filepath.Join(d.dir(id), "console.log"), tail)
}
