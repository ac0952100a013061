// Package sim is the simulated driver: any number of hosts in one process,
// no real work, configurable boot and stop delays, and failure injection
// (a share of starts fail; hosts can crash). It keeps its instances in a
// file, so an agent restart finds them again as a real driver would.
package sim

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/kumocloud/kumo/api"
	"github.com/kumocloud/kumo/internal/atomicfile"
	"github.com/kumocloud/kumo/internal/driver"
	"github.com/kumocloud/kumo/internal/validate"
)

func init() { driver.Register("sim", New) }

// Config is the simulator's configuration ('kumo agent --driver sim
// --sim-...'); zero fields take the defaults of DefaultConfig.
type Config struct {
	Hosts     int    // --sim-hosts: how many hosts
	Prefix    string // --sim-prefix: hosts are PREFIX-0000, PREFIX-0001...
	CPUs      int64  // --sim-cpus: cores per host
	MemoryMiB int64  // --sim-memory
	DiskGiB   int64  // --sim-disk
	// BootDelay and StopDelay are how long a boot and a graceful stop
	// take (--sim-boot-delay, --sim-stop-delay).
	BootDelay, StopDelay time.Duration
	// FailRate is the share of boots that fail (--sim-fail-rate, 0-1).
	FailRate float64
	// Seed seeds the failure injection.
	Seed int64
	// Labels are attributes every host has besides the simulated ones.
	Labels map[string]string
}

// DefaultConfig is the simulator's defaults: one host of 16 cores, 64 GiB
// of memory and 1000 GiB of disk, named sim-0000.
func DefaultConfig() Config {
	return Config{Hosts: 1, Prefix: "sim", CPUs: 16, MemoryMiB: 65536, DiskGiB: 1000}
}

// Validate implements driver.Config.
func (c Config) Validate() error {
	switch {
	case c.Hosts < 0:
		return fmt.Errorf("--sim-hosts %d: give how many hosts to simulate (1 or more)", c.Hosts)
	case c.CPUs < 0 || c.MemoryMiB < 0 || c.DiskGiB < 0:
		return fmt.Errorf("--sim-cpus %d, --sim-memory %d, --sim-disk %d: a host's size cannot be negative", c.CPUs, c.MemoryMiB, c.DiskGiB)
	case c.BootDelay < 0 || c.StopDelay < 0:
		return fmt.Errorf("--sim-boot-delay %s, --sim-stop-delay %s: a delay cannot be negative", c.BootDelay, c.StopDelay)
	case c.FailRate < 0 || c.FailRate > 1 || c.FailRate != c.FailRate:
		return fmt.Errorf("--sim-fail-rate %g: give a share of boots between 0 and 1", c.FailRate)
	case c.Prefix != "" && validate.Name("--sim-prefix", c.Prefix+"-0000") != nil:
		return fmt.Errorf("--sim-prefix %q: host names are PREFIX-0000, a name of lower-case letters, digits and '-' up to %d characters", c.Prefix, validate.MaxNameLen)
	}
	return nil
}

// withDefaults fills the zero fields.
func (c Config) withDefaults() Config {
	def := DefaultConfig()
	if c.Hosts == 0 {
		c.Hosts = def.Hosts
	}
	if c.Prefix == "" {
		c.Prefix = def.Prefix
	}
	if c.CPUs == 0 {
		c.CPUs = def.CPUs
	}
	if c.MemoryMiB == 0 {
		c.MemoryMiB = def.MemoryMiB
	}
	if c.DiskGiB == 0 {
		c.DiskGiB = def.DiskGiB
	}
	return c
}

type instance struct {
	Spec  driver.Spec  `json:"spec"`
	State driver.State `json:"state"`
	Since time.Time    `json:"since"`
}

// Driver is the simulator.
type Driver struct {
	o      Config
	syncMu sync.Mutex // one Sync at a time
	mu     sync.Mutex
	insts  map[string]*instance
	down   map[string]bool
	rng    *rand.Rand
	dirty  bool
	path   string
}

var _ driver.Driver = (*Driver)(nil)

