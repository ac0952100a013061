package volumes

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"path/filepath"
	"regexp"

	"github.com/google/uuid"

	"github.com/kumocloud/kumo/api"
	"github.com/kumocloud/kumo/internal/errs"
	"github.com/kumocloud/kumo/internal/events"
	"github.com/kumocloud/kumo/internal/idempotency"
	"github.com/kumocloud/kumo/internal/quota"
	"github.com/kumocloud/kumo/internal/store"
	"github.com/kumocloud/kumo/internal/validate"
)

// Backups are a volume's content kept by the server, away from every
// host: the volume's raw bytes cut in chunks of api.BackupChunk bytes,
// each kept once, gzip-compressed, named by the sha256 of its bytes (as
// image blobs are), and a manifest listing them ("" for a chunk of
// zeros, which is not kept). Every backup after the first is incremental
// by comparing chunk hashes: the host sends its manifest first and the
// server answers with the chunks it does not have, so only what changed
// since any earlier backup crosses the network and takes room.
//
// The host makes a backup as it makes a snapshot (consistent for an
// attached volume), reads it, and sends it; a restore makes a new volume
// on any host from the manifest. Keys: /volume-backups/{project}/{name};
// chunks: DATA_DIR/volume-backups/chunks/<sha256>.

const backupPrefix = "/volume-backups/"

func backupKey(project, name string) string { return backupPrefix + project + "/" + name }

func backupURL(project, name string) string {
	return "/v1/projects/" + project + "/volume-backups/" + name
}

var sumRE = regexp.MustCompile(`^[0-9a-f]{64}$`)

// chunkPath is where a chunk is kept.
func (svc *Service) chunkPath(sum string) string { return filepath.Join(svc.dir, "chunks", sum) }

// SetBackupDir gives the service its chunk store.
func (svc *Service) SetBackupDir(dir string) error {
	svc.dir = dir
	for _, d := range []string{"chunks", "tmp", "manifests"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o700); err != nil {
			return err
		}
	}
	return nil
}

func (svc *Service) getBackup(ctx context.Context, project, name string) (api.VolumeBackup, int64, error) {
	var b api.VolumeBackup
	rev, err := store.GetJSON(ctx, svc.s, backupKey(project, name), &b)
	if errors.Is(err, store.ErrNotFound) {
		return b, 0, errs.NotFound("backup %q not found in project %q", name, project)
	}
	b.Revision = rev
	return b, rev, err
}

// GetBackup returns a backup (its manifest left out).
func (svc *Service) GetBackup(ctx context.Context, project, name string) (api.VolumeBackup, error) {
	b, _, err := svc.getBackup(ctx, project, name)
	b.Chunks = nil
	return b, err
}

// ListBackups lists a project's backups.
func (svc *Service) ListBackups(ctx context.Context, project string) ([]api.VolumeBackup, error) {
	items, err := store.ListJSON[api.VolumeBackup](ctx, svc.s, backupPrefix+project+"/")
	out := []api.VolumeBackup{}
	for _, it := range items {
		b := it.Value
		b.Revision, b.Chunks = it.Revision, nil
		out = append(out, b)
	}
	return out, err
}

// CreateBackup asks the volume's host to send a backup of it.
func (svc *Service) CreateBackup(ctx context.Context, project, volume string, req api.VolumeBackupsPost) (api.VolumeBackup, error) {
	if err := validate.Name("name", req.Name); err != nil {
		return api.VolumeBackup{}, err
	}
	r, rev, err := svc.get(ctx, project, volume)
	if err != nil {
		return api.VolumeBackup{}, err
	}
	if r.Status != api.VolumeAvailable && r.Status != api.VolumeInUse {
		return api.VolumeBackup{}, errs.Conflict("volume %q is %s: backups are made of available or in-use volumes", volume, r.Status)
	}
	t := svc.now().UTC()
	b := api.VolumeBackup{Meta: api.Meta{ID: uuid.NewString(), Name: req.Name, CreatedAt: t, UpdatedAt: t},
		Project: project, Volume: volume, VolumeID: r.ID, SizeGiB: r.SizeGiB, Format: r.Format, Status: api.VolumeCreating}
	k := backupKey(project, req.Name)
	nrev, err := quota.Reserve(ctx, svc.s, project, backupCounts(1, b.SizeGiB), []store.Cond{store.Absent(k), store.At(key(project, volume), rev)},
		append([]store.Op{store.PutJSON(k, b), events.Op(ctx, "volume-backup", events.Created, project, backupURL(project, req.Name), b)},
			idempotency.Done(ctx, b)...))
	if errors.Is(err, store.ErrConflict) {
		return api.VolumeBackup{}, errs.Conflict("backup %q already exists, or volume %q changed meanwhile", req.Name, volume)
	}
	b.Revision = nrev
	return b, err
}

