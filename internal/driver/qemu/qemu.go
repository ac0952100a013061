// Package qemu is the virtual machine driver: one qemu-system-x86_64
// process per VM, controlled over QMP.
//
// PROLOG makes a qcow2 overlay on the cached base image (copy-on-write,
// grown to the flavor's disk) and a NoCloud seed disk (label cidata:
// meta-data, user-data). BOOT starts qemu in its own session, under a
// seccomp sandbox (no new processes) and in cgroup kumo/<id>, so agent
// restarts never touch it; Recover finds VMs again through their pid files
// and QMP sockets.
//
// The guest runs with -no-shutdown: when it powers itself off, QEMU stays
// and says "shutdown", so a guest poweroff (POWEROFF) is told apart from
// a QEMU that died (FAILED). Stop is an ACPI power-button press, a
// timeout, then quit. Suspend/resume are QMP stop/cont (memory stays on
// the host). Save migrates the whole VM state to a file kumo opens and
// hands QEMU over QMP (fd: migration; QEMU 7.2 has no file: migration and
// the sandbox forbids exec:) and ends the process; Start restores it the
// same way (-incoming defer, then migrate-incoming fd:).
package qemu

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/kumocloud/kumo/api"
	"github.com/kumocloud/kumo/internal/driver"
	"github.com/kumocloud/kumo/internal/driver/local"
	"github.com/kumocloud/kumo/internal/qmp"
)

func init() { driver.Register("qemu", New) }

// Config is the qemu driver's configuration; zero fields take the
// defaults.
type Config struct {
	// Accel is the acceleration (--qemu-accel): auto (the default: KVM if
	// a probe boot under it works, else TCG), kvm or tcg.
	Accel string
	// ReadyTimeout is how long a guest may take to say it is ready before
	// its instance shows ready=false with a reason (default 5 minutes).
	ReadyTimeout time.Duration
	// StopTimeout bounds a graceful stop before it is forced (default 30 s).
	StopTimeout time.Duration
	// MaxUnpacked bounds the bytes one image may unpack to in the host's
	// image cache (--image-max-unpacked; 0: local.DefaultMaxUnpacked).
	MaxUnpacked int64
	// MigrateBandwidthMiB caps what a live migration sent from this host
	// takes of the link, in MiB/s, memory and disk mirror each
	// (--qemu-migrate-bandwidth; 0: QEMU's own default).
	MigrateBandwidthMiB int64
}

// Validate implements driver.Config.
func (c Config) Validate() error {
	switch {
	case c.Accel != "" && c.Accel != "auto" && c.Accel != "kvm" && c.Accel != "tcg":
		return fmt.Errorf("--qemu-accel %q: use auto, kvm or tcg", c.Accel)
	case c.ReadyTimeout < 0 || c.StopTimeout < 0:
		return fmt.Errorf("qemu driver: a timeout cannot be negative (ready %s, stop %s)", c.ReadyTimeout, c.StopTimeout)
	case c.MigrateBandwidthMiB < 0:
		return fmt.Errorf("--qemu-migrate-bandwidth %d: give MiB/s (0: no cap of kumo's)", c.MigrateBandwidthMiB)
	case c.MaxUnpacked < 0:
		return fmt.Errorf("--image-max-unpacked %d: give a size in GiB (0: the default, %d GiB)", c.MaxUnpacked>>30, local.DefaultMaxUnpacked>>30)
	}
	return nil
}

// Driver runs VMs with qemu-system-x86_64.
type Driver struct {
	o       Config
	root    string
	qemu    string
	version string
	host    string
	// cgroups names the instances' cgroups (below --cgroup-parent).
	cgroups local.Cgroups
	accel   string
	// accelReason says why accel was chosen (the probe's verdict).
	accelReason string
	inst        local.Instances
	cache       *local.Cache
	// moved is where a path into the driver's own image cache of an
	// earlier kumo (in a VM's record) is now.
	moved func(string) string
	ready local.Readiness
	// runTag keeps this driver's sockets apart from another's on the
	// same machine (two agents: a migration's source and target hold
	// the same VM id).
	runTag string

	mu    sync.Mutex
	locks map[string]*sync.Mutex
	// serial shares each VM's serial console among its viewers.
	serial serialHubs
}

