package metering

import (
	"context"
	"errors"
	"slices"
	"sort"
	"strconv"
	"time"

	"github.com/kumocloud/kumo/api"
	"github.com/kumocloud/kumo/internal/errs"
	"github.com/kumocloud/kumo/internal/events"
	"github.com/kumocloud/kumo/internal/store"
)

// Keys this package owns. Flavor prices outlive their flavor, so old
// usage keeps its price.
const (
	flavorPricesPrefix = "/prices/flavors/"
	storagePriceKey    = "/prices/storage"
	// kindPricesPrefix + volumes|volume-snapshots|volume-backups
	kindPricesPrefix = "/prices/storage/"
	rulesKey         = "/prices/rules"
	alertsPrefix     = "/metering/alerts/"
)

type pointsRecord struct {
	Points []api.PricePoint `json:"points"`
}

type rulesRecord struct {
	Compute []api.State `json:"compute_states"`
	Storage []api.State `json:"storage_states"`
}

// InitFlavorPriceOp is the write giving a new flavor its price "since
// always" (in the flavor's create transaction).
func InitFlavorPriceOp(flavor string, micro int64) store.Op {
	return store.PutJSON(flavorPricesPrefix+flavor, pointsRecord{Points: []api.PricePoint{{Micro: micro}}})
}

// EnsureFlavorPrice gives a flavor its price: since always if it never had
// one, else from now on.
func EnsureFlavorPrice(ctx context.Context, s store.Store, flavor string, micro int64, now time.Time) error {
	if _, err := s.Create(ctx, flavorPricesPrefix+flavor, store.MustJSON(pointsRecord{Points: []api.PricePoint{{Micro: micro}}})); err == nil || !errors.Is(err, store.ErrExists) {
		return err
	}
	return SetFlavorPrice(ctx, s, flavor, api.PricePut{Micro: micro, EffectiveAt: now}, now)
}

// Load reads prices and rules.
func Load(ctx context.Context, s store.Store, currency string) (api.Prices, Rules, error) {
	p := api.Prices{Currency: currency, Flavors: map[string][]api.PricePoint{}, Storage: []api.PricePoint{}}
	kvs, err := store.ListAll(ctx, s, flavorPricesPrefix)
	if err != nil {
		return p, nil, err
	}
	for _, kv := range kvs {
		var r pointsRecord
		if store.Decode(kv, &r) == nil {
			p.Flavors[kv.Key[len(flavorPricesPrefix):]] = r.Points
		}
	}
	var sr pointsRecord
	if _, err := store.GetJSON(ctx, s, storagePriceKey, &sr); err == nil {
		p.Storage = sr.Points
	} else if !errors.Is(err, store.ErrNotFound) {
		return p, nil, err
	}
	for _, k := range PricedKinds {
		var kr pointsRecord
		if _, err := store.GetJSON(ctx, s, kindPricesPrefix+k.Name, &kr); err != nil && !errors.Is(err, store.ErrNotFound) {
			return p, nil, err
		}
		if kr.Points == nil {
			kr.Points = []api.PricePoint{}
		}
		*k.points(&p) = kr.Points
	}
	rr := rulesRecord{Compute: DefaultComputeStates, Storage: DefaultStorageStates}
	if _, err := store.GetJSON(ctx, s, rulesKey, &rr); err != nil && !errors.Is(err, store.ErrNotFound) {
		return p, nil, err
	}
	p.ComputeStates, p.StorageStates = rr.Compute, rr.Storage
	return p, NewRules(rr.Compute, rr.Storage), nil
}

// Current is the price in force at t (0 when none).
func Current(points []api.PricePoint, t time.Time) int64 {
	p, _ := at(points, t)
	return p.Micro
}

