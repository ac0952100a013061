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
)

func init() {
	driver.Register("sim", func(o driver.Options) (driver.Driver, error) { return New(o) })
}

type instance struct {
	Spec  driver.Spec  `json:"spec"`
	State driver.State `json:"state"`
	Since time.Time    `json:"since"`
}

// Driver is the simulator.
type Driver struct {
	o      driver.Options
	syncMu sync.Mutex // one Sync at a time
	mu     sync.Mutex
	insts  map[string]*instance
	down   map[string]bool
	rng    *rand.Rand
	dirty  bool
	path   string
}

var _ driver.Driver = (*Driver)(nil)

// New makes a simulator, loading what an earlier run left in StateDir.
func New(o driver.Options) (*Driver, error) {
	if o.SimHosts <= 0 {
		o.SimHosts = 1
	}
	if o.SimPrefix == "" {
		o.SimPrefix = "sim"
	}
	if o.SimCPUs == 0 {
		o.SimCPUs = 16
	}
	if o.SimMemoryMiB == 0 {
		o.SimMemoryMiB = 65536
	}
	if o.SimDiskGiB == 0 {
		o.SimDiskGiB = 1000
	}
	d := &Driver{o: o, insts: map[string]*instance{}, down: map[string]bool{}, rng: rand.New(rand.NewSource(o.SimSeed))}
	if o.StateDir != "" {
		if err := os.MkdirAll(o.StateDir, 0o700); err != nil {
			return nil, err
		}
		d.path = filepath.Join(o.StateDir, "sim-instances.json")
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

// HostName is the name of simulated host i.
func (d *Driver) HostName(i int) string { return fmt.Sprintf("%s-%04d", d.o.SimPrefix, i) }

// Hosts implements driver.Driver.
func (d *Driver) Hosts(ctx context.Context) ([]api.HostSpec, error) {
	out := make([]api.HostSpec, d.o.SimHosts)
	for i := range out {
		attrs := map[string]string{"ARCH": "x86_64", "CPU_MODEL": "simulated", "KERNEL": "sim", "RACK": fmt.Sprintf("r%d", i%4+1)}
		for k, v := range d.o.SimLabels {
			attrs[k] = v
		}
		out[i] = api.HostSpec{Name: d.HostName(i), Kinds: []string{api.TypeVM, api.TypeContainer},
			Capacity: api.Size{VCPUs: d.o.SimCPUs, MemoryMiB: d.o.SimMemoryMiB, DiskGiB: d.o.SimDiskGiB}, Attributes: attrs}
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
	if err := d.sleep(ctx, d.o.SimBootDelay); err != nil {
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
	if d.o.SimFailRate > 0 && d.rng.Float64() < d.o.SimFailRate {
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
		if err := d.sleep(ctx, d.o.SimStopDelay); err != nil {
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
	if err := d.sleep(ctx, d.o.SimBootDelay); err != nil {
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

// Sync implements driver.Syncer: the instance table is written to the
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