var _ driver.Driver = (*Driver)(nil)

// New checks qemu and qemu-img, settles the acceleration (probing KVM
// with a real boot for "auto", cut short when ctx ends) and prepares the
// state dir; its images are kept in the machine's shared image cache
// (local.SharedCache), where those of an earlier kumo's own cache
// (STATE_DIR/images) move.
func New(ctx context.Context, c driver.Common, cfg Config) (*Driver, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	bin, err := exec.LookPath("qemu-system-x86_64")
	if err != nil {
		return nil, fmt.Errorf("the qemu driver needs qemu-system-x86_64 (apt-get install qemu-system-x86 qemu-utils genisoimage): %w", err)
	}
	for _, tool := range []string{"qemu-img", "genisoimage"} {
		if _, err := exec.LookPath(tool); err != nil {
			return nil, fmt.Errorf("the qemu driver needs %s (apt-get install qemu-utils genisoimage): %w", tool, err)
		}
	}
	if c.StateDir == "" {
		return nil, errors.New("the qemu driver needs a state dir")
	}
	out, err := exec.CommandContext(ctx, bin, "--version").Output()
	if err != nil {
		return nil, fmt.Errorf("%s --version: %w", bin, err)
	}
	version := strings.TrimPrefix(strings.SplitN(string(out), "\n", 2)[0], "QEMU emulator version ")
	d := &Driver{o: cfg, root: c.StateDir, qemu: bin, version: version, host: c.HostName, locks: map[string]*sync.Mutex{}, cgroups: local.Cgroups{Parent: c.CgroupParent}}
	if abs, err := filepath.Abs(c.StateDir); err == nil {
		sum := sha256.Sum256([]byte(abs))
		d.runTag = hex.EncodeToString(sum[:4])
	}
	if d.host == "" {
		d.host = local.HostName()
	}
	// The probe may first fetch the kernel package: bound it all.
	pctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	d.accel, d.accelReason = ResolveAccelCached(pctx, c.StateDir, bin, cfg.Accel)
	cancel()
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("the qemu driver's KVM probe was cut short: %w", err)
	}
	if d.o.ReadyTimeout == 0 {
		d.o.ReadyTimeout = 5 * time.Minute
	}
	if d.o.StopTimeout == 0 {
		d.o.StopTimeout = 30 * time.Second
	}
	d.inst = local.Instances(filepath.Join(d.root, "instances"))
	if err := os.MkdirAll(filepath.Join(d.root, "instances"), 0o700); err != nil {
		return nil, err
	}
	if d.cache, err = local.SharedCache(c); err != nil {
		return nil, err
	}
	d.cache.Use(d.inst.ImagesInUse)
	// An entry of the old cache was DIR/<sha256> holding what is now the
	// form.
	d.moved = d.cache.Adopt(filepath.Join(d.root, "images"), "", imageForm)
	d.resumeCopies(ctx)
	return d, nil
}

// imageForm is the qemu driver's form of an image in the cache: the
// checked disk, or a vm-kernel bundle's files.
const imageForm = "vm"

// Name implements driver.Driver.
func (d *Driver) Name() string { return "qemu" }

// Capabilities implements driver.Driver: the console log, the serial
// console and the display (VNC), disk snapshots; VMs' NICs are TAPs of the host's datapath.
// No exec: a VM has no guest agent.
func (d *Driver) Capabilities() driver.Capabilities {
	return driver.Same(driver.CapLogs|driver.CapConsole|driver.CapSnapshot|driver.CapNetworks|driver.CapMigrate|driver.CapLiveMigrate, api.TypeVM)
}

