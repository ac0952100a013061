package driver

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"

	"github.com/kumocloud/kumo/api"
)

// Combine makes one driver of several that run on the same machine (the
// container and qemu drivers): their hosts of the same name merge into one
// host offering every kind, with the capacity counted once - the memory
// and cores are the same ones - so the scheduler packs VMs and containers
// against one budget. Work on an instance goes to the driver of its type
// (Prepare, Start) or to the one that has it.
func Combine(ds ...Driver) Driver {
	if len(ds) == 1 {
		return ds[0]
	}
	return &combined{ds: ds}
}

type combined struct {
	ds []Driver

	mu    sync.Mutex
	kinds map[string]Driver // instance type -> its driver, learnt once
}

var _ Driver = (*combined)(nil)

func (c *combined) Name() string {
	var names []string
	for _, d := range c.ds {
		names = append(names, d.Name())
	}
	return strings.Join(names, ",")
}

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

// forType is the driver whose hosts run this kind of instance (asked of
// the drivers once: their kinds do not change).
func (c *combined) forType(ctx context.Context, typ string) (Driver, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if d, ok := c.kinds[typ]; ok {
		return d, nil
	}
	for _, d := range c.ds {
		hs, err := d.Hosts(ctx)
		if err == nil && len(hs) > 0 && slices.Contains(hs[0].Kinds, typ) {
			if c.kinds == nil {
				c.kinds = map[string]Driver{}
			}
			c.kinds[typ] = d
			return d, nil
		}
	}
	return nil, fmt.Errorf("no driver here runs %q instances", typ)
}

// owner is the driver that has the instance: asked with Has where the
// driver can answer from its records, else with Status.
func (c *combined) owner(ctx context.Context, id string) (Driver, error) {
	for _, d := range c.ds {
		if h, ok := d.(Haver); ok {
			if h.Has(id) {
				return d, nil
			}
			continue
		}
		if _, err := d.Status(ctx, id); !errors.Is(err, ErrNotFound) {
			return d, nil
		}
	}
	return nil, ErrNotFound
}

func (c *combined) Prepare(ctx context.Context, s Spec) error {
	d, err := c.forType(ctx, s.Type)
	if err != nil {
		return err
	}
	return d.Prepare(ctx, s)
}

func (c *combined) Start(ctx context.Context, s Spec) error {
	d, err := c.forType(ctx, s.Type)
	if err != nil {
		return err
	}
	return d.Start(ctx, s)
}

func (c *combined) on(ctx context.Context, id string, fn func(Driver) error) error {
	d, err := c.owner(ctx, id)
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
	d, err := c.owner(ctx, id)
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
		if s, ok := d.(Syncer); ok {
			errs = append(errs, s.Sync())
		}
	}
	return errors.Join(errs...)
}

func (c *combined) Exec(ctx context.Context, id string, cmd []string, out io.Writer) (int, error) {
	ex, err := featureOf[Execer](ctx, c, id)
	if err != nil {
		return 0, err
	}
	return ex.Exec(ctx, id, cmd, out)
}

func (c *combined) Logs(ctx context.Context, id string, tail int) ([]byte, error) {
	lg, err := featureOf[Logger](ctx, c, id)
	if err != nil {
		return nil, err
	}
	return lg.Logs(ctx, id, tail)
}

func (c *combined) Console(ctx context.Context, id string, rw io.ReadWriter) error {
	cs, err := featureOf[Consoler](ctx, c, id)
	if err != nil {
		return err
	}
	return cs.Console(ctx, id, rw)
}

// featureOf is the optional feature of the driver that has the instance.
func featureOf[F any](ctx context.Context, c *combined, id string) (F, error) {
	d, err := c.owner(ctx, id)
	if err != nil {
		var none F
		return none, err
	}
	return Feature[F](d)
}

func (c *combined) Snapshot(ctx context.Context, id string, w io.Writer) error {
	sn, err := featureOf[Snapshotter](ctx, c, id)
	if err != nil {
		return err
	}
	return sn.Snapshot(ctx, id, w)
}
