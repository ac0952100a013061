package volumes

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/kumocloud/kumo/api"
	"github.com/kumocloud/kumo/internal/errs"
	"github.com/kumocloud/kumo/internal/quota"
	"github.com/kumocloud/kumo/internal/store"
)

// backupOf makes a 1 GiB volume of project on h1 and a backup of it
// (status creating: its host is to send it), NAME-b.
func backupOf(t *testing.T, e *env, project, name string) api.VolumeBackup {
	return bigBackupOf(t, e, project, name, 1)
}

// bigBackupOf is backupOf with a volume of gib GiB.
func bigBackupOf(t *testing.T, e *env, project, name string, gib int64) api.VolumeBackup {
	t.Helper()
	ctx := context.Background()
	v, err := e.svc.Create(ctx, project, api.VolumesPost{Name: name, SizeGiB: gib, Host: "h1"}, true)
	if err != nil {
		t.Fatal(err)
	}
	e.report(t, []string{"h1"}, api.VolumeReport{ID: v.ID, Status: "ready", SizeGiB: gib})
	b, err := e.svc.CreateBackup(ctx, project, name, api.VolumeBackupsPost{Name: name + "-b"})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestBackupStoredBytesAreTheProjectsOwn: what a backup stores (shown to
// its project as stored_bytes, and metered) counts the chunks its own
// project had not backed up before, never less because another project
// happens to hold the same bytes. Otherwise a tenant learns whether any
// other tenant's backup holds a 4 MiB chunk it guesses (write the guess,
// back it up, read stored_bytes), and pays nothing for bytes it keeps
// once the other tenant deletes its backup.
func TestBackupStoredBytesAreTheProjectsOwn(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, unlimited())
	if _, err := e.st.Txn(ctx, nil, []store.Op{quota.InitOp("q", unlimited())}); err != nil {
		t.Fatal(err)
	}
	h1 := map[string]bool{"h1": true}
	secret := []byte(strings.Repeat("the other tenant's secret ", 100))
	h := sha256.Sum256(secret)
	sum := hex.EncodeToString(h[:])
	chunks := make([]string, 1<<30/api.BackupChunk)
	chunks[7] = sum

	send := func(b api.VolumeBackup) api.VolumeBackup {
		t.Helper()
		miss, err := e.svc.FinishBackup(ctx, h1, e.inst, b.ID, api.BackupManifest{Chunks: chunks, Count: int64(len(chunks))})
		if err != nil {
			t.Fatal(err)
		}
		if len(miss.Missing) > 0 {
			if err := e.svc.PutChunk(ctx, h1, e.inst, b.ID, sum, strings.NewReader(string(secret))); err != nil {
				t.Fatal(err)
			}
			if miss, err = e.svc.FinishBackup(ctx, h1, e.inst, b.ID, api.BackupManifest{Chunks: chunks, Count: int64(len(chunks))}); err != nil || len(miss.Missing) > 0 {
				t.Fatalf("after the chunk: %+v %v", miss, err)
			}
		}
		got, err := e.svc.GetBackup(ctx, b.Project, b.Name)
		if err != nil || got.Status != api.VolumeAvailable {
			t.Fatalf("backup %s: %+v %v", b.Name, got, err)
		}
		return got
	}
	a := send(backupOf(t, e, "p", "va"))
	if a.StoredBytes <= 0 {
		t.Fatalf("the first backup of the chunk stores %d bytes", a.StoredBytes)
	}
	b := send(backupOf(t, e, "q", "vb"))
	if b.StoredBytes != a.StoredBytes {
		t.Errorf("project q's first backup of the same bytes says it stores %d bytes, project p's %d: q learns p holds them", b.StoredBytes, a.StoredBytes)
	}
	// A second backup of the same bytes in q adds nothing: that is q's own.
	again, err := e.svc.CreateBackup(ctx, "q", "vb", api.VolumeBackupsPost{Name: "vb-2"})
	if err != nil {
		t.Fatal(err)
	}
	if c := send(again); c.StoredBytes != 0 {
		t.Errorf("q's second backup of its own bytes stores %d bytes, want 0", c.StoredBytes)
	}
}

// TestBackupManifestMustFitTheVolume: a host's manifest says how many
// chunks the backup has; more than its volume holds is refused, or a
// restore would make a volume larger than the one backed up (and than
// its quota): its host's disk filled past what the project may use.
func TestBackupManifestMustFitTheVolume(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, unlimited())
	h1 := map[string]bool{"h1": true}
	b := backupOf(t, e, "p", "v")
	n := int64(1 << 30 / api.BackupChunk)
	for _, count := range []int64{n + 1, 64 * n} {
		// Every page sent (zeros), then the last one.
		last := (count - 1) / api.BackupManifestPage * api.BackupManifestPage
		for off := int64(0); off < last; off += api.BackupManifestPage {
			if _, err := e.svc.FinishBackup(ctx, h1, e.inst, b.ID, api.BackupManifest{Chunks: make([]string, api.BackupManifestPage), Offset: off, Part: true}); err != nil {
				t.Fatal(err)
			}
		}
		_, err := e.svc.FinishBackup(ctx, h1, e.inst, b.ID, api.BackupManifest{Chunks: make([]string, count-last), Offset: last, Count: count})
		if kindOf(err) != errs.KindInvalid {
			t.Errorf("a manifest of %d chunks for a 1 GiB volume (%d chunks): %v", count, n, err)
		}
	}
	if got, _ := e.svc.GetBackup(ctx, "p", "v-b"); got.Status != api.VolumeCreating {
		t.Fatalf("the backup after the refusals: %s", got.Status)
	}
	// The right count is taken.
	if _, err := e.svc.FinishBackup(ctx, h1, e.inst, b.ID, api.BackupManifest{Chunks: make([]string, n), Count: n}); err != nil {
		t.Fatal(err)
	}
	if got, _ := e.svc.GetBackup(ctx, "p", "v-b"); got.Status != api.VolumeAvailable {
		t.Fatalf("the backup: %s", got.Status)
	}
}