// Sync implements driver.Driver: records are written as they change.
func (d *Driver) Sync() error { return nil }

// QEMUOverheadMiB is the memory a VM's QEMU may use besides the guest's:
// its devices, I/O buffers and libraries (a 128 MiB tiny-vm under TCG,
// booted to its shell, peaks at 212 MiB all told).
const QEMUOverheadMiB = 256

// limits are what a VM's cgroup holds its QEMU to: CPU time of its vCPUs
// (a quota of vcpus periods per period: the emulator's own threads share
// it), and the guest's memory plus QEMUOverheadMiB, plus under TCG the
// translation cache, which QEMU 7.2 lets grow to 1 GiB or an eighth of
// the host's memory, whichever is less. It bounds a runaway QEMU; it is
// no reservation.
func (d *Driver) limits(sz api.Size) local.Limits {
	mib := sz.MemoryMiB + QEMUOverheadMiB
	if d.accel == "tcg" {
		mib += min(1024, local.HostFacts(d.root).MemoryMiB/8)
	}
	return local.Limits{VCPUs: max(sz.VCPUs, 1), MemoryBytes: mib << 20}
}

// Hosts implements driver.Driver: this machine, for VMs.
func (d *Driver) Hosts(ctx context.Context) ([]api.HostSpec, error) {
	f := local.HostFacts(d.root)
	attrs := map[string]string{"ARCH": f.Arch, "KERNEL": f.Kernel, "CPU_MODEL": f.CPUModel,
		"HYPERVISOR": "qemu", "QEMU_VERSION": d.version, "ACCEL": d.accel}
	if d.accelReason != "" {
		attrs["ACCEL_REASON"] = driver.Attribute(d.accelReason)
	}
	return []api.HostSpec{{Name: d.host, Kinds: []string{api.TypeVM},
		Capacity: api.Size{VCPUs: f.CPUs, MemoryMiB: f.MemoryMiB, DiskGiB: f.DiskGiB}, Attributes: attrs}}, nil
}

// Want is what the driver last made of a VM; the process's presence is
// checked against it, so a QEMU that vanished is seen as a crash.
type want string

const (
	wantPrepared want = "prepared"
	wantRunning  want = "running"
	wantStopped  want = "stopped"
	wantSaved    want = "saved"
)

// meta is kept per instance in meta.json.
type meta struct {
	Spec driver.Spec `json:"spec"`
	Want want        `json:"want"`
	// Accel the VM was started with: a saved state restores only under
	// the same one.
	Accel string `json:"accel,omitempty"`
	// Reason is why the VM stopped by itself (the guest powered off).
	Reason string `json:"reason,omitempty"`
	// BootAt and BootOffset mark the last start: when, and where the
	// console log stood (readiness is looked for after it).
	BootAt     time.Time `json:"boot_at,omitzero"`
	BootOffset int64     `json:"boot_offset"`
	// Kernel boots: a vm-kernel image's files (else the disk boots).
	Kernel  string `json:"kernel,omitempty"`
	Initrd  string `json:"initrd,omitempty"`
	Cmdline string `json:"cmdline,omitempty"`
	// Base is the cached image disk under the overlay, in BaseFormat: QEMU
	// and qemu-img are given it explicitly, never left to follow a name
	// in a header ("" for none).
	Base       string `json:"base,omitempty"`
	BaseFormat string `json:"base_format,omitempty"`
	// BaseKnown is false for a VM prepared before meta kept its base.
	BaseKnown bool `json:"base_known,omitempty"`
	// PausedForCopy marks a VM paused while its disk is copied (copyDisk):
	// a driver killed before it continued the guest finds it so when
	// opened again (resumeCopies), not suspended forever.
	PausedForCopy bool `json:"paused_for_copy,omitempty"`
}

func (d *Driver) dir(id string) string { return d.inst.Dir(id) }