// New makes a simulator, loading what an earlier run left in the state
// dir (none: nothing is kept).
func New(ctx context.Context, c driver.Common, cfg Config) (*Driver, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	o := cfg.withDefaults()
	d := &Driver{o: o, insts: map[string]*instance{}, down: map[string]bool{}, rng: rand.New(rand.NewSource(o.Seed))}
	if c.StateDir != "" {
		if err := os.MkdirAll(c.StateDir, 0o700); err != nil {
			return nil, err
		}
		d.path = filepath.Join(c.StateDir, "sim-instances.json")
		b, err := os.ReadFile(d.path)
		if err == nil {
			if err := json.Unmarshal(b, &d.insts); err != nil {
				return nil, fmt.Errorf("sim state %s: %w", d.path, err)
			}
		} else if !os.IsNotExist(err) {
			return nil, err
		}
	}
	return d, nil
}

// Name implements driver.Driver.
func (d *Driver) Name() string { return "sim" }

// Capabilities implements driver.Driver: a log of what was simulated, and
// hosts that crash; no exec, console or snapshot, and networks are only
// simulated (no datapath).
func (d *Driver) Capabilities() driver.Capabilities {
	return driver.Same(driver.CapLogs|driver.CapHostHealth, api.TypeVM, api.TypeContainer)
}

// Has implements driver.Driver.
func (d *Driver) Has(id string) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	_, ok := d.insts[id]
	return ok
}

// HostName is the name of simulated host i.
func (d *Driver) HostName(i int) string { return fmt.Sprintf("%s-%04d", d.o.Prefix, i) }

// Hosts implements driver.Driver.
func (d *Driver) Hosts(ctx context.Context) ([]api.HostSpec, error) {
	out := make([]api.HostSpec, d.o.Hosts)
	for i := range out {
		attrs := map[string]string{"ARCH": "x86_64", "CPU_MODEL": "simulated", "KERNEL": "sim", "RACK": fmt.Sprintf("r%d", i%4+1)}
		for k, v := range d.o.Labels {
			attrs[k] = v
		}
		out[i] = api.HostSpec{Name: d.HostName(i), Kinds: []string{api.TypeVM, api.TypeContainer},
			Capacity: api.Size{VCPUs: d.o.CPUs, MemoryMiB: d.o.MemoryMiB, DiskGiB: d.o.DiskGiB}, Attributes: attrs}
	}
	return out, nil
}

// Crash takes a host down (its instances stop being reported, its
// heartbeats stop) or brings it back.
func (d *Driver) Crash(host string, down bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.down[host] = down
}

// HostUp implements driver.HostHealth.
func (d *Driver) HostUp(host string) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return !d.down[host]
}