// TestBackupNotDeletedWhileRestored: a volume backup a volume is being
// restored from is not deleted under it (its chunks would go mid-restore,
// leaving the volume in error for good), as an instance backup is not.
func TestBackupNotDeletedWhileRestored(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, unlimited())
	h1 := map[string]bool{"h1": true}
	b := backupOf(t, e, "p", "v")
	n := int64(1 << 30 / api.BackupChunk)
	if _, err := e.svc.FinishBackup(ctx, h1, e.inst, b.ID, api.BackupManifest{Chunks: make([]string, n), Count: n}); err != nil {
		t.Fatal(err)
	}
	r, err := e.svc.Create(ctx, "p", api.VolumesPost{Name: "r", SizeGiB: 1, Host: "h1", Backup: b.Name}, true)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.svc.DeleteBackup(ctx, "p", b.Name); kindOf(err) != errs.KindConflict {
		t.Fatalf("deleting the backup a volume is being restored from: %v", err)
	}
	e.report(t, []string{"h1"}, api.VolumeReport{ID: r.ID, Status: "ready", SizeGiB: 1})
	if err := e.svc.DeleteBackup(ctx, "p", b.Name); err != nil {
		t.Fatalf("once the volume is made: %v", err)
	}
}

// failingTxn is a store whose next transaction fails once armed, as a
// server killed between two writes would leave things.
type failingTxn struct {
	store.Store
	armed bool
}

func (f *failingTxn) Txn(ctx context.Context, conds []store.Cond, ops []store.Op) (int64, error) {
	if f.armed {
		f.armed = false
		return 0, errors.New("the server died here")
	}
	return f.Store.Txn(ctx, conds, ops)
}

