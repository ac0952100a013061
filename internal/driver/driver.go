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
	"time"
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
	// Recover lists every instance the driver has, after an agent restart;
	// it must never stop any of them.
	Recover(ctx context.Context) ([]Status, error)
}

// Syncer is implemented by drivers that keep state in files: Sync makes
// what was done so far survive a crash of the agent. The agent syncs before
// it reports.
type Syncer interface{ Sync() error }

// Execer is implemented by drivers that can run a command inside an
// instance: its output (stdout and stderr together) goes to out as the
// command writes it, never held whole; it returns the exit code.
type Execer interface {
	Exec(ctx context.Context, id string, cmd []string, out io.Writer) (int, error)
}

// Logger is implemented by drivers that keep an instance's console log; it
// returns the last tail lines.
type Logger interface {
	Logs(ctx context.Context, id string, tail int) ([]byte, error)
}

// Consoler is implemented by drivers that can join a byte stream to an
// interactive shell (or serial console) of an instance, until either ends.
type Consoler interface {
	Console(ctx context.Context, id string, rw io.ReadWriter) error
}

// Feature returns a driver's optional feature (Execer, Logger,
// Consoler), or an error that says the driver lacks it - the one wording
// users see, whether the driver stands alone or in a Combine.
func Feature[F any](d Driver) (F, error) {
	f, ok := d.(F)
	if ok {
		return f, nil
	}
	what := "cannot do this"
	switch any(&f).(type) {
	case *Execer:
		what = "cannot run commands inside an instance (VMs have no guest agent: use the console)"
	case *Logger:
		what = "keeps no console log"
	case *Consoler:
		what = "has no console"
	case *Snapshotter:
		what = "cannot snapshot disks"
	}
	return f, fmt.Errorf("the %s driver %s", d.Name(), what)
}

// Haver is implemented by drivers that can tell cheaply whether they have
// an instance (a record on disk), without asking the runtime as Status does.
type Haver interface{ Has(id string) bool }

// Snapshotter is implemented by drivers that can copy an instance's disk
// into a standalone image written to w: a qcow2 disk for instances booted
// from a disk, a vm-kernel tarball (kernel, initrd, cmdline, the disk)
// for those booted from a kernel image.
type Snapshotter interface {
	Snapshot(ctx context.Context, id string, w io.Writer) error
}

// HostHealth is implemented by drivers that can lose a host (the
// simulator's crash injection): the agent stops beating for hosts down.
type HostHealth interface{ HostUp(name string) bool }

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

// Options configure a driver.
type Options struct {
	// StateDir is where the driver keeps its files.
	StateDir string
	// Sim settings.
	SimHosts     int
	SimPrefix    string
	SimCPUs      int64
	SimMemoryMiB int64
	SimDiskGiB   int64
	SimBootDelay time.Duration
	SimStopDelay time.Duration
	SimFailRate  float64
	SimSeed      int64
	SimLabels    map[string]string
	// QemuAccel is the qemu driver's acceleration: auto (the default:
	// KVM if a probe boot under it works, else TCG), kvm or tcg.
	QemuAccel string
	// ReadyTimeout is how long a guest may take to say it is ready before
	// its instance shows ready=false with a reason (default 5 minutes).
	ReadyTimeout time.Duration
	// StopTimeout bounds a graceful stop before it is forced (default 30 s).
	StopTimeout time.Duration
	// HostName overrides the name of a single-host driver's host.
	HostName string
	// MaxUnpacked bounds the bytes one image may unpack to in the host's
	// image cache (0: local.DefaultMaxUnpacked).
	MaxUnpacked int64
	// FetchImage returns an image's bytes by sha256 (the agent fetches
	// them from the API).
	FetchImage func(ctx context.Context, sha256 string) (io.ReadCloser, error)
}

// Factory makes a driver.
type Factory func(Options) (Driver, error)

var (
	mu       sync.Mutex
	registry = map[string]Factory{}
)

// Register adds a driver factory under its name.
func Register(name string, f Factory) {
	mu.Lock()
	defer mu.Unlock()
	registry[name] = f
}

// Open makes the drivers named in a list ("container,qemu"), each keeping
// its state in base/<name>, and combines them: one host offering every
// kind they run.
func Open(names, base string, o Options) (Driver, error) {
	var ds []Driver
	for _, n := range strings.Split(names, ",") {
		o.StateDir = filepath.Join(base, strings.TrimSpace(n))
		d, err := New(strings.TrimSpace(n), o)
		if err != nil {
			return nil, err
		}
		ds = append(ds, d)
	}
	return Combine(ds...), nil
}

// New makes the named driver.
func New(name string, o Options) (Driver, error) {
	mu.Lock()
	f, ok := registry[name]
	mu.Unlock()
	if !ok {
		return nil, fmt.Errorf("no driver %q (have: %v)", name, Names())
	}
	return f(o)
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
