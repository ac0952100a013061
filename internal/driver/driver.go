// Package driver is the contract between the agent and what really runs
// instances (QEMU, runc, or the simulator), and the registry of drivers by
// name. The contract is narrow and context-first; every driver passes the
// drivertest conformance suite.
package driver

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/kumocloud/kumo/api"
	"github.com/kumocloud/kumo/internal/validate"
)

// ErrNotFound says the driver has no such instance.
var ErrNotFound = errors.New("driver: no such instance")

// ErrState says the instance is not in a state that allows this.
var ErrState = errors.New("driver: wrong state for this")

// Spec is what a driver needs to run an instance.
type Spec struct {
	ID      string
	Project string
	Name    string
	Type    string
	Host    string
	Image   string
	// ImageSHA256 names the image's bytes (drivers fetch them by it).
	ImageSHA256 string
	UserData    string
	Size        api.Size
	// NetNS is a container's network namespace, made and wired by the
	// agent (empty: a namespace of its own with loopback only).
	NetNS string
	// NICs are the instance's ports, already plugged on the host: a VM
	// opens each TAP device by name.
	NICs []NIC
	// Nesting lets a container make user namespaces (and, inside them,
	// the namespaces and mounts a nested container runtime needs); from
	// its flavor, which only cloud admins make. Drivers without the notion
	// ignore it.
	Nesting bool
	// Volumes are the persistent volumes attached to the instance
	// (volumes.go).
	Volumes []Volume `json:",omitempty"`
	// BootVolume is the id of the volume in Volumes that is a VM's root
	// disk (device vda): it boots from it, and PROLOG makes no disk of
	// its own. Only VMs have one (the API refuses it for containers).
	BootVolume string `json:",omitempty"`
	// RootDisk is a file holding the instance's root disk, restored from
	// a backup (RootDiskCopier): Prepare makes the instance's own of it
	// instead of a new one.
	RootDisk string `json:",omitempty"`
}

// NIC is one port of an instance as a driver needs it.
type NIC struct {
	Device  string // host-side device: a TAP for VMs
	MAC     string
	Address string // CIDR form, e.g. 10.20.0.5/24
	Gateway string
	DNS     []string
	// Domain is the network's DNS domain (app.kumo.internal), where the
	// network's DNS server (one of DNS) answers its instances' names: a
	// guest searches it so that short names resolve.
	Domain string
	MTU    int
}

// State is what the driver sees of an instance.
type State string

// Driver states.
const (
	Prepared  State = "prepared"  // PROLOG done, not started
	Running   State = "running"   //
	Suspended State = "suspended" // paused, memory kept on the host
	Stopped   State = "stopped"   // powered off, disks kept
	Saved     State = "saved"     // state saved to disk, host resources freed
	// Crashed: the instance's process died without being asked to and
	// without its guest powering off (Reason says what is known).
	Crashed State = "crashed"
)

// Status is one instance as the driver sees it.
type Status struct {
	ID         string
	Host       string
	State      State
	CPUSeconds float64
	MemoryMiB  int64
	// Reason says why a Stopped instance stopped by itself or why one
	// Crashed.
	Reason string
	// Ready: the guest said it is up (a readiness line on its console);
	// ReadyReason says why it is not when it should be by now.
	Ready       bool
	ReadyReason string
}

