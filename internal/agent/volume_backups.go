package agent

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"

	"github.com/kumocloud/kumo/api"
	"github.com/kumocloud/kumo/internal/driver"
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
		t, err := j.backupCopy(ctx, b, pv, v.ID, id, cp)
		if err != nil {
			j.bk.BackupManifest(ctx, id, api.BackupManifest{Error: "copying the volume: " + err.Error()})
			continue
		}
		j.sendInBackground(ctx, id, cp, pv.Format, v.ID, t)
	}
}

// sendInBackground sends a backup's copy cp on a goroutine of its own
// (the backup in flight meanwhile), then removes it.
func (j *volumeJob) sendInBackground(ctx context.Context, id, cp, format, volID string, t *trackedCopy) {
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
		err := j.sendBackup(ctx, id, cp, format, t)
		if t != nil {
			j.tracked(ctx, volID, id, t, err)
		}
		switch {
		case errors.Is(err, errBaseGone):
			// The next round copies the volume whole.
			j.bmu.Lock()
			j.full[id] = true
			j.bmu.Unlock()
			j.log.Info("a backup's base is gone from the server: sending it whole", "backup", id)
		case err != nil && ctx.Err() == nil:
			j.log.Warn("sending a backup", "backup", id, "err", err)
			j.bk.BackupManifest(ctx, id, api.BackupManifest{Error: err.Error()})
		}
	}()
}

