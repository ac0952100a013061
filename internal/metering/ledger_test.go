package metering

import (
	"context"
	"testing"
	"time"

	"github.com/kumocloud/kumo/api"
	"github.com/kumocloud/kumo/internal/store"
	"github.com/kumocloud/kumo/internal/store/memstore"
)

// TestStorageLedger: a volume is billed for its provisioned size from
// create to delete (a resize splits it), a snapshot and a backup for what
// they store, each at its own price, to the MiB; a project's deletion
// moves its ledger away from the name.
func TestStorageLedger(t *testing.T) {
	ctx := context.Background()
	st := memstore.New()
	put := func(ops ...store.Op) {
		t.Helper()
		if _, err := st.Txn(ctx, nil, ops); err != nil {
			t.Fatal(err)
		}
	}
	// volume v: 10 GiB 1h, 20 GiB 2h, deleted; snapshot s: 10 GiB 3h, still
	// kept at the report's end; backup b: 512 MiB for 4 h.
	put(StorageOp(KindVolume, "p", "v1", "v", 10<<10, t0))
	put(StorageOp(KindVolume, "p", "v1", "v", 20<<10, t0.Add(time.Hour)))
	put(StorageOp(KindVolume, "p", "v1", "v", 0, t0.Add(3*time.Hour)))
	put(StorageOp(KindSnapshot, "p", "s1", "v/s", 10<<10, t0.Add(5*time.Hour)))
	put(StorageOp(KindBackup, "p", "b1", "b", 512, t0), StorageOp(KindBackup, "p", "b1", "b", 0, t0.Add(4*time.Hour)))
	put(StorageOp(KindVolume, "q", "v2", "other", 1<<10, t0)) // another project
	stored, err := LoadStorage(ctx, st, "p")
	if err != nil {
		t.Fatal(err)
	}
	p := prices(100_000)
	p.Volumes = []api.PricePoint{{Micro: 1000}}
	p.Snapshots = []api.PricePoint{{Micro: 500}}
	p.Backups = []api.PricePoint{{Micro: 2000}, {Effective: t0.Add(2 * time.Hour), Micro: 4000}}
	end := t0.Add(8 * time.Hour)
	r := ReportAll(nil, nil, stored, p, rules, t0, end, end, ByInstance)
	byKey := map[string]api.UsageLine{}
	for _, g := range r.Groups {
		byKey[g.Key] = g
	}
	// volume: 10x1 + 20x2 = 50 GiB-h at 0.001; snapshot 10x3 = 30 GiB-h at
	// 0.0005; backup 0.5 GiB x 2h at 0.002 + x 2h at 0.004.
	if v := byKey["volume:v"]; v.VolumeGiBHours != 50 || v.CostMicro != 50_000 {
		t.Errorf("volume: %+v", v)
	}
	if s := byKey["snapshot:v/s"]; s.SnapshotGiBHours != 30 || s.CostMicro != 15_000 {
		t.Errorf("snapshot: %+v", s)
	}
	if b := byKey["backup:b"]; b.BackupGiBHours != 2 || b.CostMicro != 2000+4000 || len(b.Charges) != 2 || b.Charges[1].Hours != 1 {
		t.Errorf("backup: %+v", b)
	}
	if len(r.Groups) != 3 || r.Total.CostMicro != 71_000 {
		t.Errorf("report: %+v", r)
	}
	// By flavor each kind is one group; by project the other project
	// counts apart.
	all, _ := LoadStorage(ctx, st, "")
	r = ReportAll(nil, nil, all, p, rules, t0, end, end, ByProject)
	if len(r.Groups) != 2 || r.Groups[0].Key != "p" || r.Groups[0].CostMicro != 71_000 || r.Groups[1].VolumeGiBHours != 8 {
		t.Errorf("by project: %+v", r.Groups)
	}
	if err := ForgetProject(ctx, st, "p", "p.deleted-1"); err != nil {
		t.Fatal(err)
	}
	if left, _ := LoadStorage(ctx, st, "p"); len(left) != 0 {
		t.Errorf("a deleted project's ledger is still under its name: %+v", left)
	}
	if moved, _ := LoadStorage(ctx, st, "p.deleted-1"); len(moved) != len(stored) {
		t.Errorf("moved ledger: %+v", moved)
	}
}