func (d *Driver) path(id, name string) string { return d.inst.Path(id, name) }

// RunDir holds the VMs' sockets, one directory per VM: a unix socket's
// path must be shorter than 108 bytes, which a state dir deep enough
// (a test's temp dir, a long --data-dir) would exceed.
const RunDir = "/run/kumo/vm"

// sock is a socket of the VM (its directory for ""), under the driver's
// run tag - or where a QEMU started by a kumo from before the tags has it.
func (d *Driver) sock(id, name string) string {
	if pid := d.pid(id); pid != 0 {
		if cmd, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid)); err == nil && bytes.Contains(cmd, []byte("unix:"+filepath.Join(RunDir, id, "qmp.sock"))) {
			return filepath.Join(RunDir, id, name)
		}
	}
	return filepath.Join(RunDir, d.runTag, id, name)
}

// Has implements driver.Driver.
func (d *Driver) Has(id string) bool { return d.inst.Has(id) }

// readMeta reads a VM's record, its paths into an earlier kumo's own
// image cache made paths into the shared one.
func (d *Driver) readMeta(id string) (meta, error) {
	m, err := local.ReadMeta[meta](d.inst, id)
	if err == nil {
		m = d.movePaths(m)
	}
	return m, err
}

func (d *Driver) movePaths(m meta) meta {
	if d.moved != nil {
		m.Base, m.Kernel, m.Initrd = d.moved(m.Base), d.moved(m.Kernel), d.moved(m.Initrd)
	}
	return m
}

func (d *Driver) writeMeta(id string, m meta) error { return local.WriteMeta(d.inst, id, m) }

// lock serializes actions on one VM (QMP takes one client at a time).
func (d *Driver) lock(id string) *sync.Mutex {
	d.mu.Lock()
	defer d.mu.Unlock()
	l := d.locks[id]
	if l == nil {
		l = &sync.Mutex{}
		d.locks[id] = l
	}
	return l
}

// pid returns the VM's QEMU process if it is alive (and is that VM's).
func (d *Driver) pid(id string) int {
	b, err := os.ReadFile(d.path(id, "qemu.pid"))
	if err != nil {
		return 0
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	if pid <= 0 {
		return 0
	}
	cmd, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil || !bytes.Contains(cmd, []byte(d.dir(id))) {
		return 0 // gone, or the pid was reused
	}
	if st, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); err == nil {
		if f := strings.Fields(string(st[bytes.LastIndexByte(st, ')')+1:])); len(f) > 0 && f[0] == "Z" {
			return 0 // a zombie its parent has not reaped yet
		}
	}
	return pid
}

// dial opens the VM's QMP socket.
func (d *Driver) dial(ctx context.Context, id string) (*qmp.Conn, error) {
	c, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	return qmp.Dial(c, d.sock(id, "qmp.sock"))
}

// do runs one QMP command on a VM.
func (d *Driver) do(ctx context.Context, id, cmd string, args, out any) error {
	c, err := d.dial(ctx, id)
	if err != nil {
		return err
	}
	defer c.Close()
	return c.Execute(ctx, cmd, args, out)
}

// qemuState asks QEMU what the guest is doing ("" when no QEMU runs).
func (d *Driver) qemuState(ctx context.Context, id string) (string, error) {
	if d.pid(id) == 0 {
		return "", nil
	}
	c, err := d.dial(ctx, id)
	if err != nil {
		return "", err
	}
	defer c.Close()
	st, err := c.QueryStatus(ctx)
	return st.Status, err
}

// ensureQuit ends the VM's QEMU: quit over QMP, then SIGKILL if it lingers.
func (d *Driver) ensureQuit(ctx context.Context, id string) {
	pid := d.pid(id)
	if pid == 0 {
		return
	}
	qc, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	d.do(qc, id, "quit", nil, nil)
	for i := 0; i < 100 && d.pid(id) != 0; i++ {
		time.Sleep(50 * time.Millisecond)
	}
	if d.pid(id) != 0 {
		syscall.Kill(pid, syscall.SIGKILL)
		for i := 0; i < 100 && d.pid(id) != 0; i++ {
			time.Sleep(20 * time.Millisecond)
		}
	}
}

