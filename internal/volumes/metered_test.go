package volumes

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"testing"
	"time"

	"github.com/kumocloud/kumo/api"
	"github.com/kumocloud/kumo/internal/errs"
	"github.com/kumocloud/kumo/internal/metering"
	"github.com/kumocloud/kumo/internal/quota"
)

// TestQuotaAndLedger: snapshots and backups count in their own quotas
// (a refusal names the quota), and each change of a volume, snapshot or
// backup writes its metering point in the same transaction: metering's
// stays follow the objects' lives exactly.
func TestQuotaAndLedger(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, api.ResourceCounts{Volumes: -1, VolumeGiB: -1, Snapshots: 1, Backups: 2, BackupGiB: 3})
	now := time.Date(2026, 11, 2, 10, 0, 0, 0, time.UTC)
	e.svc.now = func() time.Time { return now }
	if err := e.svc.SetBackupDir(t.TempDir()); err != nil {
		t.Fatal(err)
	}
	h1 := []string{"h1"}
	v, _ := e.svc.Create(ctx, "p", api.VolumesPost{Name: "data", SizeGiB: 2, Near: "vm1"}, false)
	e.report(t, h1, api.VolumeReport{ID: v.ID, Status: "ready", SizeGiB: 2})
	now = now.Add(time.Hour)
	if _, err := e.svc.Resize(ctx, "p", "data", 3); err != nil {
		t.Fatal(err)
	}
	e.report(t, h1, api.VolumeReport{ID: v.ID, Status: "ready", SizeGiB: 3})
	s1, err := e.svc.CreateSnapshot(ctx, "p", "data", api.VolumeSnapshotsPost{Name: "s1"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.CreateSnapshot(ctx, "p", "data", api.VolumeSnapshotsPost{Name: "s2"}); kindOf(err) != errs.KindQuotaExceeded || !strings.Contains(err.Error(), "snapshots") {
		t.Fatalf("a second snapshot past the snapshots quota: %v", err)
	}
	e.report(t, h1, api.VolumeReport{ID: v.ID, Status: "ready", SizeGiB: 3, Snapshots: []api.SnapshotReport{{ID: s1.ID, Status: "ready"}}})
	// backup_gib counts the volume's 3 GiB: a second backup would be 6.
	b, err := e.svc.CreateBackup(ctx, "p", "data", api.VolumeBackupsPost{Name: "b1"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.CreateBackup(ctx, "p", "data", api.VolumeBackupsPost{Name: "b2"}); kindOf(err) != errs.KindQuotaExceeded || !strings.Contains(err.Error(), "backup_gib") {
		t.Fatalf("a backup past backup_gib: %v", err)
	}
	data := make([]byte, 3<<20)
	rand.Read(data)
	sum := sha256.Sum256(data)
	chunk := hex.EncodeToString(sum[:])
	if err := e.svc.PutChunk(ctx, map[string]bool{"h1": true}, e.inst, b.ID, chunk, bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	chunks := make([]string, 3<<30/api.BackupChunk)
	chunks[0] = chunk
	if _, err := e.svc.FinishBackup(ctx, map[string]bool{"h1": true}, e.inst, b.ID, api.BackupManifest{Chunks: chunks}); err != nil {
		t.Fatal(err)
	}
	b, _ = e.svc.GetBackup(ctx, "p", "b1")
	q, _, _ := quota.Get(ctx, e.st, "p")
	if q.Usage.Snapshots != 1 || q.Usage.Backups != 1 || q.Usage.BackupGiB != 3 || q.Usage.VolumeGiB != 6 || b.StoredBytes < 3<<20 {
		t.Fatalf("usage %+v, backup %+v", q.Usage, b)
	}
	now = now.Add(2 * time.Hour)
	if err := e.svc.DeleteBackup(ctx, "p", "b1"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.DeleteSnapshot(ctx, "p", "data", "s1"); err != nil {
		t.Fatal(err)
	}
	e.report(t, h1, api.VolumeReport{ID: v.ID, Status: "ready", SizeGiB: 3, Snapshots: []api.SnapshotReport{{ID: s1.ID, Status: "gone"}}})
	if _, err := e.svc.Delete(ctx, "p", "data"); err != nil {
		t.Fatal(err)
	}
	now = now.Add(time.Hour)
	e.report(t, h1, api.VolumeReport{ID: v.ID, Status: "gone"})
	if q, _, _ := quota.Get(ctx, e.st, "p"); q.Usage != (api.ResourceCounts{}) {
		t.Fatalf("usage left after everything went: %+v", q.Usage)
	}
	stored, err := metering.LoadStorage(ctx, e.st, "p")
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Date(2026, 11, 2, 10, 0, 0, 0, time.UTC)
	want := []metering.Stored{
		{Kind: metering.KindVolume, Project: "p", Name: "data", MiB: 2 << 10, From: t0, To: t0.Add(time.Hour)},
		{Kind: metering.KindVolume, Project: "p", Name: "data", MiB: 3 << 10, From: t0.Add(time.Hour), To: t0.Add(4 * time.Hour)},
		{Kind: metering.KindSnapshot, Project: "p", Name: "data/s1", MiB: 3 << 10, From: t0.Add(time.Hour), To: t0.Add(3 * time.Hour)},
		{Kind: metering.KindBackup, Project: "p", Name: "b1", MiB: metering.MiBOfBytes(b.StoredBytes), From: t0.Add(time.Hour), To: t0.Add(3 * time.Hour)},
	}
	got := map[string]metering.Stored{}
	for _, s := range stored {
		got[s.Kind+s.From.String()] = s
	}
	if len(stored) != len(want) {
		t.Fatalf("ledger: %+v", stored)
	}
	for _, w := range want {
		if g := got[w.Kind+w.From.String()]; g.Name != w.Name || g.MiB != w.MiB || !g.To.Equal(w.To) {
			t.Errorf("ledger has %+v, want %+v", g, w)
		}
	}
}
