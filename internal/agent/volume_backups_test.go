package agent

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/kumocloud/kumo/api"
	"github.com/kumocloud/kumo/internal/volumes/pool"
)

// pagedServer is the server's side of backup manifests as the agent
// sees it: pages kept at their offset, the last one answered with at
// most a page of the chunks it lacks.
type pagedServer struct {
	t        *testing.T
	manifest []string
	have     map[string]bool
	pages    int
}

func (s *pagedServer) BackupManifest(_ context.Context, _ string, m api.BackupManifest) (api.BackupMissing, error) {
	if len(m.Chunks) > api.BackupManifestPage {
		s.t.Fatalf("a page of %d chunks", len(m.Chunks))
	}
	s.pages++
	if end := m.Offset + int64(len(m.Chunks)); int64(len(s.manifest)) < end {
		s.manifest = append(s.manifest, make([]string, end-int64(len(s.manifest)))...)
	}
	copy(s.manifest[m.Offset:], m.Chunks)
	if m.Part {
		return api.BackupMissing{}, nil
	}
	if m.Count != int64(len(s.manifest)) {
		s.t.Fatalf("count %d, %d chunks sent", m.Count, len(s.manifest))
	}
	out := api.BackupMissing{Missing: []string{}}
	for _, c := range s.manifest {
		if c != "" && !s.have[c] && !slices.Contains(out.Missing, c) {
			if len(out.Missing) == api.BackupManifestPage {
				out.More = true
				break
			}
			out.Missing = append(out.Missing, c)
		}
	}
	return out, nil
}

func (s *pagedServer) BackupChunk(context.Context, string, string, []byte) error { return nil }

func (s *pagedServer) RestoreManifest(_ context.Context, _ string, offset, limit int64) (api.BackupManifest, error) {
	n := int64(len(s.manifest))
	end := min(n, offset+limit)
	return api.BackupManifest{Chunks: s.manifest[min(offset, n):max(end, min(offset, n))], Offset: offset, Count: n}, nil
}

func (s *pagedServer) RestoreChunk(context.Context, string, string) (io.ReadCloser, error) {
	return nil, fmt.Errorf("not here")
}

// TestBackupManifestPaged: a manifest longer than a page goes in pages,
// the chunks the server lacks are sent over several rounds (it answers at
// most a page of them at a time), and a restore reads it back whole.
func TestBackupManifestPaged(t *testing.T) {
	for _, n := range []int{256, api.BackupManifestPage, 2*api.BackupManifestPage + 3000} {
		srv := &pagedServer{t: t, have: map[string]bool{}}
		j := &volumeJob{bk: srv}
		chunks := make([]string, n)
		for i := range chunks {
			if i%2 == 0 {
				chunks[i] = fmt.Sprintf("%064x", i)
			}
		}
		sent := 0
		err := j.sendManifest(context.Background(), "b", chunks, func(sum string) error {
			srv.have[sum] = true
			sent++
			return nil
		})
		if err != nil {
			t.Fatalf("%d chunks: %v", n, err)
		}
		if !slices.Equal(srv.manifest, chunks) || sent != (n+1)/2 {
			t.Fatalf("%d chunks: the server has %d, %d sent", n, len(srv.manifest), sent)
		}
		got, err := j.restoreManifest(context.Background(), "b")
		if err != nil || !slices.Equal(got, chunks) {
			t.Fatalf("%d chunks read back: %d %v", n, len(got), err)
		}
		t.Logf("%d chunks: %d manifest requests", n, srv.pages)
	}
}

// TestRestoreRefusesAManifestLargerThanTheVolume: a backup's manifest
// longer than the volume being made of it (a server that took one, or a
// backup from before the server checked) is refused, nothing left in the
// pool: a restore never makes a volume larger than its record says.
func TestRestoreRefusesAManifestLargerThanTheVolume(t *testing.T) {
	dir := t.TempDir()
	// 2 GiB of zero chunks for a 1 GiB volume.
	srv := &pagedServer{t: t, manifest: make([]string, 2<<30/api.BackupChunk), have: map[string]bool{}}
	j := &volumeJob{bk: srv, dir: dir}
	v := api.AgentVolume{ID: "3f0c2a9e-1d4b-4c6e-8f7a-0b1c2d3e4f50", SizeGiB: 1, Format: pool.Ext4, FromBackup: "5b2e8c1a-7d3f-4e9b-a6c4-1f2e3d4c5b6a"}
	b := pool.Dir{Path: filepath.Join(dir, "local")}
	pv := poolVolume(v)
	err := j.restore(context.Background(), b, pv, v)
	if err == nil {
		st, _ := os.Stat(b.Source(pv))
		t.Fatalf("a 2 GiB manifest restored into a 1 GiB volume: a file of %d bytes", st.Size())
	}
	if b.Exists(pv) {
		t.Errorf("a volume file is left after the refusal")
	}
}

// TestVolumeJobSweepsWhatACrashLeft: the copies an agent killed in the
// middle of a backup, a restore or a volume made from an image left in
// its tmp dir (each as large as the volume's data) are removed when the
// volume job starts again: nothing of its own is in flight then.
func TestVolumeJobSweepsWhatACrashLeft(t *testing.T) {
	dir := t.TempDir()
	tmp := filepath.Join(dir, "tmp")
	os.MkdirAll(tmp, 0o700)
	for _, f := range []string{"backup-5b2e8c1a-7d3f-4e9b-a6c4-1f2e3d4c5b6a.qcow2", "backup-5b2e8c1a-7d3f-4e9b-a6c4-1f2e3d4c5b6a.qcow2.raw", "restore-3f0c2a9e-1d4b-4c6e-8f7a-0b1c2d3e4f50.raw", "image-123"} {
		if err := os.WriteFile(filepath.Join(tmp, f), []byte("left by a crash"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	j := &volumeJob{dir: dir, kick: make(chan struct{}, 1)}
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // the job starts and stops: only its start's work is done
	j.run(ctx)
	if left, _ := os.ReadDir(tmp); len(left) != 0 {
		t.Fatalf("left in the volume job's tmp dir after a restart: %v", left)
	}
}