// Stop implements driver.Driver: an ACPI power-button press, up to
// StopTimeout for the guest to power off, then quit (at once with force).
// Unlike the other actions it does not go through act: a QEMU that does
// not answer is still stopped, by force.
func (d *Driver) Stop(ctx context.Context, id string, force bool) error {
	l := d.lock(id)
	l.Lock()
	defer l.Unlock()
	m, err := d.readMeta(id)
	if err != nil {
		return err
	}
	if m.Want != wantSaved {
		m.Want = wantStopped
	}
	if err := d.writeMeta(id, m); err != nil {
		return err
	}
	st, err := d.qemuState(ctx, id)
	if err == nil && st != "" && st != "shutdown" && !force {
		if st == "paused" {
			d.do(ctx, id, "cont", nil, nil) // a paused guest cannot see the button
		}
		// A press that fails is no reason to keep the VM: quit follows.
		_ = d.powerdown(ctx, id)
	}
	d.ensureQuit(ctx, id)
	d.cgroups.Remove(id)
	return nil
}

// powerdown presses the power button until the guest goes off or
// StopTimeout passes (then quit follows: the forced stop). The press is
// repeated, as Nova does, because a guest still booting misses it.
func (d *Driver) powerdown(ctx context.Context, id string) error {
	c, err := d.dial(ctx, id)
	if err != nil {
		return err
	}
	defer c.Close()
	deadline := time.Now().Add(d.o.StopTimeout)
	for time.Now().Before(deadline) {
		if err := c.Execute(ctx, "system_powerdown", nil, nil); err != nil {
			return err
		}
		wc, cancel := context.WithTimeout(ctx, min(2*time.Second, time.Until(deadline)))
		_, err := c.WaitEvent(wc, "SHUTDOWN")
		cancel()
		if err == nil || ctx.Err() != nil {
			return nil
		}
	}
	return nil
}

// act runs fn on a VM under its lock, with its record and what QEMU says
// the guest is doing ("" when no QEMU runs). A QEMU that is there but does
// not answer is an error: nothing is done to it.
func (d *Driver) act(ctx context.Context, id string, fn func(m meta, qs string) error) error {
	l := d.lock(id)
	l.Lock()
	defer l.Unlock()
	m, err := d.readMeta(id)
	if err != nil {
		return err
	}
	qs, err := d.qemuState(ctx, id)
	if err != nil {
		return err
	}
	return fn(m, qs)
}

// pauseResume moves a VM between running and paused with stop/cont.
func (d *Driver) pauseResume(ctx context.Context, id, cmd, from, to string) error {
	return d.act(ctx, id, func(_ meta, qs string) error {
		switch qs {
		case to:
			return nil
		case from:
			return d.do(ctx, id, cmd, nil, nil)
		}
		return fmt.Errorf("%w: the VM is %s", driver.ErrState, orStopped(qs))
	})
}
func orStopped(st string) string {
	if st == "" || st == "shutdown" {
		return "stopped"
	}
	return st
}

// Suspend implements driver.Driver: QMP stop; memory stays on the host.
func (d *Driver) Suspend(ctx context.Context, id string) error {
	return d.pauseResume(ctx, id, "stop", "running", "paused")
}

// Resume implements driver.Driver: QMP cont.
func (d *Driver) Resume(ctx context.Context, id string) error {
	return d.pauseResume(ctx, id, "cont", "paused", "running")
}