// TestBackupFinishedTwice: a server that dies between keeping a
// finished manifest and writing the backup available (or whose write
// lost a race) takes the host's next try of the last page: the backup
// becomes available, as if nothing happened. (The manifest was already
// renamed into place, so the retried last page found the earlier pages
// gone and the backup failed for good.)
func TestBackupFinishedTwice(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, unlimited())
	fs := &failingTxn{Store: e.st}
	e.svc.s = fs
	h1 := map[string]bool{"h1": true}
	b := bigBackupOf(t, e, "p", "v", 40)
	n := int64(40 << 30 / api.BackupChunk) // two pages
	if _, err := e.svc.FinishBackup(ctx, h1, e.inst, b.ID, api.BackupManifest{Chunks: make([]string, api.BackupManifestPage), Part: true}); err != nil {
		t.Fatal(err)
	}
	last := api.BackupManifest{Chunks: make([]string, n-api.BackupManifestPage), Offset: api.BackupManifestPage, Count: n}
	fs.armed = true
	if _, err := e.svc.FinishBackup(ctx, h1, e.inst, b.ID, last); err == nil {
		t.Fatal("the armed failure did not happen")
	}
	if miss, err := e.svc.FinishBackup(ctx, h1, e.inst, b.ID, last); err != nil || len(miss.Missing) > 0 {
		t.Fatalf("the last page again: %+v %v", miss, err)
	}
	got, err := e.svc.GetBackup(ctx, "p", b.Name)
	if err != nil || got.Status != api.VolumeAvailable {
		t.Fatalf("the backup: %s %v", got.Status, err)
	}
	p, err := e.svc.manifestPage(got, 0, 0)
	if err != nil || p.Count != n {
		t.Fatalf("its manifest: %d chunks, %v", p.Count, err)
	}
}

// TestRestoreManifestComesInPages: an agent asking for a restore's
// manifest whole (limit 0, or a limit past a page) gets one page: a 16 TiB
// backup's manifest (four million chunks, ~300 MB in memory and as JSON)
// is never built for one request.
func TestRestoreManifestComesInPages(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, unlimited())
	h1, h2 := map[string]bool{"h1": true}, map[string]bool{"h2": true}
	b := bigBackupOf(t, e, "p", "v", 40)
	n := int64(40 << 30 / api.BackupChunk)
	for off := int64(0); off < n; off += api.BackupManifestPage {
		page := api.BackupManifest{Chunks: make([]string, min(api.BackupManifestPage, n-off)), Offset: off, Part: off+api.BackupManifestPage < n, Count: n}
		if _, err := e.svc.FinishBackup(ctx, h1, e.inst, b.ID, page); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := e.svc.Create(ctx, "p", api.VolumesPost{Name: "r", SizeGiB: 40, Host: "h2", Backup: b.Name}, true); err != nil {
		t.Fatal(err)
	}
	for _, limit := range []int64{0, n} {
		p, err := e.svc.BackupManifest(ctx, h2, e.inst, b.ID, 0, limit)
		if err != nil {
			t.Fatal(err)
		}
		if len(p.Chunks) != api.BackupManifestPage || p.Count != n {
			t.Errorf("limit %d: %d chunks of %d in one answer, want a page of %d", limit, len(p.Chunks), p.Count, api.BackupManifestPage)
		}
	}
}

// TestChunksGoWhileAnotherBackupIsMade: deleting a backup removes the
// chunks no other backup lists even while another backup is being made
// (the chunks that one has sent are kept, and it finishes): a backup that
// stays creating - its host gone quiet - no longer keeps every deleted
// backup's chunks on the server's disk for good.
func TestChunksGoWhileAnotherBackupIsMade(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, unlimited())
	h1 := map[string]bool{"h1": true}
	n := int64(1 << 30 / api.BackupChunk)
	// send sends a backup whose chunk 3 holds data, as its host does: the
	// manifest, the chunk the server lacks, then (finish) the manifest again.
	send := func(b api.VolumeBackup, data string, finish bool) string {
		t.Helper()
		h := sha256.Sum256([]byte(data))
		sum := hex.EncodeToString(h[:])
		m := api.BackupManifest{Chunks: make([]string, n), Count: n}
		m.Chunks[3] = sum
		if miss, err := e.svc.FinishBackup(ctx, h1, e.inst, b.ID, m); err != nil || len(miss.Missing) != 1 {
			t.Fatalf("manifest: %+v %v", miss, err)
		}
		if err := e.svc.PutChunk(ctx, h1, e.inst, b.ID, sum, strings.NewReader(data)); err != nil {
			t.Fatal(err)
		}
		if finish {
			if miss, err := e.svc.FinishBackup(ctx, h1, e.inst, b.ID, m); err != nil || len(miss.Missing) != 0 {
				t.Fatalf("manifest again: %+v %v", miss, err)
			}
		}
		return sum
	}
	has := func(sum string) bool { _, err := os.Stat(e.svc.chunkPath(sum)); return err == nil }
	old := backupOf(t, e, "p", "old")
	oldSum := send(old, "the old backup's bytes", true)
	making := backupOf(t, e, "p", "new")
	makingSum := send(making, "the new backup's bytes", false)
	if err := e.svc.DeleteBackup(ctx, "p", old.Name); err != nil {
		t.Fatal(err)
	}
	if has(oldSum) {
		t.Errorf("the deleted backup's chunk is kept while another backup is being made")
	}
	if !has(makingSum) {
		t.Fatalf("the chunk of the backup being made was removed")
	}
	m := api.BackupManifest{Chunks: make([]string, n), Count: n}
	m.Chunks[3] = makingSum
	if miss, err := e.svc.FinishBackup(ctx, h1, e.inst, making.ID, m); err != nil || len(miss.Missing) != 0 {
		t.Fatalf("the backup being made, finished: %+v %v", miss, err)
	}
}

