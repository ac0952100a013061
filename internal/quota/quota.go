// Package quota owns each project's quota limits and live usage.
//
// Limits and usage of a project live in one record, and every change of
// usage is a compare-and-swap of that record inside the same transaction
// that creates or deletes the object using it. So N concurrent creates can
// never take a project past its limit, and a crash at any point leaves usage
// equal to what really exists.
package quota

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/kumocloud/kumo/api"
	"github.com/kumocloud/kumo/internal/errs"
	"github.com/kumocloud/kumo/internal/store"
)

// Prefix is the key prefix this package owns.
const Prefix = "/quota/"

// Unlimited is the limit that never stops anything.
const Unlimited = -1

// Record is what is stored per project.
type Record struct {
	Limit api.ResourceCounts `json:"limit"`
	Usage api.ResourceCounts `json:"usage"`
}

// Key is the store key of a project's quota record.
func Key(project string) string { return Prefix + project }

// resource names a field of api.ResourceCounts as users write it.
type resource struct {
	name    string // the JSON name
	aliases []string
	unit    string // "", "MiB" or "GiB": sizes users may write with a suffix
	field   func(*api.ResourceCounts) *int64
}

var resources = []resource{
	{"instances", nil, "", func(r *api.ResourceCounts) *int64 { return &r.Instances }},
	{"vcpus", []string{"cpus", "cpu"}, "", func(r *api.ResourceCounts) *int64 { return &r.VCPUs }},
	{"memory_mib", []string{"memory", "mem", "ram"}, "MiB", func(r *api.ResourceCounts) *int64 { return &r.MemoryMiB }},
	{"disk_gib", []string{"disk"}, "GiB", func(r *api.ResourceCounts) *int64 { return &r.DiskGiB }},
	{"volumes", nil, "", func(r *api.ResourceCounts) *int64 { return &r.Volumes }},
	{"networks", nil, "", func(r *api.ResourceCounts) *int64 { return &r.Networks }},
	{"floating_ips", []string{"floating-ips", "fips"}, "", func(r *api.ResourceCounts) *int64 { return &r.FloatingIPs }},
	{"images", nil, "", func(r *api.ResourceCounts) *int64 { return &r.Images }},
}

// Names lists the quota resource names, in API order.
func Names() []string {
	out := make([]string, len(resources))
	for i, r := range resources {
		out[i] = r.name
	}
	return out
}

func lookup(name string) (resource, bool) {
	n := strings.ToLower(strings.TrimSpace(name))
	for _, r := range resources {
		if r.name == n {
			return r, true
		}
		for _, a := range r.aliases {
			if a == n {
				return r, true
			}
		}
	}
	return resource{}, false
}

// Defaults is the quota of a new project unless the server is told otherwise.
func Defaults() api.ResourceCounts {
	return api.ResourceCounts{Instances: 20, VCPUs: 40, MemoryMiB: 80 * 1024, DiskGiB: 1000, Volumes: 20, Networks: 10, FloatingIPs: 5, Images: 20}
}

// Apply sets the limits named in changes (API names) on lim. A value must be
// >= 0 or -1 (unlimited).
func Apply(lim *api.ResourceCounts, changes map[string]int64, field string) error {
	keys := make([]string, 0, len(changes))
	for k := range changes {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		r, ok := lookup(k)
		if !ok || r.name != k {
			return errs.Invalid(field+"."+k, "%q is not a quota resource: use one of %s", k, strings.Join(Names(), ", "))
		}
		v := changes[k]
		if v < Unlimited {
			return errs.Invalid(field+"."+k, "quota %s must be >= 0, or -1 for unlimited; got %d", k, v)
		}
		*r.field(lim) = v
	}
	return nil
}

// ParseSpec reads "instances=10,vcpus=20,memory=20GiB" into API names and
// values: memory in MiB, disk in GiB; sizes take K/M/G/T(iB) suffixes;
// "unlimited" or -1 lifts a limit.
func ParseSpec(spec string) (map[string]int64, error) {
	out := map[string]int64{}
	if strings.TrimSpace(spec) == "" {
		return out, nil
	}
	for _, part := range strings.Split(spec, ",") {
		k, v, ok := strings.Cut(part, "=")
		if !ok {
			return nil, fmt.Errorf("quota %q: want NAME=VALUE", part)
		}
		r, ok := lookup(k)
		if !ok {
			return nil, fmt.Errorf("quota %q: unknown resource %q; use one of instances, vcpus, memory, disk, volumes, networks, floating-ips, images", part, k)
		}
		n, err := parseValue(strings.TrimSpace(v), r.unit)
		if err != nil {
			return nil, fmt.Errorf("quota %s: %w", k, err)
		}
		out[r.name] = n
	}
	return out, nil
}