// Reboot implements driver.Driver: a reset of the running VM.
func (d *Driver) Reboot(ctx context.Context, id string) error {
	return d.act(ctx, id, func(m meta, qs string) error {
		if qs != "running" {
			return fmt.Errorf("%w: the VM is %s", driver.ErrState, orStopped(qs))
		}
		if err := d.do(ctx, id, "system_reset", nil, nil); err != nil {
			return err
		}
		m.BootAt, m.BootOffset = time.Now().UTC(), logSize(d.path(id, "console.log"))
		return d.writeMeta(id, m)
	})
}

// Save implements driver.Driver: pause, migrate the whole VM state to a
// file, end the process. The file is written under a temporary name and
// renamed only when QEMU says the migration completed.
func (d *Driver) Save(ctx context.Context, id string) error {
	return d.act(ctx, id, func(m meta, qs string) error {
		if qs != "running" && qs != "paused" {
			return fmt.Errorf("%w: the VM is %s", driver.ErrState, orStopped(qs))
		}
		if err := d.migrateToFile(ctx, id, d.path(id, "state.bin")); err != nil {
			return err
		}
		m.Want, m.Accel = wantSaved, d.accel
		if err := d.writeMeta(id, m); err != nil {
			return err
		}
		d.ensureQuit(ctx, id)
		d.cgroups.Remove(id)
		return nil
	})
}

