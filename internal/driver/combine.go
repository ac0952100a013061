package driver

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/kumocloud/kumo/api"
)

// Combine makes one driver of several that run on the same machine (the
// container and qemu drivers): their hosts of the same name merge into one
// host offering every kind, with the capacity counted once - the memory
// and cores are the same ones - so the scheduler packs VMs and containers
// against one budget. Work on an instance goes to the driver of its type
// (Prepare, Start) or to the one that has it; the capabilities are each
// driver's for the types it runs (and the union where two run one type).
func Combine(ds ...Driver) Driver {
	if len(ds) == 1 {
		return ds[0]
	}
	c := &combined{ds: ds, caps: Capabilities{}, kinds: map[string]Driver{}}
	for _, d := range ds {
		for typ, cp := range d.Capabilities() {
			c.caps[typ] |= cp
			if _, ok := c.kinds[typ]; !ok {
				c.kinds[typ] = d
			}
		}
	}
	return c
}

type combined struct {
	ds    []Driver
	caps  Capabilities
	kinds map[string]Driver // instance type -> the first driver that runs it
}

var (
	_ Driver      = (*combined)(nil)
	_ Execer      = (*combined)(nil)
	_ Logger      = (*combined)(nil)
	_ Consoler    = (*combined)(nil)
	_ Snapshotter = (*combined)(nil)
	_ HostHealth  = (*combined)(nil)
)

func (c *combined) Name() string {
	var names []string
	for _, d := range c.ds {
		names = append(names, d.Name())
	}
	return strings.Join(names, ",")
}

func (c *combined) Capabilities() Capabilities { return c.caps }

func (c *combined) Hosts(ctx context.Context) ([]api.HostSpec, error) {
	var out []api.HostSpec
	at := map[string]int{}
	for _, d := range c.ds {
		hs, err := d.Hosts(ctx)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", d.Name(), err)
		}
		for _, h := range hs {
			i, ok := at[h.Name]
			if !ok {
				at[h.Name] = len(out)
				h.Attributes = mapsClone(h.Attributes)
				out = append(out, h)
				continue
			}
			for _, k := range h.Kinds {
				if !slices.Contains(out[i].Kinds, k) {
					out[i].Kinds = append(out[i].Kinds, k)
				}
			}
			for k, v := range h.Attributes {
				if _, has := out[i].Attributes[k]; !has {
					out[i].Attributes[k] = v
				}
			}
		}
	}
	return out, nil
}

func mapsClone(m map[string]string) map[string]string {
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// forType is the driver that runs this type of instance, as the drivers
// declared in their capabilities.
func (c *combined) forType(typ string) (Driver, error) {
	if d, ok := c.kinds[typ]; ok {
		return d, nil
	}
	return nil, fmt.Errorf("no driver here runs %q instances", typ)
}

// owner is the driver that has the instance, as its records say.
func (c *combined) owner(id string) (Driver, error) {
	for _, d := range c.ds {
		if d.Has(id) {
			return d, nil
		}
	}
	return nil, ErrNotFound
}

func (c *combined) Has(id string) bool {
	_, err := c.owner(id)
	return err == nil
}

func (c *combined) Prepare(ctx context.Context, s Spec) error {
	d, err := c.forType(s.Type)
	if err != nil {
		return err
	}
	return d.Prepare(ctx, s)
}

func (c *combined) Start(ctx context.Context, s Spec) error {
	d, err := c.forType(s.Type)
	if err != nil {
		return err
	}
	return d.Start(ctx, s)
}

func (c *combined) on(ctx context.Context, id string, fn func(Driver) error) error {
	d, err := c.owner(id)
	if err != nil {
		return err
	}
	return fn(d)
}

func (c *combined) Stop(ctx context.Context, id string, force bool) error {
	return c.on(ctx, id, func(d Driver) error { return d.Stop(ctx, id, force) })
}

func (c *combined) Suspend(ctx context.Context, id string) error {
	return c.on(ctx, id, func(d Driver) error { return d.Suspend(ctx, id) })
}

func (c *combined) Resume(ctx context.Context, id string) error {
	return c.on(ctx, id, func(d Driver) error { return d.Resume(ctx, id) })
}

func (c *combined) Reboot(ctx context.Context, id string) error {
	return c.on(ctx, id, func(d Driver) error { return d.Reboot(ctx, id) })
}

func (c *combined) Save(ctx context.Context, id string) error {
	return c.on(ctx, id, func(d Driver) error { return d.Save(ctx, id) })
}

// Cleanup asks every driver: each is idempotent for what it lacks.
func (c *combined) Cleanup(ctx context.Context, id string, keepSaved bool) error {
	var errs []error
	for _, d := range c.ds {
		errs = append(errs, d.Cleanup(ctx, id, keepSaved))
	}
	return errors.Join(errs...)
}

func (c *combined) Status(ctx context.Context, id string) (Status, error) {
	d, err := c.owner(id)
	if err != nil {
		return Status{}, err
	}
	return d.Status(ctx, id)
}

func (c *combined) Recover(ctx context.Context) ([]Status, error) {
	var out []Status
	for _, d := range c.ds {
		sts, err := d.Recover(ctx)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", d.Name(), err)
		}
		out = append(out, sts...)
	}
	return out, nil
}

func (c *combined) Sync() error {
	var errs []error
	for _, d := range c.ds {
		errs = append(errs, d.Sync())
	}
	return errors.Join(errs...)
}

func (c *combined) Exec(ctx context.Context, id string, cmd []string, out io.Writer) (int, error) {
	ex, err := featureOf[Execer](c, id)
	if err != nil {
		return 0, err
	}
	return ex.Exec(ctx, id, cmd, out)
}

func (c *combined) Logs(ctx context.Context, id string, tail int) ([]byte, error) {
	lg, err := featureOf[Logger](c, id)
	if err != nil {
		return nil, err
	}
	return lg.Logs(ctx, id, tail)
}

func (c *combined) Console(ctx context.Context, id, kind string, t Terminal) (int, error) {
	cs, err := featureOf[Consoler](c, id)
	if err != nil {
		return NoExit, err
	}
	return cs.Console(ctx, id, kind, t)
}

// featureOf is the optional feature of the driver that has the instance,
// if it declares it.
func featureOf[F any](c *combined, id string) (F, error) {
	d, err := c.owner(id)
	if err != nil {
		var none F
		return none, err
	}
	return Feature[F](d)
}

func (c *combined) Snapshot(ctx context.Context, id string, w io.Writer) error {
	sn, err := featureOf[Snapshotter](c, id)
	if err != nil {
		return err
	}
	return sn.Snapshot(ctx, id, w)
}

// HostUp implements HostHealth: a host is up while every driver that can
// lose hosts says it is.
func (c *combined) HostUp(name string) bool {
	for _, d := range c.ds {
		if hh, err := Feature[HostHealth](d); err == nil && !hh.HostUp(name) {
			return false
		}
	}
	return true
}