// sendBackup sends a copy's chunks that the server lacks, then its
// manifest. An incremental copy (t) holds only the chunks written since
// the base backup: the others are the base's, and only the written ones
// are read.
func (j *volumeJob) sendBackup(ctx context.Context, id, cp, format string, t *trackedCopy) error {
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
	hash := func(off int64, n int) string {
		if bytes.Equal(buf[:n], zero[:n]) {
			return ""
		}
		h := sha256.Sum256(buf[:n])
		sum := hex.EncodeToString(h[:])
		at[sum] = off
		return sum
	}
	if t != nil && t.copy.Incremental {
		m.Chunks = slices.Clone(t.base.Chunks)
		for _, i := range t.copy.Changed {
			if i < 0 || i >= int64(len(m.Chunks)) {
				return fmt.Errorf("chunk %d changed in a volume of %d", i, len(m.Chunks))
			}
			off := i * api.BackupChunk
			n, err := f.ReadAt(buf, off)
			if err != nil && err != io.EOF {
				return err
			}
			m.Chunks[i] = hash(off, n)
		}
	} else {
		for off := int64(0); ; off += api.BackupChunk {
			n, err := io.ReadFull(f, buf)
			if n == 0 {
				break
			}
			m.Chunks = append(m.Chunks, hash(off, n))
			if err != nil {
				break
			}
		}
	}
	if t != nil {
		t.chunks = m.Chunks
	}
	return j.sendManifest(ctx, id, m.Chunks, func(sum string) error {
		off, ok := at[sum]
		if !ok && t != nil && t.copy.Incremental {
			// A chunk of the base that no backup on the server keeps
			// any more (its backups were deleted).
			return errBaseGone
		}
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

// restoreRaw writes a backup's bytes into a new sparse file at raw, each
// chunk checked against its hash; a backup of more than limit bytes is
// refused (0: only the largest volume's bound, which restoreManifest
// holds every manifest to).
func (j *volumeJob) restoreRaw(ctx context.Context, backup, raw string, limit int64) error {
	chunks, err := j.restoreManifest(ctx, backup)
	if err != nil {
		return err
	}
	// Never a volume larger than its record (and its project's quota).
	if limit > 0 && int64(len(chunks))*api.BackupChunk > limit {
		return fmt.Errorf("backup %s holds %d chunks, more than the %d GiB it is restored to has", backup, len(chunks), limit>>30)
	}
	if err := os.MkdirAll(filepath.Dir(raw), 0o700); err != nil {
		return err
	}
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
		rc, err := j.bk.RestoreChunk(ctx, backup, sum)
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
			return fmt.Errorf("chunk %d of backup %s does not hash to %s", i, backup, sum)
		}
		if _, err := f.WriteAt(data, int64(i)*api.BackupChunk); err != nil {
			return err
		}
	}
	return f.Sync()
}

// restore makes a new volume from a backup.
func (j *volumeJob) restore(ctx context.Context, b pool.Backend, pv pool.Volume, v api.AgentVolume) error {
	raw := filepath.Join(j.dir, "tmp", "restore-"+v.ID+".raw")
	defer os.Remove(raw)
	if err := j.restoreRaw(ctx, v.FromBackup, raw, v.SizeGiB<<30); err != nil {
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

// Incremental backups of a running VM's volume (QEMU dirty bitmaps, see
// internal/driver/qemu/volbackup.go): the driver copies the volume and
// tracks the guest's writes from then on under the backup's id; the
// agent keeps the manifest of the last backup the server took in
// backup-bases/<volume id>.json. The next backup asks the driver for the
// chunks written since that one and reads only those; the rest of its
// manifest is the base's. Anything amiss - no base here, the driver not
// tracking it (the VM crashed, the file was made anew by a restore, a
// move or a revert, the volume grew) - gives a whole copy, read whole, as
// any backup. A base chunk the server no longer keeps (the backups
// holding it were deleted) makes the next round send the backup whole.

// errBaseGone: the server lacks a chunk of the base backup.
var errBaseGone = errors.New("the server no longer has a chunk of the base backup")

// backupBase is the manifest of the last backup sent of a volume.
type backupBase struct {
	Backup string   `json:"backup"`
	Size   int64    `json:"size"`
	Chunks []string `json:"chunks"`
}

// trackedCopy is a backup's copy made by the driver.
type trackedCopy struct {
	a      attachment
	base   *backupBase // what the copy is incremental to, if it is
	copy   driver.VolumeCopy
	chunks []string // the manifest sent
}

func (j *volumeJob) basePath(volID string) string {
	return filepath.Join(j.dir, "backup-bases", volID+".json")
}

// readBase reads a volume's base, nil if it has none that fits.
func (j *volumeJob) readBase(volID string) *backupBase {
	var b backupBase
	bs, err := os.ReadFile(j.basePath(volID))
	if err != nil || json.Unmarshal(bs, &b) != nil || pool.CheckID(b.Backup) != nil ||
		int64(len(b.Chunks)) != (b.Size+api.BackupChunk-1)/api.BackupChunk {
		return nil
	}
	return &b
}

// writeBase replaces a volume's base (through a rename).
func (j *volumeJob) writeBase(volID string, b backupBase) error {
	p := j.basePath(volID)
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		return err
	}
	bs, _ := json.Marshal(b)
	if err := os.WriteFile(p+".tmp", bs, 0o600); err != nil {
		return err
	}
	return os.Rename(p+".tmp", p)
}

// backupCopy makes a backup's consistent copy at cp: a running VM's
// qcow2 volume through its driver, which tracks the writes from then on
// (and copies only those since the base when there is one); anything
// else as a snapshot is made.
func (j *volumeJob) backupCopy(ctx context.Context, b pool.Backend, pv pool.Volume, volID, id, cp string) (*trackedCopy, error) {
	a, attached := j.att[volID]
	bc, ok := j.d.(driver.VolumeBackupCopier)
	if attached && ok && a.Type == api.TypeVM && pv.Format == pool.Qcow2 {
		if st, err := j.d.Status(ctx, a.InstanceID); err == nil && (st.State == driver.Running || st.State == driver.Suspended) {
			j.bmu.Lock()
			whole := j.full[id]
			j.bmu.Unlock()
			base := j.readBase(volID)
			since, size := "", int64(0)
			if base != nil && !whole {
				since, size = base.Backup, base.Size
			}
			vc, err := bc.CopyVolumeForBackup(ctx, a.InstanceID, a.Volume, since, size, id, cp, api.BackupChunk)
			switch {
			case err == nil:
				t := &trackedCopy{a: a, copy: vc}
				if vc.Incremental {
					t.base = base
				}
				return t, nil
			case !errors.Is(err, driver.ErrNotTracked):
				os.Remove(cp)
				return nil, err
			}
		}
	}
	return nil, j.takeSnapshot(ctx, b, pv, volID, cp)
}

// tracked ends a tracked copy: once the server has the backup its
// manifest is the volume's base and only its tracking goes on; if it
// failed, the base's tracking goes on (the writes since the base).
func (j *volumeJob) tracked(ctx context.Context, volID, id string, t *trackedCopy, sent error) {
	bc, ok := j.d.(driver.VolumeBackupCopier)
	if !ok {
		return
	}
	keep := ""
	if sent == nil {
		if err := j.writeBase(volID, backupBase{Backup: id, Size: t.copy.Size, Chunks: t.chunks}); err != nil {
			j.log.Warn("keeping a backup's manifest", "backup", id, "err", err)
		} else {
			keep = id
			j.bmu.Lock()
			delete(j.full, id)
			j.bmu.Unlock()
		}
	} else if b := j.readBase(volID); b != nil {
		keep = b.Backup
	}
	if err := bc.KeepVolumeTracking(ctx, t.a.InstanceID, t.a.Volume, keep); err != nil && ctx.Err() == nil {
		j.log.Info("dropping tracked writes", "volume", volID, "err", err)
	}
}
