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
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"

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

// UnmarshalJSON reads a stored record; a limit the record does not name
// (a resource added after the project was made) takes its default, so
// an upgrade does not turn new resources off for old projects.
func (r *Record) UnmarshalJSON(b []byte) error {
	type plain Record
	p := plain{Limit: Defaults()}
	if err := json.Unmarshal(b, &p); err != nil {
		return err
	}
	*r = Record(p)
	return nil
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
	{"volume_gib", []string{"volume-size", "volume-storage"}, "GiB", func(r *api.ResourceCounts) *int64 { return &r.VolumeGiB }},
	{"snapshots", []string{"volume-snapshots"}, "", func(r *api.ResourceCounts) *int64 { return &r.Snapshots }},
	{"backups", []string{"volume-backups"}, "", func(r *api.ResourceCounts) *int64 { return &r.Backups }},
	{"backup_gib", []string{"backup-size", "backup-storage"}, "GiB", func(r *api.ResourceCounts) *int64 { return &r.BackupGiB }},
	{"networks", nil, "", func(r *api.ResourceCounts) *int64 { return &r.Networks }},
	{"ports", nil, "", func(r *api.ResourceCounts) *int64 { return &r.Ports }},
	{"floating_ips", []string{"floating-ips", "fips"}, "", func(r *api.ResourceCounts) *int64 { return &r.FloatingIPs }},
	{"images", nil, "", func(r *api.ResourceCounts) *int64 { return &r.Images }},
	{"image_mib", []string{"image-size", "image-storage"}, "MiB", func(r *api.ResourceCounts) *int64 { return &r.ImageMiB }},
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
	return api.ResourceCounts{Instances: 20, VCPUs: 40, MemoryMiB: 80 * 1024, DiskGiB: 1000, Volumes: 20, VolumeGiB: 1000, Snapshots: 20, Backups: 20, BackupGiB: 1000, Networks: 10, Ports: 100, FloatingIPs: 5, Images: 20, ImageMiB: 50 * 1024}
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
			return nil, fmt.Errorf("quota %q: unknown resource %q; use one of instances, vcpus, memory, disk, volumes, volume-size, snapshots, backups, backup-size, networks, floating-ips, images, image-size", part, k)
		}
		n, err := parseValue(strings.TrimSpace(v), r.unit)
		if err != nil {
			return nil, fmt.Errorf("quota %s: %w", k, err)
		}
		out[r.name] = n
	}
	return out, nil
}

// ParseMiB reads a size such as "20GiB" or "512MiB" (a bare number is
// MiB) as MiB.
func ParseMiB(v string) (int64, error) {
	n, err := parseValue(strings.TrimSpace(v), "MiB")
	if err == nil && n == Unlimited {
		return 0, fmt.Errorf("%q: give a size", v)
	}
	return n, err
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
	r, _, err := store.UpdateJSON(ctx, s, Key(project), fn, func(r *Record) []store.Op {
		if extra == nil {
			return nil
		}
		return extra(*r)
	})
	switch {
	case errors.Is(err, store.ErrNotFound):
		return r, errs.NotFound("project %q not found", project)
	case errors.Is(err, store.ErrConflict):
		return r, errs.Unavailable("quota of project %q is too contended; try again", project)
	}
	return r, err
}

// Reserve adds delta to the project's usage (negative figures release) and
// applies conds and ops in the same transaction. Positive figures are
// checked against the limits: going over is a quota_exceeded error naming
// the resource. When one of conds fails (not the quota record changing),
// Reserve returns store.ErrConflict and changes nothing.
//
// Concurrent reservations in one project are committed together (group
// commit): they all compare-and-swap the same quota record, so one at a
// time would serialize every create in a project on one store write.
func Reserve(ctx context.Context, s store.Store, project string, delta api.ResourceCounts, conds []store.Cond, ops []store.Op) (int64, error) {
	r := &reservation{ctx: ctx, delta: delta, conds: conds, ops: ops, done: make(chan result, 1)}
	q := queueFor(s, project)
	q.mu.Lock()
	q.waiting = append(q.waiting, r)
	lead := !q.leading
	q.leading = true
	q.mu.Unlock()
	if lead {
		q.lead(s, project)
	}
	select {
	case res := <-r.done:
		return res.rev, res.err
	case <-ctx.Done():
		// The batch may still commit it; the caller's retry with the same
		// conditions then sees a conflict, never a double charge.
		return 0, ctx.Err()
	}
}

type reservation struct {
	ctx   context.Context
	delta api.ResourceCounts
	conds []store.Cond
	ops   []store.Op
	done  chan result
}

type result struct {
	rev int64
	err error
}

type queue struct {
	mu      sync.Mutex
	waiting []*reservation
	leading bool
	// last is the quota record as this queue's last transaction left it,
	// at revision lastRev (0: unknown). Only the leader touches them. The
	// next batch starts from this copy instead of reading the store: the
	// transaction's condition on the record's revision still decides, so
	// a copy gone stale (someone else changed the quota) costs a conflict
	// and a read, never a wrong charge.
	last    Record
	lastRev int64
}

type queueKey struct {
	s       store.Store
	project string
}

var queues sync.Map // queueKey -> *queue