// Driver runs instances on the hosts it brings.
type Driver interface {
	// Name is the registry name ("sim", "container", "qemu").
	Name() string
	// Capabilities says what the driver can do beyond the lifecycle, for
	// each instance type its hosts run. Callers ask it, never the name.
	Capabilities() Capabilities
	// Hosts fingerprints the hosts this driver brings: capacity, kinds,
	// attributes (ARCH, CPU_MODEL, KERNEL...).
	Hosts(ctx context.Context) ([]api.HostSpec, error)
	// Prepare is PROLOG: disks, rootfs, contextualization. Idempotent.
	Prepare(ctx context.Context, s Spec) error
	// Start is BOOT from prepared or stopped. Starting a running instance
	// is a no-op.
	Start(ctx context.Context, s Spec) error
	// Stop powers off: gracefully, or at once with force. Idempotent.
	Stop(ctx context.Context, id string, force bool) error
	// Suspend pauses a running instance; Resume continues it.
	Suspend(ctx context.Context, id string) error
	Resume(ctx context.Context, id string) error
	// Reboot restarts a running instance.
	Reboot(ctx context.Context, id string) error
	// Save writes a running or suspended instance's state to disk and
	// frees the host (Start restores it).
	Save(ctx context.Context, id string) error
	// Cleanup is EPILOG: remove everything of the instance from the host
	// (a saved state is kept when keepSaved). Idempotent.
	Cleanup(ctx context.Context, id string, keepSaved bool) error
	// Status reports one instance (ErrNotFound if the driver has none).
	Status(ctx context.Context, id string) (Status, error)
	// Has says whether the driver has a record of the instance, from its
	// own records (no runtime is asked, as Status does).
	Has(id string) bool
	// Recover lists every instance the driver has, after an agent restart;
	// it must never stop any of them.
	Recover(ctx context.Context) ([]Status, error)
	// Sync makes what was done so far survive a crash of the agent (the
	// agent syncs before it reports); drivers that write their records as
	// they go have nothing to do.
	Sync() error
}

// Capability is something a driver may do beyond the lifecycle; a set of
// them is a Capability too. Each but CapNetworks comes with an optional
// interface the driver implements (Feature hands it out).
type Capability uint

// The capabilities.
const (
	// CapExec: run a command inside an instance (Execer).
	CapExec Capability = 1 << iota
	// CapLogs: an instance's console log (Logger).
	CapLogs
	// CapConsole: an interactive console (Consoler).
	CapConsole
	// CapSnapshot: an instance's disk as a standalone image (Snapshotter).
	CapSnapshot
	// CapNetworks: instances' ports are real devices on the host (TAPs,
	// network namespaces), so the agent needs the host's network
	// datapath; without it networks are only simulated.
	CapNetworks
	// CapHostHealth: hosts can go down while the agent runs (HostHealth).
	CapHostHealth
	// CapMigrate: instances move cold to another host (Migrator).
	CapMigrate
	// CapLiveMigrate: running instances move live (LiveMigrator).
	CapLiveMigrate
)

var capNames = []string{"exec", "logs", "console", "snapshot", "networks", "host-health", "migrate", "live-migrate"}

// Has says whether c holds every capability of want.
func (c Capability) Has(want Capability) bool { return c&want == want }

// String lists the capabilities ("exec,logs"; "none").
func (c Capability) String() string {
	out := c.Names()
	if len(out) == 0 {
		return "none"
	}
	return strings.Join(out, ",")
}

// Capabilities are a driver's capabilities per instance type it runs
// (api.TypeVM, api.TypeContainer). A driver declares one entry for every
// kind its hosts offer, usually the same for each (Same): Feature, which is asked
// before any instance is known, goes by what any type can do, and only
// Combine, which routes each call to the driver of the instance, tells
// types apart.
type Capabilities map[string]Capability

// Any is what the driver can do for some type of instance.
func (cs Capabilities) Any() Capability {
	var all Capability
	for _, c := range cs {
		all |= c
	}
	return all
}

// Same declares one set of capabilities for each of types.
func Same(c Capability, types ...string) Capabilities {
	cs := Capabilities{}
	for _, t := range types {
		cs[t] = c
	}
	return cs
}

// Execer is the optional feature of CapExec: run a command inside an
// instance, its output (stdout and stderr together) going to out as the
// command writes it, never held whole; it returns the exit code.
type Execer interface {
	Exec(ctx context.Context, id string, cmd []string, out io.Writer) (int, error)
}

// Logger is the optional feature of CapLogs: the last tail lines of an
// instance's console log.
type Logger interface {
	Logs(ctx context.Context, id string, tail int) ([]byte, error)
}

