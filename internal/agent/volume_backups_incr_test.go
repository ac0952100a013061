package agent

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/kumocloud/kumo/api"
	"github.com/kumocloud/kumo/internal/driver"
	"github.com/kumocloud/kumo/internal/volumes/pool"
)

// chunkServer keeps the chunks it is sent and the last manifest.
type chunkServer struct {
	have     map[string][]byte
	manifest []string
}

func (s *chunkServer) BackupManifest(_ context.Context, _ string, m api.BackupManifest) (api.BackupMissing, error) {
	s.manifest = m.Chunks
	out := api.BackupMissing{Missing: []string{}}
	for _, c := range m.Chunks {
		if c != "" && s.have[c] == nil && !slices.Contains(out.Missing, c) {
			out.Missing = append(out.Missing, c)
		}
	}
	return out, nil
}

func (s *chunkServer) BackupChunk(_ context.Context, _, sum string, data []byte) error {
	s.have[sum] = slices.Clone(data)
	return nil
}

func (s *chunkServer) RestoreManifest(context.Context, string, int64, int64) (api.BackupManifest, error) {
	return api.BackupManifest{}, errors.New("not here")
}

func (s *chunkServer) RestoreChunk(context.Context, string, string) (io.ReadCloser, error) {
	return nil, errors.New("not here")
}

// TestIncrementalBackupManifest: an incremental copy's manifest is the
// base's with the changed chunks read from the copy (the others are not
// read: the copy holds zeros there), and only those chunks are sent; it
// restores to the volume's bytes. A base chunk the server no longer has
// is errBaseGone (the next round sends the backup whole).
func TestIncrementalBackupManifest(t *testing.T) {
	const chunks = 8
	dir := t.TempDir()
	vol := make([]byte, chunks*api.BackupChunk)
	rand.Read(vol[:3*api.BackupChunk])
	full := filepath.Join(dir, "full")
	os.WriteFile(full, vol, 0o600)
	srv := &chunkServer{have: map[string][]byte{}}
	j := &volumeJob{bk: srv, dir: dir}
	base := &trackedCopy{copy: driver.VolumeCopy{Size: int64(len(vol))}}
	if err := j.sendBackup(context.Background(), "b1", full, pool.Ext4, base); err != nil {
		t.Fatal(err)
	}
	if len(srv.have) != 3 || len(base.chunks) != chunks {
		t.Fatalf("first backup: %d chunks sent, manifest of %d", len(srv.have), len(base.chunks))
	}

	// Chunk 1 changes, chunk 2 is zeroed, chunk 6 is written; the copy
	// holds only those (zeros elsewhere).
	rand.Read(vol[api.BackupChunk : api.BackupChunk+4096])
	clear(vol[2*api.BackupChunk : 3*api.BackupChunk])
	rand.Read(vol[6*api.BackupChunk+100 : 6*api.BackupChunk+200])
	incr := make([]byte, len(vol))
	for _, i := range []int{1, 2, 6} {
		copy(incr[i*api.BackupChunk:(i+1)*api.BackupChunk], vol[i*api.BackupChunk:])
	}
	cp := filepath.Join(dir, "incr")
	os.WriteFile(cp, incr, 0o600)
	t2 := &trackedCopy{base: &backupBase{Backup: "b1", Size: int64(len(vol)), Chunks: base.chunks},
		copy: driver.VolumeCopy{Size: int64(len(vol)), Incremental: true, Changed: []int64{1, 2, 6}}}
	before := len(srv.have)
	if err := j.sendBackup(context.Background(), "b2", cp, pool.Ext4, t2); err != nil {
		t.Fatal(err)
	}
	if sent := len(srv.have) - before; sent != 2 {
		t.Errorf("%d chunks sent for 2 changed (one zeroed)", sent)
	}
	var restored []byte
	for _, c := range srv.manifest {
		if c == "" {
			restored = append(restored, make([]byte, api.BackupChunk)...)
		} else {
			restored = append(restored, srv.have[c]...)
		}
	}
	if sha256.Sum256(restored) != sha256.Sum256(vol) {
		t.Fatal("the incremental backup does not restore to the volume")
	}

	// The server lost chunk 0 (its backups deleted).
	h := sha256.Sum256(vol[:api.BackupChunk])
	delete(srv.have, hex.EncodeToString(h[:]))
	t3 := &trackedCopy{base: &backupBase{Backup: "b2", Size: int64(len(vol)), Chunks: t2.chunks},
		copy: driver.VolumeCopy{Size: int64(len(vol)), Incremental: true}}
	if err := j.sendBackup(context.Background(), "b3", filepath.Join(dir, "incr"), pool.Ext4, t3); !errors.Is(err, errBaseGone) {
		t.Fatalf("a base chunk gone from the server: %v, want errBaseGone", err)
	}
}
