// Package flavor owns flavors (instance types): the sizes instances come in
// and their prices. Keys: /flavors/{name}.
package flavor

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	"github.com/google/uuid"

	"github.com/kumocloud/kumo/api"
	"github.com/kumocloud/kumo/internal/errs"
	"github.com/kumocloud/kumo/internal/events"
	"github.com/kumocloud/kumo/internal/idempotency"
	"github.com/kumocloud/kumo/internal/metering"
	"github.com/kumocloud/kumo/internal/store"
	"github.com/kumocloud/kumo/internal/validate"
)

const prefix = "/flavors/"

func key(name string) string { return prefix + name }

func url(name string) string { return "/v1/flavors/" + name }

// Defaults are the flavors a new cloud starts with, shaped like EC2's
// general purpose (t/m), compute (c) and memory (r) families.
func Defaults() []api.FlavorsPost {
	return []api.FlavorsPost{
		{Name: "tiny", VCPUs: 1, MemoryMiB: 512, DiskGiB: 1, PriceMicro: 5800, Description: "1 vCPU, 512 MiB (like t3.nano)"},
		{Name: "small", VCPUs: 1, MemoryMiB: 2048, DiskGiB: 10, PriceMicro: 23000, Description: "1 vCPU, 2 GiB (like t3.small)"},
		{Name: "medium", VCPUs: 2, MemoryMiB: 4096, DiskGiB: 20, PriceMicro: 41600, Description: "2 vCPU, 4 GiB (like t3.medium)"},
		{Name: "large", VCPUs: 2, MemoryMiB: 8192, DiskGiB: 40, PriceMicro: 96000, Description: "2 vCPU, 8 GiB (like m5.large)"},
		{Name: "xlarge", VCPUs: 4, MemoryMiB: 16384, DiskGiB: 80, PriceMicro: 192000, Description: "4 vCPU, 16 GiB (like m5.xlarge)"},
		{Name: "high-cpu", VCPUs: 8, MemoryMiB: 16384, DiskGiB: 40, PriceMicro: 340000, Description: "8 vCPU, 16 GiB (like c5.2xlarge)"},
		{Name: "high-mem", VCPUs: 4, MemoryMiB: 32768, DiskGiB: 40, PriceMicro: 252000, Description: "4 vCPU, 32 GiB (like r5.xlarge)"},
	}
}

// Validate checks a flavor create request.
func Validate(req *api.FlavorsPost) error {
	if err := validate.Name("name", req.Name); err != nil {
		return err
	}
	switch {
	case req.VCPUs < 1 || req.VCPUs > 1024:
		return errs.Invalid("vcpus", "vcpus must be between 1 and 1024, got %d", req.VCPUs)
	case req.MemoryMiB < 16 || req.MemoryMiB > 16*1024*1024:
		return errs.Invalid("memory_mib", "memory_mib must be between 16 and 16777216, got %d", req.MemoryMiB)
	case req.DiskGiB < 0 || req.DiskGiB > 1024*1024:
		return errs.Invalid("disk_gib", "disk_gib must be between 0 and 1048576, got %d", req.DiskGiB)
	case req.SwapMiB < 0 || req.SwapMiB > 1024*1024:
		return errs.Invalid("swap_mib", "swap_mib must be between 0 and 1048576, got %d", req.SwapMiB)
	case req.PriceMicro < 0:
		return errs.Invalid("price_micro_per_hour", "price_micro_per_hour must be >= 0")
	}
	if err := validate.Text("description", req.Description, 1024); err != nil {
		return err
	}
	return validate.Labels("labels", req.Labels)
}

func record(req api.FlavorsPost) api.Flavor {
	now := time.Now().UTC().Truncate(time.Millisecond)
	t := api.Meta{ID: uuid.NewString(), Name: req.Name, Labels: req.Labels, CreatedAt: now, UpdatedAt: now}
	return api.Flavor{Meta: t, VCPUs: req.VCPUs, MemoryMiB: req.MemoryMiB, DiskGiB: req.DiskGiB, SwapMiB: req.SwapMiB, PriceMicro: req.PriceMicro, Description: req.Description, Nesting: req.Nesting, HA: req.HA}
}

// SeedOps are the writes that create the default flavors (at bootstrap).
func SeedOps(ctx context.Context) []store.Op {
	var ops []store.Op
	for _, req := range Defaults() {
		f := record(req)
		ops = append(ops, store.PutJSON(key(f.Name), f), metering.InitFlavorPriceOp(f.Name, f.PriceMicro))
	}
	return ops
}

// Create makes a flavor.
func Create(ctx context.Context, s store.Store, req api.FlavorsPost) (api.Flavor, error) {
	if err := Validate(&req); err != nil {
		return api.Flavor{}, err
	}
	f := record(req)
	rev, err := s.Txn(ctx, []store.Cond{store.Absent(key(f.Name))}, append([]store.Op{
		store.PutJSON(key(f.Name), f),
		events.Op(ctx, "flavor", events.Created, "", url(f.Name), f),
	}, idempotency.Done(ctx, f)...))
	if errors.Is(err, store.ErrConflict) {
		return api.Flavor{}, errs.Conflict("flavor %q already exists", f.Name)
	}
	if err != nil {
		return api.Flavor{}, err
	}
	// Its price from now on; a name used before keeps its old prices for
	// old usage.
	if err := metering.EnsureFlavorPrice(ctx, s, f.Name, f.PriceMicro, time.Now()); err != nil {
		return api.Flavor{}, err
	}
	f.Revision = rev
	return f, nil
}

// Get returns a flavor.
func Get(ctx context.Context, s store.Store, name string) (api.Flavor, error) {
	var f api.Flavor
	rev, err := store.GetJSON(ctx, s, key(name), &f)
	if errors.Is(err, store.ErrNotFound) {
		return f, errs.NotFound("flavor %q not found", name)
	}
	f.Revision = rev
	return f, err
}

// List lists flavors matching the label selector.
func List(ctx context.Context, s store.Store, sel map[string]string, after string, limit int) ([]api.Flavor, string, error) {
	return store.Paginate(ctx, s, prefix, after, limit, func(kv store.KV) (api.Flavor, bool, error) {
		var f api.Flavor
		err := json.Unmarshal(kv.Value, &f)
		f.Revision = kv.Revision
		return f, err == nil && f.HasLabels(sel), err
	})
}

// Delete removes a flavor. Instances keep a copy of their flavor's size, so
// deleting one in use changes nothing for them.
func Delete(ctx context.Context, s store.Store, name string) error {
	kv, err := s.Get(ctx, key(name))
	if errors.Is(err, store.ErrNotFound) {
		return errs.NotFound("flavor %q not found", name)
	}
	if err != nil {
		return err
	}
	_, err = s.Txn(ctx, []store.Cond{store.At(key(name), kv.Revision)}, []store.Op{
		store.Del(key(name)),
		events.Op(ctx, "flavor", events.Deleted, "", url(name), nil),
	})
	if errors.Is(err, store.ErrConflict) {
		return errs.Conflict("flavor %q changed while being deleted; try again", name)
	}
	return err
}