// Snapshotter is the optional feature of CapSnapshot: copy an instance's
// disk into a standalone image written to w - a qcow2 disk for instances
// booted from a disk, a vm-kernel tarball (kernel, initrd, cmdline, the
// disk) for those booted from a kernel image.
type Snapshotter interface {
	Snapshot(ctx context.Context, id string, w io.Writer) error
}

// HostHealth is the optional feature of CapHostHealth (the simulator's
// crash injection): the agent stops beating for hosts down.
type HostHealth interface{ HostUp(name string) bool }

// Feature returns a driver's optional feature (Execer, Logger, Consoler,
// Snapshotter, HostHealth) if the driver declares its capability, or an
// error that says the driver lacks it - the one wording users see,
// whether the driver stands alone or in a Combine (where the call goes on
// to the driver of the instance, which says so in the same words).
func Feature[F any](d Driver) (F, error) {
	var f F
	c, what := featureCap(&f)
	if !d.Capabilities().Any().Has(c) {
		return f, fmt.Errorf("the %s driver %s", d.Name(), what)
	}
	f, ok := d.(F)
	if !ok { // drivertest catches this
		return f, fmt.Errorf("the %s driver declares %s but does not implement it", d.Name(), c)
	}
	return f, nil
}

// featureCap is the capability of an optional feature and how its lack
// is told.
func featureCap(f any) (Capability, string) {
	switch f.(type) {
	case *Execer:
		return CapExec, "cannot run commands inside an instance (VMs have no guest agent: use the console)"
	case *Logger:
		return CapLogs, "keeps no console log"
	case *Consoler:
		return CapConsole, "has no console"
	case *Snapshotter:
		return CapSnapshot, "cannot snapshot disks"
	case *HostHealth:
		return CapHostHealth, "cannot lose hosts"
	case *Migrator:
		return CapMigrate, "cannot migrate instances"
	case *LiveMigrator:
		return CapLiveMigrate, "cannot migrate running instances live"
	}
	panic(fmt.Sprintf("driver.Feature of %T: not an optional feature", f))
}

// Attribute makes a host attribute's value of text such as an error
// message: printable (control characters dropped) and at most 255 bytes,
// as the server takes attributes (labels' rules).
func Attribute(s string) string {
	s = strings.Map(func(r rune) rune {
		if validate.Control(r) {
			return -1
		}
		return r
	}, strings.ToValidUTF8(s, "?"))
	for len(s) > 255 {
		_, size := utf8.DecodeLastRuneInString(s)
		s = s[:len(s)-size]
	}
	return s
}

// ImageSource gives an image's bytes by sha256 (the agent's connection
// fetches them from the image service). The caller verifies the hash.
type ImageSource interface {
	FetchImage(ctx context.Context, sha256 string) (io.ReadCloser, error)
}

// ImageFunc is a function that is an ImageSource.
type ImageFunc func(ctx context.Context, sha256 string) (io.ReadCloser, error)

// FetchImage implements ImageSource.
func (f ImageFunc) FetchImage(ctx context.Context, sha256 string) (io.ReadCloser, error) {
	return f(ctx, sha256)
}

// Common is what every driver is given by the agent that runs it, besides
// its own Config.
type Common struct {
	// StateDir is where the driver keeps its files.
	StateDir string
	// HostName overrides the name of a single-host driver's host (default:
	// the machine's host name).
	HostName string
	// Images gives image bytes by sha256 (nil: the driver has no images).
	Images ImageSource
	// Shared is what the drivers opened together for one machine share
	// (nil: the driver stands alone).
	Shared *Shared
	// CgroupParent is the cgroup, below each hierarchy's root, that a
	// driver running processes makes its instances' cgroups in
	// (--cgroup-parent; "": local.DefaultCgroupParent, "kumo").
	CgroupParent string
}

// Shared holds what the drivers opened together for one machine share -
// the container and qemu drivers' image cache, one directory and one
// eviction budget - each thing made once, by the first driver that asks
// (as containerd's plugins find the ones they depend on).
type Shared struct {
	// Dir is where shared things keep their files: the directory the
	// drivers' own state dirs are in.
	Dir string

	mu     sync.Mutex
	things map[string]any
}