func queueFor(s store.Store, project string) *queue {
	q, _ := queues.LoadOrStore(queueKey{s, project}, &queue{})
	return q.(*queue)
}

// maxBatchOps keeps a batch within etcd's default limit of 128 operations
// per transaction.
const maxBatchOps = 120

// lead commits batches until nobody waits.
func (q *queue) lead(s store.Store, project string) {
	for {
		q.mu.Lock()
		n, ops := 0, 1
		for n < len(q.waiting) && (n == 0 || ops+len(q.waiting[n].ops)+len(q.waiting[n].conds) <= maxBatchOps) {
			ops += len(q.waiting[n].ops) + len(q.waiting[n].conds)
			n++
		}
		batch := q.waiting[:n:n]
		q.waiting = q.waiting[n:]
		if n == 0 {
			q.leading = false
			q.mu.Unlock()
			return
		}
		q.mu.Unlock()
		q.commit(s, project, batch)
	}
}

// commit tries the batch as one transaction; when a caller's condition
// fails it falls back to one transaction each, so one bad create cannot
// fail the others.
func (q *queue) commit(s store.Store, project string, batch []*reservation) {
	live := batch[:0:0]
	for _, r := range batch {
		if r.ctx.Err() == nil {
			live = append(live, r)
		} else {
			r.done <- result{err: r.ctx.Err()}
		}
	}
	if len(live) == 0 {
		return
	}
	// Conditions are checked against the store as it was before the
	// transaction: two callers in one batch that both require a key to be
	// absent and both create it would both "succeed", the second writing
	// over the first. So a caller touching a key another caller of the
	// batch touches waits for the next transaction, and sees the first's
	// write there.
	live, later := disjoint(live)
	if len(later) > 0 {
		defer q.commit(s, project, later)
	}
	ctx := context.WithoutCancel(live[0].ctx)
	for attempt := 0; attempt < maxRetries; attempt++ {
		rec, rev, err := q.last, q.lastRev, error(nil)
		cached := rev != 0
		if !cached {
			rec, rev, err = Get(ctx, s, project)
		}
		q.lastRev = 0
		if err != nil {
			for _, r := range live {
				r.done <- result{err: err}
			}
			return
		}
		if cached && !fits(rec, live) {
			// The copy may be stale (quota since released or raised):
			// only the store's own figures may refuse anyone.
			attempt--
			continue
		}
		var in []*reservation
		all := []store.Cond{store.At(Key(project), rev)}
		for _, r := range live {
			if err := apply(&rec.Usage, rec.Limit, r.delta); err != nil {
				r.done <- result{err: err}
				continue
			}
			in = append(in, r)
			all = append(all, r.conds...)
		}
		if len(in) == 0 {
			return
		}
		ops := []store.Op{store.PutJSON(Key(project), rec)}
		for _, r := range in {
			ops = append(ops, r.ops...)
		}
		wrev, err := s.Txn(ctx, all, ops)
		if err == nil {
			q.last, q.lastRev = rec, wrev
			for _, r := range in {
				r.done <- result{rev: wrev}
			}
			return
		}
		if !errors.Is(err, store.ErrConflict) {
			for _, r := range in {
				r.done <- result{err: err}
			}
			return
		}
		if fresh, now, gerr := Get(ctx, s, project); gerr == nil && now == rev {
			q.last, q.lastRev = fresh, now
			// A caller's own condition failed.
			if len(in) == 1 {
				in[0].done <- result{err: store.ErrConflict}
				return
			}
			for _, r := range in {
				q.commit(s, project, []*reservation{r})
			}
			return
		}
		live = in
	}
	for _, r := range live {
		r.done <- result{err: errs.Unavailable("quota of project %q is too contended; try again", project)}
	}
}

// fits says whether every reservation fits in rec's limits.
func fits(rec Record, batch []*reservation) bool {
	for _, r := range batch {
		if apply(&rec.Usage, rec.Limit, r.delta) != nil {
			return false
		}
	}
	return true
}

// disjoint splits a batch into callers whose keys (conditions and writes)
// no earlier caller of the batch touches, and the rest.
func disjoint(batch []*reservation) (in, later []*reservation) {
	touched := map[string]bool{}
	for _, r := range batch {
		keys := make([]string, 0, len(r.conds)+len(r.ops))
		for _, c := range r.conds {
			keys = append(keys, c.Key)
		}
		for _, o := range r.ops {
			keys = append(keys, o.Key)
		}
		clash := false
		for _, k := range keys {
			clash = clash || touched[k]
		}
		if clash {
			later = append(later, r)
			continue
		}
		for _, k := range keys {
			touched[k] = true
		}
		in = append(in, r)
	}
	return in, later
}

// apply adds delta to usage, checking positive figures against limits;
// on error usage is unchanged.
func apply(usage *api.ResourceCounts, limit api.ResourceCounts, delta api.ResourceCounts) error {
	next := *usage
	for _, res := range resources {
		d := *res.field(&delta)
		if d == 0 {
			continue
		}
		used, lim := res.field(&next), *res.field(&limit)
		if d > 0 && lim != Unlimited && *used+d > lim {
			return errs.QuotaExceeded(res.name, lim, *used, d)
		}
		*used = max(0, *used+d)
	}
	*usage = next
	return nil
}