// DeleteBackup removes a backup and the chunks no other backup has.
func (svc *Service) DeleteBackup(ctx context.Context, project, name string) error {
	b, rev, err := svc.getBackup(ctx, project, name)
	if err != nil {
		return err
	}
	if b.InstanceBackup != "" {
		return errs.Conflict("backup %q belongs to instance backup %q: it goes with it (kumo instance backup delete %s)", name, b.InstanceBackup, b.InstanceBackup)
	}
	vs, err := store.ListJSON[record](ctx, svc.s, prefix+project+"/")
	if err != nil {
		return err
	}
	for _, v := range vs {
		if m := v.Value.Move; m != nil && m.Backup == b.ID {
			return errs.Conflict("backup %q carries volume %q to host %q: it goes when the move is done", name, v.Value.Name, m.To)
		}
		if v.Value.FromBackup == b.ID && v.Value.Status == api.VolumeCreating {
			return errs.Conflict("volume %q is being restored from backup %q: delete it once the volume is made", v.Value.Name, name)
		}
	}
	if _, err := quota.Reserve(ctx, svc.s, project, backupCounts(-1, -b.SizeGiB), []store.Cond{store.At(backupKey(project, name), rev)},
		[]store.Op{store.Del(backupKey(project, name)), meterBackup(&b, 0, svc.now())}); err != nil {
		if errors.Is(err, store.ErrConflict) {
			return errs.Conflict("backup %q changed meanwhile; try again", name)
		}
		return err
	}
	svc.dropUnusedChunks(ctx)
	return nil
}

// dropUnusedChunks removes chunks no backup lists, those of backups still
// being sent included (their partial manifests list every chunk they
// send: a host sends chunks only once its last page is in). It holds the
// write side of svc.gc, so no backup is being finished meanwhile.
func (svc *Service) dropUnusedChunks(ctx context.Context) {
	svc.gc.Lock()
	defer svc.gc.Unlock()
	items, err := store.ListJSON[api.VolumeBackup](ctx, svc.s, backupPrefix)
	if err != nil {
		return
	}
	used, ids := map[string]bool{}, map[string]bool{}
	for _, it := range items {
		ids[it.Value.ID] = true
		keep := func(_ int64, c string) error {
			used[c] = true
			return nil
		}
		if it.Value.Status == api.VolumeCreating {
			err = svc.partialChunks(it.Value.ID, keep)
		} else {
			err = svc.eachChunk(it.Value, keep)
		}
		if err != nil {
			return // a manifest not read: keep every chunk
		}
	}
	ents, _ := os.ReadDir(filepath.Join(svc.dir, "chunks"))
	for _, e := range ents {
		if !used[e.Name()] {
			os.Remove(svc.chunkPath(e.Name()))
		}
	}
	ents, _ = os.ReadDir(filepath.Join(svc.dir, "manifests"))
	for _, e := range ents {
		if !ids[e.Name()] {
			os.Remove(svc.manifestPath(e.Name()))
		}
	}
}

// backupsByVolume lists the backups being made, by volume id.
func (svc *Service) backupsByVolume(ctx context.Context) (map[string][]string, error) {
	items, err := store.ListJSON[api.VolumeBackup](ctx, svc.s, backupPrefix)
	out := map[string][]string{}
	for _, it := range items {
		if it.Value.Status == api.VolumeCreating {
			out[it.Value.VolumeID] = append(out[it.Value.VolumeID], it.Value.ID)
		}
	}
	return out, err
}

// backupByID finds a backup by id.
func (svc *Service) backupByID(ctx context.Context, id string) (api.VolumeBackup, int64, error) {
	items, err := store.ListJSON[api.VolumeBackup](ctx, svc.s, backupPrefix)
	if err != nil {
		return api.VolumeBackup{}, 0, err
	}
	for _, it := range items {
		if it.Value.ID == id {
			return it.Value, it.Revision, nil
		}
	}
	return api.VolumeBackup{}, 0, errs.NotFound("no backup %s", id)
}