// setPoint adds a price point effective at eff (not in the past) to the
// record at key, with CAS.
func setPoint(ctx context.Context, s store.Store, key, what string, put api.PricePut, now time.Time) error {
	if put.Micro < 0 {
		return errs.Invalid("micro_per_hour", "a price must be >= 0")
	}
	eff := put.EffectiveAt
	if eff.IsZero() {
		eff = now
	}
	if eff.Before(now.Add(-time.Minute)) {
		return errs.Invalid("effective_at", "effective_at %s is in the past: a price change applies from now on, never to usage already billed", eff.Format(time.RFC3339))
	}
	eff = eff.UTC().Truncate(time.Millisecond)
	for attempt := 0; attempt < 20; attempt++ {
		var r pointsRecord
		rev, err := store.GetJSON(ctx, s, key, &r)
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return err
		}
		// A later point than eff is replaced: the newest decision wins.
		r.Points = slices.DeleteFunc(r.Points, func(p api.PricePoint) bool { return !p.Effective.Before(eff) })
		r.Points = append(r.Points, api.PricePoint{Effective: eff, Micro: put.Micro})
		sort.Slice(r.Points, func(i, j int) bool { return r.Points[i].Effective.Before(r.Points[j].Effective) })
		cond := store.Absent(key)
		if rev > 0 {
			cond = store.At(key, rev)
		}
		_, err = s.Txn(ctx, []store.Cond{cond}, []store.Op{store.PutJSON(key, r), events.Op(ctx, "price", events.Updated, "", "/v1/prices", map[string]any{"what": what, "micro_per_hour": put.Micro, "effective": eff})})
		if !errors.Is(err, store.ErrConflict) {
			return err
		}
	}
	return errs.Unavailable("prices changing too fast; try again")
}

// SetFlavorPrice changes a flavor's price from put.EffectiveAt on.
func SetFlavorPrice(ctx context.Context, s store.Store, flavor string, put api.PricePut, now time.Time) error {
	return setPoint(ctx, s, flavorPricesPrefix+flavor, "flavor "+flavor, put, now)
}

// SetStoragePrice changes the price per GiB-hour of stored disks.
func SetStoragePrice(ctx context.Context, s store.Store, put api.PricePut, now time.Time) error {
	return setPoint(ctx, s, storagePriceKey, "storage", put, now)
}

// PricedKind is a storage kind with a price of its own, as the API names
// it.
type PricedKind struct {
	Name   string // volumes, volume-snapshots, volume-backups
	Kind   string // the ledger's kind
	points func(*api.Prices) *[]api.PricePoint
}

// PricedKinds are the storage kinds priced apart from disks and images.
var PricedKinds = []PricedKind{
	{"volumes", KindVolume, func(p *api.Prices) *[]api.PricePoint { return &p.Volumes }},
	{"volume-snapshots", KindSnapshot, func(p *api.Prices) *[]api.PricePoint { return &p.Snapshots }},
	{"volume-backups", KindBackup, func(p *api.Prices) *[]api.PricePoint { return &p.Backups }},
}

// SetKindPrice changes the price per GiB-hour of volumes,
// volume-snapshots or volume-backups (name).
func SetKindPrice(ctx context.Context, s store.Store, name string, put api.PricePut, now time.Time) error {
	for _, k := range PricedKinds {
		if k.Name == name {
			return setPoint(ctx, s, kindPricesPrefix+name, name, put, now)
		}
	}
	return errs.NotFound("no price %q: use volumes, volume-snapshots or volume-backups", name)
}

// SetRules changes which states bill what (applies to every report from
// then on, past periods included: it is a policy, not a price).
func SetRules(ctx context.Context, s store.Store, put api.RulesPut) error {
	seen := map[api.State]bool{}
	for field, list := range map[string][]api.State{"compute_states": put.ComputeStates, "storage_states": put.StorageStates} {
		for _, st := range list {
			if !st.Known() {
				return errs.Invalid(field, "%q is not a state", st)
			}
			if seen[st] {
				return errs.Invalid(field, "state %s is in both lists", st)
			}
			seen[st] = true
		}
	}
	_, err := s.Txn(ctx, nil, []store.Op{store.PutJSON(rulesKey, rulesRecord{Compute: put.ComputeStates, Storage: put.StorageStates}),
		events.Op(ctx, "price", events.Updated, "", "/v1/prices", put)})
	return err
}

// ForgetProject removes the budget alerts recorded for a deleted project
// (a new project of the same name gets its own) and moves its storage
// ledger to the name as, which no project can have.
func ForgetProject(ctx context.Context, s store.Store, project, as string) error {
	if err := store.DeleteUnder(ctx, s, alertsPrefix+project+"/", nil); err != nil {
		return err
	}
	return moveLedger(ctx, s, project, as)
}

// MarkAlert records that a budget threshold was crossed in a period;
// it returns false if it was already recorded (each fires once).
func MarkAlert(ctx context.Context, s store.Store, project, period string, pct int, ev store.Op) (bool, error) {
	key := alertsPrefix + project + "/" + period + "/" + strconv.Itoa(pct)
	_, err := s.Txn(ctx, []store.Cond{store.Absent(key)}, []store.Op{store.Put(key, []byte(time.Now().UTC().Format(time.RFC3339))), ev})
	if errors.Is(err, store.ErrConflict) {
		return false, nil
	}
	return err == nil, err
}
