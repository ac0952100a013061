package agent

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/kumocloud/kumo/api"
	"github.com/kumocloud/kumo/internal/vmimage"
	"github.com/kumocloud/kumo/internal/volumes/pool"
)

// Backups: the host makes a consistent copy of the volume (as for a
// snapshot), reads it as raw bytes in chunks of api.BackupChunk, sends
// the manifest (sha256 of each chunk, "" for zeros) and then only the
// chunks the server says it lacks: every backup is incremental by chunk
// hashes. A restore writes the chunks of a manifest into a new sparse
// file, each checked against its hash.

// backupAPI is what backups need of the server.
type backupAPI interface {
	BackupManifest(ctx context.Context, backup string, m api.BackupManifest) (api.BackupMissing, error)
	BackupChunk(ctx context.Context, backup, sum string, data []byte) error
	RestoreManifest(ctx context.Context, backup string, offset, limit int64) (api.BackupManifest, error)
	RestoreChunk(ctx context.Context, backup, sum string) (io.ReadCloser, error)
}

func (s *serverAPI) BackupManifest(ctx context.Context, backup string, m api.BackupManifest) (api.BackupMissing, error) {
	return s.c.AgentBackupManifest(ctx, s.id, backup, m)
}

func (s *serverAPI) BackupChunk(ctx context.Context, backup, sum string, data []byte) error {
	return s.c.AgentBackupChunk(ctx, s.id, backup, sum, data)
}

func (s *serverAPI) RestoreManifest(ctx context.Context, backup string, offset, limit int64) (api.BackupManifest, error) {
	return s.c.AgentBackup(ctx, s.id, backup, offset, limit)
}

func (s *serverAPI) RestoreChunk(ctx context.Context, backup, sum string) (io.ReadCloser, error) {
	return s.c.AgentBackupChunkRead(ctx, s.id, backup, sum)
}

// startBackups makes the consistent copy of each backup asked for (under
// the job's lock: it may go through the instance) and sends it on its own
// goroutine.
func (j *volumeJob) startBackups(ctx context.Context, b pool.Backend, pv pool.Volume, v api.AgentVolume) {
	for _, id := range v.Backups {
		if pool.CheckID(id) != nil {
			continue
		}
		j.bmu.Lock()
		busy := j.inflight[id]
		j.bmu.Unlock()
		if busy {
			continue
		}
		dir := filepath.Join(j.dir, "tmp")
		if err := os.MkdirAll(dir, 0o700); err != nil {
			continue
		}
		cp := filepath.Join(dir, "backup-"+id+"."+pv.Format)
		if err := j.takeSnapshot(ctx, b, pv, v.ID, cp); err != nil {
			j.bk.BackupManifest(ctx, id, api.BackupManifest{Error: "copying the volume: " + err.Error()})
			continue
		}
		j.bmu.Lock()
		j.inflight[id] = true
		j.bmu.Unlock()
		go func() {
			defer func() {
				os.Remove(cp)
				j.bmu.Lock()
				delete(j.inflight, id)
				j.bmu.Unlock()
			}()
			if err := j.sendBackup(ctx, id, cp, pv.Format); err != nil && ctx.Err() == nil {
				j.log.Warn("sending a backup", "backup", id, "err", err)
				j.bk.BackupManifest(ctx, id, api.BackupManifest{Error: err.Error()})
			}
		}()
	}
}

// sendBackup sends a copy's chunks that the server lacks, then its
// manifest.
func (j *volumeJob) sendBackup(ctx context.Context, id, cp, format string) error {
	raw := cp
	if format == pool.Qcow2 {
		raw = cp + ".raw"
		defer os.Remove(raw)
		src := vmimage.JSONFilename(vmimage.Node(cp, vmimage.FormatQcow2))
		if out, err := exec.CommandContext(ctx, "qemu-img", "convert", "-O", "raw", src, raw).CombinedOutput(); err != nil {
			return fmt.Errorf("qemu-img convert: %v: %s", err, strings.TrimSpace(string(out)))
		}
	}
	f, err := os.Open(raw)
	if err != nil {
		return err
	}
	defer f.Close()
	var m api.BackupManifest
	at := map[string]int64{}
	buf := make([]byte, api.BackupChunk)
	zero := make([]byte, api.BackupChunk)
	for off := int64(0); ; off += api.BackupChunk {
		n, err := io.ReadFull(f, buf)
		if n == 0 {
			break
		}
		if bytes.Equal(buf[:n], zero[:n]) {
			m.Chunks = append(m.Chunks, "")
		} else {
			h := sha256.Sum256(buf[:n])
			sum := hex.EncodeToString(h[:])
			m.Chunks = append(m.Chunks, sum)
			at[sum] = off
		}
		if err != nil {
			break
		}
	}
	return j.sendManifest(ctx, id, m.Chunks, func(sum string) error {
		off, ok := at[sum]
		if !ok {
			return fmt.Errorf("the server asks for chunk %s, which is not in the backup", sum)
		}
		n, err := f.ReadAt(buf, off)
		if err != nil && err != io.EOF {
			return err
		}
		return j.bk.BackupChunk(ctx, id, sum, buf[:n])
	})
}