// migrateToFile pauses the guest and writes its whole state to path
// (under a temporary name, renamed when QEMU says it completed). A failed
// migration lets the guest continue.
func (d *Driver) migrateToFile(ctx context.Context, id, path string) error {
	c, err := d.dial(ctx, id)
	if err != nil {
		return err
	}
	defer c.Close()
	if err := c.Execute(ctx, "stop", nil, nil); err != nil {
		return err
	}
	// kumo opens the file and hands QEMU the descriptor: QEMU runs under
	// a seccomp sandbox that forbids it to spawn the shell an exec:
	// migration would (args).
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		c.Execute(ctx, "cont", nil, nil)
		return err
	}
	err = c.ExecuteWithFile(ctx, "getfd", map[string]any{"fdname": "kumo-save"}, nil, f)
	f.Close()
	if err == nil {
		err = c.Execute(ctx, "migrate", map[string]any{"uri": "fd:kumo-save"}, nil)
	}
	if err != nil {
		os.Remove(tmp)
		c.Execute(ctx, "cont", nil, nil)
		return err
	}
	for {
		var mi struct {
			Status    string `json:"status"`
			ErrorDesc string `json:"error-desc"`
		}
		if err := c.Execute(ctx, "query-migrate", nil, &mi); err != nil {
			return err
		}
		switch mi.Status {
		case "completed":
			return os.Rename(tmp, path)
		case "failed", "cancelled":
			os.Remove(tmp)
			c.Execute(ctx, "cont", nil, nil)
			return fmt.Errorf("saving the VM state: migration %s: %s", mi.Status, mi.ErrorDesc)
		}
		select {
		case <-ctx.Done():
			c.Execute(context.WithoutCancel(ctx), "migrate_cancel", nil, nil)
			os.Remove(tmp)
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// Cleanup implements driver.Driver (EPILOG): the process, overlay, seed,
// sockets and cgroup go; with keepSaved, a saved VM's files stay.
func (d *Driver) Cleanup(ctx context.Context, id string, keepSaved bool) error {
	l := d.lock(id)
	l.Lock()
	defer l.Unlock()
	m, err := d.readMeta(id)
	if errors.Is(err, driver.ErrNotFound) {
		os.RemoveAll(d.dir(id)) // a half-made PROLOG
		os.RemoveAll(d.sock(id, ""))
		return nil
	}
	if err != nil {
		return err
	}
	if keepSaved && m.Want == wantSaved {
		return nil
	}
	d.ensureQuit(ctx, id)
	d.cgroups.Remove(id)
	os.RemoveAll(d.sock(id, ""))
	os.Remove(filepath.Dir(d.sock(id, ""))) // the run tag's dir, once empty
	d.ready.Forget(d.path(id, "console.log"))
	if err := os.RemoveAll(d.dir(id)); err != nil {
		return err
	}
	d.mu.Lock()
	delete(d.locks, id)
	d.mu.Unlock()
	return nil
}

// Status implements driver.Driver.
func (d *Driver) Status(ctx context.Context, id string) (driver.Status, error) {
	m, err := d.readMeta(id)
	if err != nil {
		return driver.Status{}, err
	}
	return d.status(ctx, id, m), nil
}

// status reads a VM's state from QEMU. A VM busy with an action reports
// what the driver last made of it rather than waiting for QMP. A guest
// that powered itself off is reaped here: QEMU is ended and the VM is
// Stopped with the reason.
func (d *Driver) status(ctx context.Context, id string, m meta) driver.Status {
	st := driver.Status{ID: id, Host: m.Spec.Host, Reason: m.Reason}
	l := d.lock(id)
	if !l.TryLock() {
		st.State = map[want]driver.State{wantPrepared: driver.Prepared, wantRunning: driver.Running, wantStopped: driver.Stopped, wantSaved: driver.Saved}[m.Want]
		return st
	}
	defer l.Unlock()
	qs, err := d.qemuState(ctx, id)
	switch {
	case qs == "" && err == nil:
		switch m.Want {
		case wantRunning:
			st.State = driver.Crashed
			tail, _ := local.Tail(d.path(id, "console.log"), 5)
			st.Reason = "qemu exited unexpectedly; console tail: " + oneLine(tail)
		case wantStopped:
			st.State = driver.Stopped
		case wantSaved:
			st.State = driver.Saved
		default:
			st.State = driver.Prepared
		}
		return st
	case qs == "shutdown":
		m.Want, m.Reason = wantStopped, "the guest powered itself off"
		d.writeMeta(id, m)
		d.ensureQuit(ctx, id)
		d.cgroups.Remove(id)
		st.State, st.Reason = driver.Stopped, m.Reason
		return st
	case qs == "paused" || qs == "finish-migrate" || qs == "postmigrate":
		st.State = driver.Suspended
	default:
		// running, or QMP did not answer (QEMU is alive: it runs).
		st.State = driver.Running
	}
	st.CPUSeconds, st.MemoryMiB = d.cgroups.Usage(id)
	st.Ready = d.ready.Check(d.path(id, "console.log"), m.BootOffset)
	if !st.Ready && !m.BootAt.IsZero() && time.Since(m.BootAt) > d.o.ReadyTimeout {
		tail, _ := local.Tail(d.path(id, "console.log"), 5)
		st.ReadyReason = fmt.Sprintf("the guest did not say it was ready within %s; console tail: %s", d.o.ReadyTimeout, oneLine(tail))
	}
	return st
}

// oneLine joins a console tail into one line for a reason.
func oneLine(b []byte) string {
	s := strings.Join(strings.Fields(strings.ToValidUTF8(string(b), "?")), " ")
	if len(s) > 400 {
		s = "..." + s[len(s)-400:]
	}
	if s == "" {
		return "(empty)"
	}
	return s
}

// Recover implements driver.Driver: every VM in the state dir, as QEMU
// says it is. Running VMs are never touched.
func (d *Driver) Recover(ctx context.Context) ([]driver.Status, error) {
	ids, err := d.inst.IDs()
	if err != nil {
		return nil, err
	}
	var out []driver.Status
	for _, id := range ids {
		if m, err := d.readMeta(id); err == nil {
			out = append(out, d.status(ctx, id, m))
		}
	}
	return out, nil
}

// Logs implements driver.Logger: the end of the serial console.
func (d *Driver) Logs(ctx context.Context, id string, tail int) ([]byte, error) {
	if _, err := d.readMeta(id); err != nil {
		return nil, err
	}
	return local.Tail(d.path(id, "console.log"), tail)
}

func logSize(path string) int64 {
	if st, err := os.Stat(path); err == nil {
		return st.Size()
	}
	return 0
}
