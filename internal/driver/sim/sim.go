// Package sim is the simulated driver: any number of hosts in one process,
// no real work, configurable boot and stop delays, and failure injection
// (a share of starts fail; hosts can crash). It keeps its instances in a
// file, so an agent restart finds them again as a real driver would.
//
// A simulated guest is ready (Status.Ready) as soon as it runs: its boot
// delay has passed by then, so create-to-ready can be measured against
// the simulator ('kumo bench provision --ready'), and the agent does not
// watch every simulated guest as one still booting.
package sim

import (
	"bytes"
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
	// take (--sim-boot-delay, --sim-stop-delay); a guest is ready once it
	// runs, that is once its boot delay has passed.
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
	// changed are the instances changed since the last Sync; the state
	// dir keeps a snapshot of the table and a journal of changes since it,
	// so a Sync costs what changed, not the whole table (at 100,000
	// instances, writing the table after every report batch was most of
	// the work of a provisioning run).
	changed   map[string]bool
	journaled int // changes in the journal since the snapshot
	dir       string
}

var _ driver.Driver = (*Driver)(nil)

// New makes a simulator, loading what an earlier run left in the state
// dir (none: nothing is kept).
func New(ctx context.Context, c driver.Common, cfg Config) (*Driver, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	o := cfg.withDefaults()
	d := &Driver{o: o, insts: map[string]*instance{}, down: map[string]bool{}, rng: rand.New(rand.NewSource(o.Seed)), changed: map[string]bool{}, dir: c.StateDir}
	if c.StateDir != "" {
		if err := os.MkdirAll(c.StateDir, 0o700); err != nil {
			return nil, err
		}
		insts, n, err := load(c.StateDir)
		if err != nil {
			return nil, err
		}
		d.insts, d.journaled = insts, n
	}
	return d, nil
}

// Files of the state dir: the table as of the last snapshot, and the
// changes since, one JSON line each ({"id": ..., "instance": ... or null
// once it is gone}).
const (
	snapshotFile = "sim-instances.json"
	journalFile  = "sim-journal.jsonl"
)

type journalLine struct {
	ID       string    `json:"id"`
	Instance *instance `json:"instance"`
}

// Instance is what the simulator keeps of an instance, as Instances reads
// it back (tests check what a simulated host runs).
type Instance struct {
	Host  string
	State driver.State
}

// Instances reads what the simulator of a state dir has, as a restart
// would find it.
func Instances(stateDir string) (map[string]Instance, error) {
	insts, _, err := load(stateDir)
	out := make(map[string]Instance, len(insts))
	for id, in := range insts {
		out[id] = Instance{Host: in.Spec.Host, State: in.State}
	}
	return out, err
}

// load reads the snapshot and replays the journal over it; a last line
// cut short by a crash was never synced, so it is not applied.
func load(dir string) (map[string]*instance, int, error) {
	insts := map[string]*instance{}
	b, err := os.ReadFile(filepath.Join(dir, snapshotFile))
	if err == nil {
		if err := json.Unmarshal(b, &insts); err != nil {
			return nil, 0, fmt.Errorf("sim state %s: %w", filepath.Join(dir, snapshotFile), err)
		}
	} else if !os.IsNotExist(err) {
		return nil, 0, err
	}
	j, err := os.ReadFile(filepath.Join(dir, journalFile))
	if err != nil && !os.IsNotExist(err) {
		return nil, 0, err
	}
	n := 0
	for _, line := range bytes.Split(j, []byte("\n")) {
		var jl journalLine
		if len(line) == 0 || json.Unmarshal(line, &jl) != nil || jl.ID == "" {
			continue
		}
		if jl.Instance == nil {
			delete(insts, jl.ID)
		} else {
			insts[jl.ID] = jl.Instance
		}
		n++
	}
	return insts, n, nil
}

// Name implements driver.Driver.
func (d *Driver) Name() string { return "sim" }

// Capabilities implements driver.Driver: a log of what was simulated, and
// hosts that crash; no exec, console or snapshot, and networks are only
// simulated (no datapath). Instances migrate; like the real drivers'
// (no CRIU for containers), only VMs migrate live.
func (d *Driver) Capabilities() driver.Capabilities {
	c := driver.CapLogs | driver.CapHostHealth | driver.CapMigrate
	return driver.Capabilities{api.TypeVM: c | driver.CapLiveMigrate, api.TypeContainer: c}
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
	d.insts[id].State, d.insts[id].Since = st, time.Now()
	d.changed[id] = true
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
		d.changed[id] = true
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

// status is what Status and Recover report of an instance. A running
// guest is ready: Start returns only once the boot delay has passed, so
// there is no booting guest to tell apart (a real guest says it is ready
// on its console some time after its process starts).
func (d *Driver) status(in *instance) driver.Status {
	st := driver.Status{ID: in.Spec.ID, Host: in.Spec.Host, State: in.State, Ready: in.State == driver.Running}
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

// Sync implements driver.Driver: what changed since the last Sync is
// appended to the journal and synced to disk; once the journal holds as
// many changes as the table has instances (and at least 1,000), a new
// snapshot replaces both.
func (d *Driver) Sync() error {
	d.syncMu.Lock()
	defer d.syncMu.Unlock()
	d.mu.Lock()
	if len(d.changed) == 0 || d.dir == "" {
		d.mu.Unlock()
		return nil
	}
	changed := d.changed
	d.changed = map[string]bool{}
	compact := d.journaled+len(changed) >= max(1000, len(d.insts))
	var b []byte
	var err error
	if compact {
		b, err = json.Marshal(d.insts)
	} else {
		var buf bytes.Buffer
		for id := range changed {
			var in *instance
			if cur, ok := d.insts[id]; ok {
				c := *cur
				in = &c
			}
			line, _ := json.Marshal(journalLine{ID: id, Instance: in})
			buf.Write(append(line, '\n'))
		}
		b = buf.Bytes()
	}
	d.mu.Unlock()
	if err == nil {
		if compact {
			err = d.snapshot(b)
		} else {
			err = d.appendJournal(b)
		}
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if err != nil {
		for id := range changed { // written again by the next Sync
			d.changed[id] = true
		}
		return err
	}
	if compact {
		d.journaled = 0
	} else {
		d.journaled += len(changed)
	}
	return nil
}

// snapshot replaces the table and empties the journal, in that order: a
// crash between the two replays changes the snapshot already holds, which
// is harmless.
func (d *Driver) snapshot(table []byte) error {
	if err := atomicfile.Write(filepath.Join(d.dir, snapshotFile), table, 0o600); err != nil {
		return err
	}
	if err := os.Truncate(filepath.Join(d.dir, journalFile), 0); err != nil && !os.IsNotExist(err) {
		return err
	}
	return nil
}

func (d *Driver) appendJournal(lines []byte) error {
	f, err := os.OpenFile(filepath.Join(d.dir, journalFile), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(lines); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
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