// TestVolumeNotDeletedWhileBackedUp: a volume whose backup is being made
// is not deleted under it (its host removed the file and the backup
// stayed creating for good, in the quota); once the backup is made, or
// deleted, the volume is.
func TestVolumeNotDeletedWhileBackedUp(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, unlimited())
	b := backupOf(t, e, "p", "v")
	if _, err := e.svc.Delete(ctx, "p", "v"); kindOf(err) != errs.KindConflict || !strings.Contains(err.Error(), b.Name) {
		t.Fatalf("deleting a volume being backed up: %v", err)
	}
	if err := e.svc.DeleteBackup(ctx, "p", b.Name); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.Delete(ctx, "p", "v"); err != nil {
		t.Fatalf("once the backup is gone: %v", err)
	}
}

// TestVolumeOfAGoneInstanceWaitsForItsBackup: a volume deleted with its
// instance (delete on terminate) waits for a backup of it being made (an
// instance backup's, say) before its host is told to remove it; then it
// goes.
func TestVolumeOfAGoneInstanceWaitsForItsBackup(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, unlimited())
	h1 := map[string]bool{"h1": true}
	v, err := e.svc.Create(ctx, "p", api.VolumesPost{Name: "v", SizeGiB: 1, Near: "vm1"}, false)
	if err != nil {
		t.Fatal(err)
	}
	e.report(t, []string{"h1"}, api.VolumeReport{ID: v.ID, Status: "ready", SizeGiB: 1})
	if _, err := e.svc.Attach(ctx, "p", "v", api.VolumeAttach{Instance: "vm1"}); err != nil {
		t.Fatal(err)
	}
	e.report(t, []string{"h1"}, api.VolumeReport{ID: v.ID, Status: "ready", SizeGiB: 1, AttachedTo: "id-vm1"})
	if _, err := e.svc.update(ctx, "p", "v", func(r *record) error { r.DeleteOnTerminate = true; return nil }); err != nil {
		t.Fatal(err)
	}
	b, err := e.svc.CreateBackup(ctx, "p", "v", api.VolumeBackupsPost{Name: "b"})
	if err != nil {
		t.Fatal(err)
	}
	delete(e.inst, "vm1") // terminated
	e.report(t, []string{"h1"}, api.VolumeReport{ID: v.ID, Status: "ready", SizeGiB: 1})
	if got, _ := e.svc.Get(ctx, "p", "v"); got.Status == api.VolumeDeleting {
		t.Fatal("the volume is deleted while its backup is being made")
	}
	n := int64(1 << 30 / api.BackupChunk)
	if _, err := e.svc.FinishBackup(ctx, h1, e.inst, b.ID, api.BackupManifest{Chunks: make([]string, n), Count: n}); err != nil {
		t.Fatal(err)
	}
	e.report(t, []string{"h1"}, api.VolumeReport{ID: v.ID, Status: "ready", SizeGiB: 1})
	if got, _ := e.svc.Get(ctx, "p", "v"); got.Status != api.VolumeDeleting || got.Attachment != nil {
		t.Fatalf("once the backup is made: %s, attachment %+v", got.Status, got.Attachment)
	}
}