func (d *Driver) sleep(ctx context.Context, t time.Duration) error {
	if t <= 0 {
		return nil
	}
	select {
	case <-time.After(t):
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (d *Driver) set(id string, st driver.State) {
	d.insts[id].State, d.insts[id].Since, d.dirty = st, time.Now(), true
}

// Prepare implements driver.Driver.
func (d *Driver) Prepare(ctx context.Context, s driver.Spec) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, ok := d.insts[s.ID]; !ok {
		d.insts[s.ID] = &instance{Spec: s}
		d.set(s.ID, driver.Prepared)
	}
	return nil
}

// Start implements driver.Driver.
func (d *Driver) Start(ctx context.Context, s driver.Spec) error {
	if err := d.sleep(ctx, d.o.BootDelay); err != nil {
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	in, ok := d.insts[s.ID]
	if !ok {
		return driver.ErrNotFound
	}
	switch in.State {
	case driver.Running:
		return nil
	case driver.Suspended:
		return fmt.Errorf("%w: suspended (resume it)", driver.ErrState)
	}
	if d.o.FailRate > 0 && d.rng.Float64() < d.o.FailRate {
		return fmt.Errorf("simulated boot failure on %s", s.Host)
	}
	d.set(s.ID, driver.Running)
	return nil
}

func (d *Driver) change(id string, from []driver.State, to driver.State) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	in, ok := d.insts[id]
	if !ok {
		return driver.ErrNotFound
	}
	if in.State == to {
		return nil
	}
	for _, f := range from {
		if in.State == f {
			d.set(id, to)
			return nil
		}
	}
	return fmt.Errorf("%w: instance is %s", driver.ErrState, in.State)
}

// Stop implements driver.Driver.
func (d *Driver) Stop(ctx context.Context, id string, force bool) error {
	if !force {
		if err := d.sleep(ctx, d.o.StopDelay); err != nil {
			return err
		}
	}
	return d.change(id, []driver.State{driver.Running, driver.Suspended, driver.Prepared, driver.Saved}, driver.Stopped)
}

// Suspend implements driver.Driver.
func (d *Driver) Suspend(ctx context.Context, id string) error {
	return d.change(id, []driver.State{driver.Running}, driver.Suspended)
}

// Resume implements driver.Driver.
func (d *Driver) Resume(ctx context.Context, id string) error {
	return d.change(id, []driver.State{driver.Suspended}, driver.Running)
}

// Reboot implements driver.Driver.
func (d *Driver) Reboot(ctx context.Context, id string) error {
	if err := d.sleep(ctx, d.o.BootDelay); err != nil {
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	in, ok := d.insts[id]
	if !ok {
		return driver.ErrNotFound
	}
	if in.State != driver.Running {
		return fmt.Errorf("%w: instance is %s", driver.ErrState, in.State)
	}
	d.set(id, driver.Running)
	return nil
}

// Save implements driver.Driver.
func (d *Driver) Save(ctx context.Context, id string) error {
	return d.change(id, []driver.State{driver.Running, driver.Suspended}, driver.Saved)
}

// Cleanup implements driver.Driver.
func (d *Driver) Cleanup(ctx context.Context, id string, keepSaved bool) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if in, ok := d.insts[id]; ok {
		if keepSaved && in.State == driver.Saved {
			return nil
		}
		delete(d.insts, id)
		d.dirty = true
	}
	return nil
}

// Status implements driver.Driver.
func (d *Driver) Status(ctx context.Context, id string) (driver.Status, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	in, ok := d.insts[id]
	if !ok || d.down[in.Spec.Host] {
		return driver.Status{}, driver.ErrNotFound
	}
	return d.status(in), nil
}

func (d *Driver) status(in *instance) driver.Status {
	st := driver.Status{ID: in.Spec.ID, Host: in.Spec.Host, State: in.State}
	if in.State == driver.Running || in.State == driver.Suspended {
		st.MemoryMiB = in.Spec.Size.MemoryMiB
	}
	if in.State == driver.Running {
		st.CPUSeconds = time.Since(in.Since).Seconds() * 0.01 * float64(in.Spec.Size.VCPUs)
	}
	return st
}

// Recover implements driver.Driver.
func (d *Driver) Recover(ctx context.Context) ([]driver.Status, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make([]driver.Status, 0, len(d.insts))
	for _, in := range d.insts {
		if !d.down[in.Spec.Host] {
			out = append(out, d.status(in))
		}
	}
	return out, nil
}

// Sync implements driver.Driver: the instance table is written to the
// state dir (atomically) if it changed.
func (d *Driver) Sync() error {
	d.syncMu.Lock()
	defer d.syncMu.Unlock()
	d.mu.Lock()
	if !d.dirty || d.path == "" {
		d.mu.Unlock()
		return nil
	}
	b, err := json.Marshal(d.insts)
	d.dirty = false
	d.mu.Unlock()
	if err != nil {
		return err
	}
	if err = atomicfile.Write(d.path, b, 0o600); err != nil {
		d.mu.Lock()
		d.dirty = true
		d.mu.Unlock()
	}
	return err
}

// Logs implements driver.Logger: the simulator's story of the instance.
func (d *Driver) Logs(ctx context.Context, id string, tail int) ([]byte, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	in, ok := d.insts[id]
	if !ok {
		return nil, driver.ErrNotFound
	}
	return []byte(fmt.Sprintf("sim: %s on %s is %s since %s\n", in.Spec.Name, in.Spec.Host, in.State, in.Since.UTC().Format(time.RFC3339))), nil
}