var sizeMiB = map[string]int64{"": 1, "k": 1, "kib": 1, "m": 1, "mib": 1, "g": 1024, "gib": 1024, "t": 1024 * 1024, "tib": 1024 * 1024}

func parseValue(v, unit string) (int64, error) {
	if v == "unlimited" || v == "-1" {
		return Unlimited, nil
	}
	i := 0
	for i < len(v) && v[i] >= '0' && v[i] <= '9' {
		i++
	}
	n, err := strconv.ParseInt(v[:i], 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("%q is not a non-negative number", v)
	}
	suffix := strings.ToLower(v[i:])
	if suffix == "" {
		return n, nil
	}
	if unit == "" {
		return 0, fmt.Errorf("%q: this resource is a count and takes no unit", v)
	}
	mult, ok := sizeMiB[suffix]
	if !ok {
		return 0, fmt.Errorf("%q: unknown unit %q (use MiB, GiB or TiB)", v, v[i:])
	}
	mib := n * mult
	if suffix == "k" || suffix == "kib" {
		mib = (n + 1023) / 1024
	}
	if unit == "GiB" {
		return (mib + 1023) / 1024, nil
	}
	return mib, nil
}

// Get reads a project's quota record and its revision.
func Get(ctx context.Context, s store.Store, project string) (Record, int64, error) {
	var r Record
	rev, err := store.GetJSON(ctx, s, Key(project), &r)
	if errors.Is(err, store.ErrNotFound) {
		return r, 0, errs.NotFound("project %q not found", project)
	}
	return r, rev, err
}

// InitOp is the write that creates a project's quota record with no usage.
func InitOp(project string, limit api.ResourceCounts) store.Op {
	return store.PutJSON(Key(project), Record{Limit: limit})
}

// DeleteOp removes a project's quota record.
func DeleteOp(project string) store.Op { return store.Del(Key(project)) }

// maxRetries bounds CAS retries under contention.
const maxRetries = 1000

// Update applies fn to the record with CAS, retrying on conflicts, and
// writes extra ops (e.g. an event) in the same transaction.
func Update(ctx context.Context, s store.Store, project string, fn func(*Record) error, extra func(Record) []store.Op) (Record, error) {
	for i := 0; i < maxRetries; i++ {
		r, rev, err := Get(ctx, s, project)
		if err != nil {
			return r, err
		}
		if err := fn(&r); err != nil {
			return r, err
		}
		ops := []store.Op{store.PutJSON(Key(project), r)}
		if extra != nil {
			ops = append(ops, extra(r)...)
		}
		_, err = s.Txn(ctx, []store.Cond{store.At(Key(project), rev)}, ops)
		if err == nil {
			return r, nil
		}
		if !errors.Is(err, store.ErrConflict) {
			return r, err
		}
	}
	return Record{}, errs.Unavailable("quota of project %q is too contended; try again", project)
}

// Reserve adds delta to the project's usage (negative figures release) and
// applies conds and ops in the same transaction. Positive figures are
// checked against the limits: going over is a quota_exceeded error naming
// the resource. When one of conds fails (not the quota record changing),
// Reserve returns store.ErrConflict and changes nothing.
func Reserve(ctx context.Context, s store.Store, project string, delta api.ResourceCounts, conds []store.Cond, ops []store.Op) (int64, error) {
	for i := 0; i < maxRetries; i++ {
		r, rev, err := Get(ctx, s, project)
		if err != nil {
			return 0, err
		}
		for _, res := range resources {
			d := *res.field(&delta)
			if d == 0 {
				continue
			}
			used, limit := res.field(&r.Usage), *res.field(&r.Limit)
			if d > 0 && limit != Unlimited && *used+d > limit {
				return 0, errs.QuotaExceeded(res.name, limit, *used, d)
			}
			*used = max(0, *used+d)
		}
		all := append([]store.Cond{store.At(Key(project), rev)}, conds...)
		wrev, err := s.Txn(ctx, all, append([]store.Op{store.PutJSON(Key(project), r)}, ops...))
		if err == nil {
			return wrev, nil
		}
		if !errors.Is(err, store.ErrConflict) {
			return 0, err
		}
		// Retry only when it was the quota record that moved.
		if _, now, gerr := Get(ctx, s, project); gerr == nil && now == rev {
			return 0, store.ErrConflict
		}
	}
	return 0, errs.Unavailable("quota of project %q is too contended; try again", project)
}