// Share returns the thing kept in s under key, made by mk the first
// time (a failed make is tried again by the next caller). With no Shared,
// every caller gets a thing of its own.
func Share[T any](s *Shared, key string, mk func() (T, error)) (T, error) {
	if s == nil {
		return mk()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if t, ok := s.things[key]; ok {
		return t.(T), nil
	}
	t, err := mk()
	if err != nil {
		return t, err
	}
	if s.things == nil {
		s.things = map[string]any{}
	}
	s.things[key] = t
	return t, nil
}

// Config is a driver's own configuration: a type of the driver's package
// (sim.Config, qemu.Config, container.Config) whose zero fields mean its
// defaults.
type Config interface {
	// Validate says what is wrong with the settings, naming the flag that
	// sets each.
	Validate() error
}

// Configs are drivers' configurations by registry name; a driver without
// one runs with its defaults.
type Configs map[string]Config

// configAs is a driver's own configuration out of cfg: its defaults (the
// zero C) when cfg is nil.
func configAs[C Config](name string, cfg Config) (C, error) {
	var c C
	switch v := any(cfg).(type) {
	case nil:
		return c, nil
	case C:
		return v, nil
	case *C:
		return *v, nil
	}
	return c, fmt.Errorf("the %s driver takes a %T, not a %T", name, c, cfg)
}

// factory makes a driver. The context bounds what the driver does to
// start (the qemu driver's KVM probe): an agent stopped meanwhile stops it.
type factory func(ctx context.Context, c Common, cfg Config) (Driver, error)

var (
	mu       sync.Mutex
	registry = map[string]factory{}
)

// Register adds a driver's constructor under its name: New and Open
// call it with the common settings and the driver's own configuration
// (its defaults when none is given; another driver's is refused). The
// context bounds what the driver does to start (the qemu driver's KVM
// probe): an agent stopped meanwhile stops it.
func Register[C Config, D Driver](name string, newDriver func(ctx context.Context, c Common, cfg C) (D, error)) {
	mu.Lock()
	defer mu.Unlock()
	registry[name] = func(ctx context.Context, c Common, cfg Config) (Driver, error) {
		own, err := configAs[C](name, cfg)
		if err != nil {
			return nil, err
		}
		return newDriver(ctx, c, own)
	}
}

// Open makes the drivers named in a list ("container,qemu"), each keeping
// its state in c.StateDir/<name> and sharing what they share (Shared) in
// c.StateDir, and combines them: one host offering every kind they run.
// Every configuration is checked before any driver is made.
func Open(ctx context.Context, names string, c Common, cfgs Configs) (Driver, error) {
	var list []string
	for _, n := range strings.Split(names, ",") {
		n = strings.TrimSpace(n)
		if _, err := lookup(n); err != nil {
			return nil, err
		}
		if cfg := cfgs[n]; cfg != nil {
			if err := cfg.Validate(); err != nil {
				return nil, err
			}
		}
		list = append(list, n)
	}
	base := c.StateDir
	if c.Shared == nil {
		c.Shared = &Shared{Dir: base}
	}
	var ds []Driver
	for _, n := range list {
		c.StateDir = filepath.Join(base, n)
		d, err := New(ctx, n, c, cfgs[n])
		if err != nil {
			return nil, err
		}
		ds = append(ds, d)
	}
	return Combine(ds...), nil
}

// New makes the named driver.
func New(ctx context.Context, name string, c Common, cfg Config) (Driver, error) {
	f, err := lookup(name)
	if err != nil {
		return nil, err
	}
	return f(ctx, c, cfg)
}

func lookup(name string) (factory, error) {
	mu.Lock()
	f, ok := registry[name]
	mu.Unlock()
	if !ok {
		return nil, fmt.Errorf("no driver %q (have: %v)", name, Names())
	}
	return f, nil
}

// Names lists the registered drivers.
func Names() []string {
	mu.Lock()
	defer mu.Unlock()
	var out []string
	for n := range registry {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}
