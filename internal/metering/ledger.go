package metering

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/kumocloud/kumo/internal/store"
)

// The storage ledger: what volumes, their snapshots and their backups
// held, and since when. The service that owns such an object writes a
// point (StorageOp) in the very transaction that creates it, resizes it
// or removes it, so the ledger is exactly as true as the objects are:
// a crash or restart neither loses hours nor counts them twice, and an
// object's hours run from its point to the next one (or to now).
//
// Each point is its own key (the object's id and the point's time), so
// writing one never reads or races with another.

// Storage kinds the ledger meters.
const (
	KindVolume   = "volume"
	KindSnapshot = "snapshot"
	KindBackup   = "backup"
)

// storageKinds are the ledger's kinds, each with its charge name, the
// group it takes by flavor, and the prefix of its key by instance.
var storageKinds = map[string]struct{ charge, flavor, prefix string }{
	KindVolume:   {"volume storage", "volumes", "volume:"},
	KindSnapshot: {"snapshot storage", "volume-snapshots", "snapshot:"},
	KindBackup:   {"backup storage", "volume-backups", "backup:"},
}

const ledgerPrefix = "/metering/storage/"

// ledgerPoint is one change of an object's stored size.
type ledgerPoint struct {
	Kind string    `json:"kind"`
	ID   string    `json:"id"`
	Name string    `json:"name"`
	At   time.Time `json:"at"`
	// MiB is what it holds from At on; 0: it is gone.
	MiB int64 `json:"mib"`
}

// StorageOp is the write recording that the object id of kind in project
// (shown as name) holds mib MiB from at on; mib 0 records that it is
// gone. The caller puts it in the transaction that makes the change.
func StorageOp(kind, project, id, name string, mib int64, at time.Time) store.Op {
	if _, ok := storageKinds[kind]; !ok {
		panic("metering: unknown storage kind " + kind)
	}
	at = at.UTC()
	k := fmt.Sprintf("%s%s/%s/%s/%020d", ledgerPrefix, project, kind, id, at.UnixNano())
	return store.PutJSON(k, ledgerPoint{Kind: kind, ID: id, Name: name, At: at, MiB: max(mib, 0)})
}

// MiBOfBytes is bytes as whole MiB, rounded up.
func MiBOfBytes(b int64) int64 { return (b + 1<<20 - 1) >> 20 }

// Stored is one stay of a volume, snapshot or backup at one size: billed
// per GiB-hour (to the MiB) at its kind's price.
type Stored struct {
	Kind, Project, Name string
	MiB                 int64
	From, To            time.Time // To zero: still so
}

// LoadStorage reads the ledger of a project ("" = all) as stays.
func LoadStorage(ctx context.Context, s store.Store, project string) ([]Stored, error) {
	p := ledgerPrefix
	if project != "" {
		p += project + "/"
	}
	kvs, err := store.ListAll(ctx, s, p)
	if err != nil {
		return nil, err
	}
	type obj struct {
		project string
		points  []ledgerPoint
	}
	objs := map[string]*obj{}
	var order []string
	for _, kv := range kvs {
		var pt ledgerPoint
		if store.Decode(kv, &pt) != nil {
			continue
		}
		rest := kv.Key[len(ledgerPrefix):]
		proj, _, _ := strings.Cut(rest, "/")
		id := rest[:strings.LastIndexByte(rest, '/')]
		o := objs[id]
		if o == nil {
			o = &obj{project: proj}
			objs[id] = o
			order = append(order, id)
		}
		o.points = append(o.points, pt)
	}
	var out []Stored
	for _, id := range order {
		o := objs[id]
		sort.SliceStable(o.points, func(i, j int) bool { return o.points[i].At.Before(o.points[j].At) })
		for i, pt := range o.points {
			if pt.MiB == 0 {
				continue
			}
			st := Stored{Kind: pt.Kind, Project: o.project, Name: pt.Name, MiB: pt.MiB, From: pt.At}
			if i+1 < len(o.points) {
				st.To = o.points[i+1].At
			}
			out = append(out, st)
		}
	}
	return out, nil
}

// moveLedger moves a deleted project's ledger to the name as (which no
// project can have): showback keeps it, a new project of the old name
// starts with none.
func moveLedger(ctx context.Context, s store.Store, project, as string) error {
	return store.MoveJSON(ctx, s, ledgerPrefix+project+"/", ledgerPrefix+as+"/", func(*ledgerPoint) {})
}