// sendManifest sends a backup's manifest in pages; the last one is
// answered with what the server lacks (a page of it at a time), sent
// (sendChunk) before the last page again.
func (j *volumeJob) sendManifest(ctx context.Context, id string, chunks []string, sendChunk func(sum string) error) error {
	n := int64(len(chunks))
	lastOff := n / api.BackupManifestPage * api.BackupManifestPage
	if lastOff == n && lastOff > 0 {
		lastOff -= api.BackupManifestPage
	}
	for off := int64(0); off < lastOff; off += api.BackupManifestPage {
		page := chunks[off : off+api.BackupManifestPage]
		if _, err := j.bk.BackupManifest(ctx, id, api.BackupManifest{Chunks: page, Offset: off, Part: true}); err != nil {
			return err
		}
	}
	sent := map[string]int{}
	for {
		miss, err := j.bk.BackupManifest(ctx, id, api.BackupManifest{Chunks: chunks[lastOff:], Offset: lastOff, Count: n})
		if err != nil {
			return err
		}
		if len(miss.Missing) == 0 {
			return nil
		}
		for _, sum := range miss.Missing {
			if sent[sum]++; sent[sum] > 3 {
				return fmt.Errorf("the server still lacks chunk %s after it was sent three times", sum)
			}
			if err := sendChunk(sum); err != nil {
				return err
			}
		}
	}
}

// restoreManifest reads a backup's manifest a page at a time.
func (j *volumeJob) restoreManifest(ctx context.Context, backup string) ([]string, error) {
	var all []string
	for {
		p, err := j.bk.RestoreManifest(ctx, backup, int64(len(all)), api.BackupManifestPage)
		if err != nil {
			return nil, err
		}
		if p.Count > api.MaxVolumeGiB<<30/api.BackupChunk || p.Offset != int64(len(all)) || len(p.Chunks) > api.BackupManifestPage {
			return nil, fmt.Errorf("backup %s: a bad manifest page (offset %d, %d chunks of %d)", backup, p.Offset, len(p.Chunks), p.Count)
		}
		all = append(all, p.Chunks...)
		if int64(len(all)) >= p.Count || len(p.Chunks) == 0 {
			if int64(len(all)) != p.Count {
				return nil, fmt.Errorf("backup %s: its manifest has %d chunks, %d read", backup, p.Count, len(all))
			}
			return all, nil
		}
	}
}

// restore makes a new volume from a backup.
func (j *volumeJob) restore(ctx context.Context, b pool.Backend, pv pool.Volume, v api.AgentVolume) error {
	chunks, err := j.restoreManifest(ctx, v.FromBackup)
	if err != nil {
		return err
	}
	dir := filepath.Join(j.dir, "tmp")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	raw := filepath.Join(dir, "restore-"+v.ID+".raw")
	defer os.Remove(raw)
	f, err := os.Create(raw)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := f.Truncate(int64(len(chunks)) * api.BackupChunk); err != nil {
		return err
	}
	for i, sum := range chunks {
		if sum == "" {
			continue
		}
		rc, err := j.bk.RestoreChunk(ctx, v.FromBackup, sum)
		if err != nil {
			return err
		}
		data, err := io.ReadAll(io.LimitReader(rc, api.BackupChunk+1))
		rc.Close()
		if err != nil {
			return err
		}
		h := sha256.Sum256(data)
		if len(data) > api.BackupChunk || hex.EncodeToString(h[:]) != sum {
			return fmt.Errorf("chunk %d of backup %s does not hash to %s", i, v.FromBackup, sum)
		}
		if _, err := f.WriteAt(data, int64(i)*api.BackupChunk); err != nil {
			return err
		}
	}
	if err := f.Sync(); err != nil {
		return err
	}
	// The pool's directory may not be there yet: the first volume a host
	// has may be a restore (or a move to it).
	if err := os.MkdirAll(filepath.Dir(b.Source(pv)), 0o700); err != nil {
		return err
	}
	if pv.Format == pool.Qcow2 {
		tmp := b.Source(pv) + ".tmp"
		src := vmimage.JSONFilename(vmimage.Node(raw, vmimage.FormatRaw))
		if out, err := exec.CommandContext(ctx, "qemu-img", "convert", "-O", "qcow2", src, tmp).CombinedOutput(); err != nil {
			os.Remove(tmp)
			return fmt.Errorf("qemu-img convert: %v: %s", err, strings.TrimSpace(string(out)))
		}
		return os.Rename(tmp, b.Source(pv))
	}
	return pool.Copy(ctx, raw, b.Source(pv), pool.Ext4)
}
