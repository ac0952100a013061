package volumes

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/kumocloud/kumo/api"
	"github.com/kumocloud/kumo/internal/errs"
	"github.com/kumocloud/kumo/internal/store"
)

// TestBackupLargeManifest: a backup of a 1000 GiB volume (256,000
// chunks, far more than one request body or store value holds) is sent
// in pages, checked whole, kept beside the chunks (its store record stays
// small) and read back in pages by the host restoring it.
func TestBackupLargeManifest(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, unlimited())
	dir := t.TempDir()
	if err := e.svc.SetBackupDir(dir); err != nil {
		t.Fatal(err)
	}
	h1, h2 := map[string]bool{"h1": true}, map[string]bool{"h2": true}
	v, _ := e.svc.Create(ctx, "p", api.VolumesPost{Name: "big", SizeGiB: 1000, Near: "vm1"}, false)
	e.report(t, []string{"h1"}, api.VolumeReport{ID: v.ID, Status: "ready", SizeGiB: 1000})
	b, err := e.svc.CreateBackup(ctx, "p", "big", api.VolumeBackupsPost{Name: "b"})
	if err != nil {
		t.Fatalf("a backup of a 1000 GiB volume: %v", err)
	}
	const n = 1000 << 30 / api.BackupChunk
	chunks := make([]string, n)
	data := map[string][]byte{}
	for i, at := range []int{5, 100000, 255999, 170000} {
		d := []byte(strings.Repeat(string(rune('a'+i%3)), 1000))
		h := sha256.Sum256(d)
		sum := hex.EncodeToString(h[:])
		chunks[at], data[sum] = sum, d
	}
	page := func(off int) []string { return chunks[off:min(off+api.BackupManifestPage, n)] }
	last := (n - 1) / api.BackupManifestPage * api.BackupManifestPage
	finish := func() (api.BackupMissing, error) {
		return e.svc.FinishBackup(ctx, h1, e.inst, b.ID, api.BackupManifest{Chunks: page(last), Offset: int64(last), Count: n})
	}
	if _, err := e.svc.FinishBackup(ctx, h1, e.inst, b.ID, api.BackupManifest{Chunks: chunks[:api.BackupManifestPage+1], Part: true}); kindOf(err) != errs.KindInvalid {
		t.Errorf("a page too long: %v", err)
	}
	// Pages in any order; the last one before a middle one is refused.
	for off := last - api.BackupManifestPage; off >= 0; off -= api.BackupManifestPage {
		if off == 8*api.BackupManifestPage {
			continue
		}
		if _, err := e.svc.FinishBackup(ctx, h1, e.inst, b.ID, api.BackupManifest{Chunks: page(off), Offset: int64(off), Part: true}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := finish(); kindOf(err) != errs.KindInvalid || !strings.Contains(err.Error(), "never sent") {
		t.Fatalf("a manifest with a page missing: %v", err)
	}
	off := 8 * api.BackupManifestPage
	if _, err := e.svc.FinishBackup(ctx, h1, e.inst, b.ID, api.BackupManifest{Chunks: page(off), Offset: int64(off), Part: true}); err != nil {
		t.Fatal(err)
	}
	miss, err := finish()
	if err != nil {
		t.Fatal(err)
	}
	want := []string{chunks[5], chunks[100000], chunks[255999]} // in manifest order, once each (170000 is 5's again)
	if !slices.Equal(miss.Missing, want) || miss.More {
		t.Fatalf("missing: %v (more %v), want %v", miss.Missing, miss.More, want)
	}
	for sum, d := range data {
		if err := e.svc.PutChunk(ctx, h1, e.inst, b.ID, sum, strings.NewReader(string(d))); err != nil {
			t.Fatal(err)
		}
	}
	if miss, err := finish(); err != nil || len(miss.Missing) != 0 {
		t.Fatalf("after the chunks: %+v %v", miss, err)
	}
	var rec api.VolumeBackup
	if _, err := store.GetJSON(ctx, e.st, backupKey("p", "b"), &rec); err != nil {
		t.Fatal(err)
	}
	raw, _ := json.Marshal(rec)
	if rec.Status != api.VolumeAvailable || len(raw) > 4096 {
		t.Fatalf("the backup's record: %s, %d bytes", rec.Status, len(raw))
	}

	// Restored on h2: the manifest read in pages is the one sent.
	cp, err := e.svc.Create(ctx, "p", api.VolumesPost{Name: "copy", SizeGiB: 1000, Near: "vm2", Backup: "b"}, false)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.BackupManifest(ctx, h1, e.inst, b.ID, 0, 10); kindOf(err) != errs.KindNotFound {
		t.Errorf("h1 restores nothing from it: %v", err)
	}
	var got []string
	for {
		p, err := e.svc.BackupManifest(ctx, h2, e.inst, b.ID, int64(len(got)), api.BackupManifestPage)
		if err != nil {
			t.Fatal(err)
		}
		if p.Count != n || p.Offset != int64(len(got)) {
			t.Fatalf("a page: offset %d count %d", p.Offset, p.Count)
		}
		got = append(got, p.Chunks...)
		if len(p.Chunks) == 0 || len(got) >= n {
			break
		}
	}
	if !slices.Equal(got, chunks) {
		t.Fatalf("the manifest read back differs (%d chunks)", len(got))
	}
	rc, err := e.svc.OpenChunk(ctx, h2, e.inst, b.ID, chunks[255999])
	if err != nil {
		t.Fatal(err)
	}
	d, _ := io.ReadAll(rc)
	rc.Close()
	if string(d) != string(data[chunks[255999]]) {
		t.Errorf("chunk read back: %q", d)
	}
	other := sha256.Sum256([]byte("not in it"))
	if _, err := e.svc.OpenChunk(ctx, h2, e.inst, b.ID, hex.EncodeToString(other[:])); kindOf(err) != errs.KindNotFound {
		t.Errorf("a chunk the backup does not list: %v", err)
	}
	// Deleted once the copy is made: its manifest and chunks go.
	e.report(t, []string{"h2"}, api.VolumeReport{ID: cp.ID, Status: "ready", SizeGiB: 1000})
	if err := e.svc.DeleteBackup(ctx, "p", "b"); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{"chunks", "manifests", "tmp"} {
		if left, _ := os.ReadDir(filepath.Join(dir, d)); len(left) != 0 {
			t.Errorf("%s left after the backup went: %v", d, left)
		}
	}
}