// agentBackup finds a backup an agent's hosts send (making) or restore
// from.
func (svc *Service) agentBackup(ctx context.Context, hosts map[string]bool, live Live, id string, making bool) (api.VolumeBackup, int64, error) {
	view, err := svc.AgentView(ctx, hosts, live)
	if err != nil {
		return api.VolumeBackup{}, 0, err
	}
	for _, v := range view.Items {
		if making && v.Backups != nil {
			for _, b := range v.Backups {
				if b == id {
					return svc.backupByID(ctx, id)
				}
			}
		}
		if !making && v.FromBackup == id {
			return svc.backupByID(ctx, id)
		}
	}
	for _, r := range view.Roots {
		if making && r.Backup == id {
			return svc.backupByID(ctx, id)
		}
	}
	if rr, ok := live.(RootRestores); ok && !making && rr.RestoresRoot(ctx, hosts, id) {
		return svc.backupByID(ctx, id)
	}
	return api.VolumeBackup{}, 0, errs.NotFound("no backup %s for this agent's hosts", id)
}

// PutChunk keeps a chunk an agent sends for a backup it makes: its sha256
// checked, compressed, kept once.
func (svc *Service) PutChunk(ctx context.Context, hosts map[string]bool, live Live, backup, sum string, body io.Reader) error {
	if !sumRE.MatchString(sum) {
		return errs.Invalid("sha256", "a chunk is named by its sha256 (64 hex digits)")
	}
	if _, _, err := svc.agentBackup(ctx, hosts, live, backup, true); err != nil {
		return err
	}
	data, err := io.ReadAll(io.LimitReader(body, api.BackupChunk+1))
	if err != nil {
		return err
	}
	if len(data) > api.BackupChunk {
		return errs.Invalid("body", "a chunk is at most %d bytes", api.BackupChunk)
	}
	h := sha256.Sum256(data)
	if hex.EncodeToString(h[:]) != sum {
		return errs.Invalid("body", "the chunk's bytes do not hash to %s", sum)
	}
	if _, err := os.Stat(svc.chunkPath(sum)); err == nil {
		return nil
	}
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	zw.Write(data)
	zw.Close()
	tmp, err := os.CreateTemp(filepath.Join(svc.dir, "tmp"), "chunk-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(buf.Bytes()); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	tmp.Close()
	return os.Rename(tmp.Name(), svc.chunkPath(sum))
}

// FinishBackup takes an agent's manifest, or a page of it (manifest.go):
// once the last page is in, the chunks the server lacks are answered
// (the agent sends them and the last page again); with none missing the
// backup is available, its new bytes counted.
func (svc *Service) FinishBackup(ctx context.Context, hosts map[string]bool, live Live, backup string, req api.BackupManifest) (api.BackupMissing, error) {
	b, rev, err := svc.agentBackup(ctx, hosts, live, backup, true)
	if err != nil {
		return api.BackupMissing{}, err
	}
	k := backupKey(b.Project, b.Name)
	if req.Error != "" {
		b.Status, b.Error = api.VolumeError, req.Error
		_, err := svc.s.Txn(ctx, []store.Cond{store.At(k, rev)}, []store.Op{store.PutJSON(k, b)})
		os.Remove(svc.partialManifestPath(b.ID))
		return api.BackupMissing{Missing: []string{}}, err
	}
	out := api.BackupMissing{Missing: []string{}}
	// No chunk is removed from when this page is written (it may list
	// chunks that exist now) until the backup's record says what it
	// found (dropUnusedChunks).
	svc.gc.RLock()
	defer svc.gc.RUnlock()
	if err := svc.writeManifestPart(b.ID, req.Offset, req.Chunks); err != nil {
		return out, err
	}
	if req.Part {
		return out, nil
	}
	count := req.Count
	if count == 0 {
		count = req.Offset + int64(len(req.Chunks))
	}
	if count < req.Offset+int64(len(req.Chunks)) || count > maxChunks {
		return out, errs.Invalid("count", "count %d: the number of chunks in all", count)
	}
	switch want := (b.SizeGiB<<30 + api.BackupChunk - 1) / api.BackupChunk; {
	case b.RootOf == "" && count != want:
		// Exactly the volume's chunks: fewer do not cover it, and more
		// would restore into a volume larger than the one backed up (and
		// than the quota its project pays for). A volume grown while its
		// copy was made fails here; back it up again.
		return out, errs.Invalid("chunks", "%d chunks for a %d GiB volume, which has %d (did it grow while it was copied? back it up again)", count, b.SizeGiB, want)
	case b.RootOf != "" && count > want:
		// An instance's root disk (rootbackups.go) is as big as its
		// host found it, up to the whole GiB counted.
		return out, errs.Invalid("chunks", "%d chunks are more than a %d GiB root disk", count, b.SizeGiB)
	}
	if err := os.Truncate(svc.partialManifestPath(b.ID), count*lineLen); err != nil {
		return out, err
	}
	// What the backup adds is counted against its own project's backups
	// only: the chunk store is shared, but what one project's backup
	// stores (stored_bytes, metered) must not tell it whether another
	// project holds the same bytes, nor bill it less because one does.
	earlier := map[string]bool{}
	items, err := store.ListJSON[api.VolumeBackup](ctx, svc.s, backupPrefix+b.Project+"/")
	if err != nil {
		return out, err
	}
	for _, it := range items {
		if err := svc.eachChunk(it.Value, func(_ int64, c string) error {
			earlier[c] = true
			return nil
		}); err != nil {
			return out, err
		}
	}
	m, err := openManifest(svc.partialManifestPath(b.ID))
	if err != nil {
		return out, err
	}
	var stored, total int64
	seen := map[string]bool{}
	err = m.each(func(_ int64, c string) error {
		if c == "" || seen[c] {
			return nil
		}
		seen[c] = true
		st, err := os.Stat(svc.chunkPath(c))
		switch {
		case err != nil && len(out.Missing) < api.BackupManifestPage:
			out.Missing = append(out.Missing, c)
		case err != nil:
			out.More = true
		default:
			total += st.Size()
			if !earlier[c] {
				stored += st.Size()
			}
		}
		return nil
	})
	m.f.Close()
	if err != nil || len(out.Missing) > 0 {
		return out, err
	}
	if err := os.Rename(svc.partialManifestPath(b.ID), svc.manifestPath(b.ID)); err != nil {
		return out, err
	}
	b.Chunks, b.Status, b.StoredBytes, b.TotalBytes, b.UpdatedAt = nil, api.VolumeAvailable, stored, total, svc.now().UTC()
	_, err = svc.s.Txn(ctx, []store.Cond{store.At(k, rev)}, []store.Op{store.PutJSON(k, b),
		events.Op(ctx, "volume-backup", events.Updated, b.Project, backupURL(b.Project, b.Name), b), meterBackup(&b, stored, b.UpdatedAt)})
	return out, err
}

// BackupManifest is a page of a backup's manifest, for an agent
// restoring it: limit chunks from offset, at most a page (limit 0: a
// page), so that no request builds a 16 TiB volume's whole manifest.
func (svc *Service) BackupManifest(ctx context.Context, hosts map[string]bool, live Live, backup string, offset, limit int64) (api.BackupManifest, error) {
	b, _, err := svc.agentBackup(ctx, hosts, live, backup, false)
	if err != nil {
		return api.BackupManifest{}, err
	}
	if limit == 0 || limit > api.BackupManifestPage {
		limit = api.BackupManifestPage
	}
	return svc.manifestPage(b, offset, limit)
}

// OpenChunk opens a chunk of a backup an agent restores, decompressed.
func (svc *Service) OpenChunk(ctx context.Context, hosts map[string]bool, live Live, backup, sum string) (io.ReadCloser, error) {
	b, _, err := svc.agentBackup(ctx, hosts, live, backup, false)
	if err != nil {
		return nil, err
	}
	found, err := svc.hasChunk(b, sum)
	if err != nil {
		return nil, err
	}
	if !found {
		return nil, errs.NotFound("backup %s has no chunk %s", backup, sum)
	}
	f, err := os.Open(svc.chunkPath(sum))
	if err != nil {
		return nil, err
	}
	zr, err := gzip.NewReader(f)
	if err != nil {
		f.Close()
		return nil, err
	}
	return struct {
		io.Reader
		io.Closer
	}{zr, f}, nil
}

// fromBackup fills a volume record restored from a backup.
func (svc *Service) fromBackup(ctx context.Context, project string, req api.VolumesPost, r *record) error {
	b, _, err := svc.getBackup(ctx, project, req.Backup)
	if err != nil {
		return err
	}
	if b.Status != api.VolumeAvailable {
		return errs.Conflict("backup %q is %s", req.Backup, b.Status)
	}
	if r.SizeGiB < b.SizeGiB {
		return errs.Invalid("size_gib", "backup %q is of a %d GiB volume: the volume must be at least that big", req.Backup, b.SizeGiB)
	}
	r.Format, r.FromBackup = b.Format, b.ID
	return nil
}
