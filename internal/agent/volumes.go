package agent

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/kumocloud/kumo/api"
	"github.com/kumocloud/kumo/internal/atomicfile"
	"github.com/kumocloud/kumo/internal/driver"
	"github.com/kumocloud/kumo/internal/vmimage"
	"github.com/kumocloud/kumo/internal/volumes/pool"
)

// The agent's volume job: a level-triggered loop that reads the complete
// list of the volumes its hosts handle (GET /v1/agents/{id}/volumes) and
// makes the host match - files made (from zeros or an image), grown,
// removed; attachments carried out (a VM's disk hot-plugged, a container's
// filesystem loop-mounted on the host and mounted into it) or undone -
// then reports what is (POST /v1/agents/{id}/volumes). What it attached is
// kept in a file, so after a restart it knows what to undo. Volumes of the
// local pool that nobody lists any more are removed (a crash between the
// server's delete and the report leaves no orphan file).

// volEvery is how often the volumes are reconciled.
const volEvery = 2 * time.Second

// volumeView is what the volume job needs of the server.
type volumeView interface {
	Volumes(ctx context.Context) (api.AgentVolumes, error)
	VolumeReport(ctx context.Context, reps []api.VolumeReport) error
}

// attachment is a volume the agent attached (or keeps for the
// instance's next start).
type attachment struct {
	InstanceID string        `json:"instance_id"`
	Type       string        `json:"type"`
	Volume     driver.Volume `json:"volume"`
	Backend    pool.Volume   `json:"backend"`
	Mount      string        `json:"mount,omitempty"` // a container volume's host mount
}

type volumeJob struct {
	src    volumeView
	d      driver.Driver
	images driver.ImageSource
	dir    string // the agent's volume files: local pool, mounts, records
	log    *slog.Logger
	kick   chan struct{}

	bk       backupAPI
	bmu      sync.Mutex      // guards inflight and full
	inflight map[string]bool // backups being sent
	full     map[string]bool // backups to copy whole (their base is gone)

	mu   sync.Mutex // one round (or spec) at a time; guards what follows
	view map[string]api.AgentVolume
	att  map[string]attachment // by volume id
	// incoming: volumes a live migration's target made to receive into
	// (volume id -> instance id); leaving: instances a migration takes
	// away (migrate_volumes.go).
	incoming map[string]string
	leaving  map[string]bool
}

func newVolumeJob(src volumeView, bk backupAPI, d driver.Driver, images driver.ImageSource, dir string, log *slog.Logger) *volumeJob {
	j := &volumeJob{src: src, bk: bk, inflight: map[string]bool{}, full: map[string]bool{}, d: d, images: images, dir: dir, log: log, kick: make(chan struct{}, 1),
		view: map[string]api.AgentVolume{}, att: map[string]attachment{}}
	if b, err := os.ReadFile(j.recordFile()); err == nil {
		json.Unmarshal(b, &j.att)
	}
	return j
}

func (j *volumeJob) recordFile() string        { return filepath.Join(j.dir, "attachments.json") }
func (j *volumeJob) localPool() pool.Dir       { return pool.Dir{Path: filepath.Join(j.dir, "local")} }
func (j *volumeJob) mountDir(id string) string { return filepath.Join(j.dir, "mounts", id) }

func (j *volumeJob) save() {
	b, _ := json.Marshal(j.att)
	if err := atomicfile.Write(j.recordFile(), b, 0o600); err != nil {
		j.log.Warn("volume attachments record", "err", err)
	}
}

func (j *volumeJob) backend(v api.AgentVolume) (pool.Backend, error) {
	switch v.PoolType {
	case api.PoolLocal:
		return j.localPool(), nil
	case api.PoolSharedDir:
		if !filepath.IsAbs(v.PoolPath) {
			return nil, fmt.Errorf("shared pool path %q", v.PoolPath)
		}
		return pool.Dir{Path: v.PoolPath}, nil
	}
	return nil, fmt.Errorf("this agent has no %q pools", v.PoolType)
}

func poolVolume(v api.AgentVolume) pool.Volume {
	return pool.Volume{ID: v.ID, Format: v.Format, SizeGiB: v.SizeGiB}
}

func (j *volumeJob) run(ctx context.Context) {
	if err := os.MkdirAll(j.dir, 0o700); err != nil {
		j.log.Warn("volume dir", "err", err)
	}
	// What a killed agent left of backups, restores and images being
	// copied (each as large as a volume's data): nothing of this job's
	// is in flight yet, and the work is done again if still wanted.
	os.RemoveAll(filepath.Join(j.dir, "tmp"))
	for ctx.Err() == nil {
		j.round(ctx)
		select {
		case <-ctx.Done():
		case <-j.kick:
		case <-time.After(volEvery):
		}
	}
}

// round makes the host match one complete view and reports.
func (j *volumeJob) round(ctx context.Context) {
	view, err := j.src.Volumes(ctx)
	if err != nil {
		if ctx.Err() == nil {
			j.log.Warn("volumes", "err", err)
		}
		return
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	j.view = map[string]api.AgentVolume{}
	for _, v := range view.Items {
		if pool.CheckID(v.ID) == nil {
			j.view[v.ID] = v
		}
	}
	var reps []api.VolumeReport
	// Detaches first: a volume moving between instances leaves one
	// before it joins the other.
	for id := range j.incoming {
		if v, ok := j.view[id]; ok && !v.Incoming {
			delete(j.incoming, id) // the move committed: the view has it
		}
	}
	for id, a := range j.att {
		v, ok := j.view[id]
		if j.leaving[a.InstanceID] {
			continue // migrating away: the migration's cleanup drops it
		}
		if ok && v.Incoming || !ok && j.incoming[id] == a.InstanceID {
			continue // brought by a cold move not yet committed (migrate_volumes_cold.go)
		}
		if !ok || v.Delete || v.Attach == nil || v.Attach.InstanceID != a.InstanceID {
			if err := j.detach(ctx, id, a); err != nil {
				j.log.Warn("detaching a volume", "volume", id, "instance", a.InstanceID, "err", err)
			}
		}
	}
	for _, v := range view.Items {
		if pool.CheckID(v.ID) != nil || v.Incoming {
			continue // (an incoming one is the migration's: migrate_volumes.go)
		}
		reps = append(reps, j.reconcile(ctx, v))
	}
	j.rootBackups(ctx, view.Roots)
	j.sweep(ctx)
	if len(reps) > 0 {
		if err := j.src.VolumeReport(ctx, reps); err != nil && ctx.Err() == nil {
			j.log.Warn("volume report", "err", err)
		}
	}
}

// reconcile makes one volume match, and says what it is.
func (j *volumeJob) reconcile(ctx context.Context, v api.AgentVolume) api.VolumeReport {
	rep := api.VolumeReport{ID: v.ID, AttachedTo: j.att[v.ID].InstanceID}
	b, err := j.backend(v)
	if err != nil {
		rep.Status, rep.Error = "error", err.Error()
		return rep
	}
	if v.Delete {
		if _, attached := j.att[v.ID]; attached {
			rep.Status, rep.Error = "error", "still attached"
			return rep
		}
		if err := b.Remove(ctx, v.ID); err != nil {
			rep.Status, rep.Error = "error", err.Error()
			return rep
		}
		rep.Status = "gone"
		return rep
	}
	pv := poolVolume(v)
	var size int64
	switch {
	case !b.Exists(pv) && v.ImageSHA256 != "":
		size, err = j.fromImage(ctx, b, pv, v)
	case !b.Exists(pv) && v.FromBackup != "":
		if err = j.restore(ctx, b, pv, v); err == nil {
			size, err = j.ensure(ctx, b, pv, v)
		}
	case !b.Exists(pv) && v.FromVolume != "":
		src := pool.Volume{ID: v.FromVolume, Format: v.Format}
		if err = pool.CheckID(v.FromVolume); err == nil {
			err = pool.Copy(ctx, b.SnapshotSource(src, v.FromSnapshot), b.Source(pv), v.Format)
		}
		if err == nil {
			size, err = j.ensure(ctx, b, pv, v)
		}
	default:
		size, err = j.ensure(ctx, b, pv, v)
	}
	rep.AttachedTo = j.att[v.ID].InstanceID
	if err != nil {
		rep.Status, rep.Error, rep.SizeGiB = "error", err.Error(), size
		return rep
	}
	rep.Status, rep.SizeGiB = "ready", size
	rep.Snapshots = j.snapshots(ctx, b, pv, v)
	j.startBackups(ctx, b, pv, v)
	if v.Revert != nil {
		if _, attached := j.att[v.ID]; !attached && pool.CheckID(v.Revert.Snapshot) == nil {
			if err := b.Revert(ctx, pv, v.Revert.Snapshot); err != nil {
				rep.Status, rep.Error = "error", "revert: "+err.Error()
				return rep
			}
			rep.Reverted = v.Revert.ID
		}
	}
	if v.Attach != nil && j.att[v.ID].InstanceID == "" {
		if err := j.attach(ctx, v, b, false); err != nil {
			rep.Status, rep.Error = "error", "attach: "+err.Error()
		}
	}
	rep.AttachedTo = j.att[v.ID].InstanceID
	return rep
}

// ensure makes or grows a volume; an attached VM volume grows through
// its QEMU (the guest sees the new size).
func (j *volumeJob) ensure(ctx context.Context, b pool.Backend, pv pool.Volume, v api.AgentVolume) (int64, error) {
	size, err := b.Ensure(ctx, pv)
	if errors.Is(err, pool.ErrInUse) && v.Format == pool.Qcow2 {
		a, ok := j.att[v.ID]
		rs, can := j.d.(driver.VolumeResizer)
		if !ok || !can {
			return size, err
		}
		if err := rs.ResizeVolume(ctx, a.InstanceID, a.Volume, v.SizeGiB<<30); err != nil {
			return size, err
		}
		return v.SizeGiB, nil
	}
	return size, err
}

// fromImage makes a volume from an image: fetched by hash, checked as
// the image service checks uploads (a disk naming no other file), then
// converted into a standalone qcow2. The image is a vm-disk, or a
// vm-kernel tarball whose disk.qcow2 is the volume's content.
func (j *volumeJob) fromImage(ctx context.Context, b pool.Backend, pv pool.Volume, v api.AgentVolume) (int64, error) {
	if j.images == nil {
		return 0, fmt.Errorf("this agent cannot fetch images")
	}
	tmpDir := filepath.Join(j.dir, "tmp")
	if err := os.MkdirAll(tmpDir, 0o700); err != nil {
		return 0, err
	}
	f, err := os.CreateTemp(tmpDir, "image-*")
	if err != nil {
		return 0, err
	}
	defer os.Remove(f.Name())
	defer f.Close()
	rc, err := j.images.FetchImage(ctx, v.ImageSHA256)
	if err != nil {
		return 0, fmt.Errorf("fetching image %s: %w", v.ImageSHA256, err)
	}
	h := sha256.New()
	_, err = io.Copy(io.MultiWriter(f, h), rc)
	rc.Close()
	if err != nil {
		return 0, err
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != v.ImageSHA256 {
		return 0, fmt.Errorf("image bytes hash to %s, not %s", got, v.ImageSHA256)
	}
	pv.Image, pv.ImageFormat = f.Name(), v.ImageFormat
	var info vmimage.DiskInfo
	if v.ImageFormat == vmimage.FormatKernelTarball {
		// A vm-kernel image's own root disk: the tarball is checked as
		// the image service checks it, its disk.qcow2 taken out.
		if _, err := f.Seek(0, io.SeekStart); err != nil {
			return 0, err
		}
		disk, di, err := vmimage.KernelImageDisk(ctx, f, tmpDir, v.SizeGiB<<30+kernelImageSlack)
		if err != nil {
			return 0, fmt.Errorf("image refused: %w", err)
		}
		defer os.Remove(disk)
		pv.Image, pv.ImageFormat, info = disk, vmimage.FormatQcow2, di
	} else if info, err = vmimage.InspectDisk(ctx, f.Name(), v.ImageFormat); err != nil {
		return 0, fmt.Errorf("image refused: %w", err)
	}
	if info.VirtualSize > v.SizeGiB<<30 {
		return 0, fmt.Errorf("image refused: its disk is %d bytes, larger than the volume's %d GiB", info.VirtualSize, v.SizeGiB)
	}
	return b.Ensure(ctx, pv)
}

// kernelImageSlack is what a vm-kernel image may hold besides a disk of
// the volume's size (its kernel, initrd and the disk's own metadata):
// more is refused before it fills the host's disk.
const kernelImageSlack = 1 << 30

// snapshots makes a volume's snapshots match the view: taken (a running
// VM's disk through QEMU, a mounted filesystem frozen while copied),
// removed, and those nobody lists swept.
func (j *volumeJob) snapshots(ctx context.Context, b pool.Backend, pv pool.Volume, v api.AgentVolume) []api.SnapshotReport {
	var reps []api.SnapshotReport
	listed := map[string]bool{}
	for _, s := range v.Snapshots {
		listed[s.ID] = true
		rep := api.SnapshotReport{ID: s.ID, Status: "ready"}
		var err error
		switch {
		case pool.CheckID(s.ID) != nil:
			err = fmt.Errorf("snapshot id %q", s.ID)
		case s.Delete:
			if err = b.RemoveSnapshot(pv, s.ID); err == nil {
				rep.Status = "gone"
			}
		case !b.HasSnapshot(pv, s.ID):
			target := b.SnapshotSource(pv, s.ID)
			if err = j.takeSnapshot(ctx, b, pv, v.ID, target+".tmp"); err == nil {
				err = os.Rename(target+".tmp", target)
			}
		}
		if err != nil {
			rep.Status, rep.Error = "error", err.Error()
		}
		reps = append(reps, rep)
	}
	if v.PoolType == api.PoolLocal {
		for _, s := range b.Snapshots(v.ID) {
			if !listed[s] {
				b.RemoveSnapshot(pv, s)
			}
		}
	}
	return reps
}

// takeSnapshot copies a volume into a new file at target, consistently:
// a running VM's disk through QEMU, a mounted filesystem frozen while it
// is copied.
func (j *volumeJob) takeSnapshot(ctx context.Context, b pool.Backend, pv pool.Volume, volID, target string) error {
	a, attached := j.att[volID]
	if attached && a.Type == api.TypeVM {
		if st, err := j.d.Status(ctx, a.InstanceID); err == nil && (st.State == driver.Running || st.State == driver.Suspended) {
			vs, ok := j.d.(driver.VolumeSnapshotter)
			if !ok {
				return fmt.Errorf("the VM's driver cannot copy a disk it has open")
			}
			if err := vs.SnapshotVolume(ctx, a.InstanceID, a.Volume, target); err != nil {
				os.Remove(target)
				return err
			}
			return nil
		}
	}
	if attached && a.Mount != "" {
		if out, err := exec.CommandContext(ctx, "fsfreeze", "-f", a.Mount).CombinedOutput(); err != nil {
			return fmt.Errorf("fsfreeze: %v: %s", err, out)
		}
		defer exec.Command("fsfreeze", "-u", a.Mount).Run()
	}
	return pool.Copy(ctx, b.Source(pv), target, pv.Format)
}

// driverVolume is a volume as the driver of its instance needs it.
func driverVolume(v api.AgentVolume, b pool.Backend, mount string) driver.Volume {
	pv := poolVolume(v)
	dv := driver.Volume{ID: v.ID, Source: b.Source(pv), Device: v.Attach.Device, Target: v.Attach.Path, Format: vmimage.FormatQcow2}
	if v.Format == pool.Ext4 {
		dv.Format = vmimage.FormatRaw
	}
	if mount != "" {
		dv.Source = mount
	}
	return dv
}

// attach carries out a volume's attachment: a container's filesystem is
// mounted on the host first; a running instance gets it at once
// (hot-plug, or a mount into the container), one that is not at its next
// start (booting: the caller is starting it now).
func (j *volumeJob) attach(ctx context.Context, v api.AgentVolume, b pool.Backend, booting bool) error {
	pv := poolVolume(v)
	if !b.Exists(pv) {
		return fmt.Errorf("volume %s is not made yet", v.Name)
	}
	mount := ""
	if v.Attach.Type == api.TypeContainer {
		if v.Format != pool.Ext4 {
			return fmt.Errorf("a container mounts ext4 volumes, not %s", v.Format)
		}
		mount = j.mountDir(v.ID)
		if err := pool.MountFS(b.Source(pv), mount); err != nil {
			return err
		}
	}
	dv := driverVolume(v, b, mount)
	if !booting {
		st, err := j.d.Status(ctx, v.Attach.InstanceID)
		if err == nil && st.State == driver.Running {
			va, ok := j.d.(driver.VolumeAttacher)
			if !ok {
				err = driver.ErrNoLiveAttach
			} else {
				err = va.AttachVolume(ctx, v.Attach.InstanceID, dv)
			}
			if err != nil && !errors.Is(err, driver.ErrNoLiveAttach) {
				if mount != "" {
					pool.UnmountFS(mount)
				}
				return err
			}
		}
	}
	j.att[v.ID] = attachment{InstanceID: v.Attach.InstanceID, Type: v.Attach.Type, Volume: dv, Backend: pv, Mount: mount}
	j.save()
	return nil
}

// detach undoes an attachment: out of the running instance, then the
// host's mount.
func (j *volumeJob) detach(ctx context.Context, id string, a attachment) error {
	st, err := j.d.Status(ctx, a.InstanceID)
	if err == nil && (st.State == driver.Running || st.State == driver.Suspended) {
		va, ok := j.d.(driver.VolumeAttacher)
		if !ok {
			return fmt.Errorf("instance %s runs and its driver cannot detach volumes live: stop it first", a.InstanceID)
		}
		if err := va.DetachVolume(ctx, a.InstanceID, a.Volume); err != nil && !errors.Is(err, driver.ErrNotFound) {
			return err
		}
	}
	if a.Mount != "" {
		if err := pool.UnmountFS(a.Mount); err != nil {
			return err
		}
	}
	delete(j.att, id)
	j.save()
	return nil
}

// releaseFenced unmounts the host mounts of a fenced (stopped) instance's
// volumes (fence.go): the server may recreate the instance on another
// host with its shared volumes, which that host then mounts. Their
// attachment records go with them: a start here (the host back in time)
// mounts them again, and a host back too late has nothing left to undo,
// so it never touches the files. It gives way at once to a round in
// progress (which may wait on the unreachable server): the fencer tries
// again at its next check.
func (j *volumeJob) releaseFenced(ctx context.Context, instanceID string) {
	if !j.mu.TryLock() {
		return
	}
	defer j.mu.Unlock()
	for id, a := range j.att {
		if a.InstanceID != instanceID || a.Mount == "" {
			continue
		}
		if err := j.detach(ctx, id, a); err != nil {
			j.log.Warn("fencing: unmounting a fenced instance's volume", "volume", id, "instance", instanceID, "err", err)
			continue
		}
		j.log.Warn("fencing: unmounted a fenced instance's volume from the host", "volume", id, "instance", instanceID)
	}
}

// releaseRecorded is releaseFenced for the fence watchdog, which runs
// without the volume job (its agent is gone): it reads the job's
// attachment records in dir, unmounts the host mounts of the stopped
// instances' volumes and writes the records back without them. An agent
// started meanwhile with the older records finds those mounts gone: its
// own fencer, or its detach, then only removes the records.
func releaseRecorded(dir string, stopped map[string]bool, log *slog.Logger) error {
	j := &volumeJob{dir: dir, log: log, att: map[string]attachment{}}
	b, err := os.ReadFile(j.recordFile())
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, &j.att); err != nil {
		return fmt.Errorf("%s: %w", j.recordFile(), err)
	}
	var failed error
	n := len(j.att)
	for id, a := range j.att {
		if !stopped[a.InstanceID] || a.Mount == "" {
			continue
		}
		if err := pool.UnmountFS(a.Mount); err != nil {
			failed = err
			continue
		}
		delete(j.att, id)
		log.Warn("fencing: unmounted a fenced instance's volume from the host", "volume", id, "instance", a.InstanceID)
	}
	if len(j.att) != n {
		j.save()
	}
	return failed
}

// sweep removes what nobody lists: local volume files, and host mounts of
// no attachment.
func (j *volumeJob) sweep(ctx context.Context) {
	ids, _ := j.localPool().IDs()
	for _, id := range ids {
		if _, ok := j.view[id]; !ok {
			if _, att := j.att[id]; !att && j.incoming[id] == "" {
				j.log.Info("removing a volume nobody lists", "volume", id)
				j.localPool().Remove(ctx, id)
			}
		}
	}
	// The base manifests of incremental backups (volume_backups.go) of
	// volumes this host no longer handles.
	bases, _ := os.ReadDir(filepath.Join(j.dir, "backup-bases"))
	for _, e := range bases {
		id := strings.TrimSuffix(strings.TrimSuffix(e.Name(), ".tmp"), ".json")
		if _, ok := j.view[id]; !ok {
			if _, att := j.att[id]; !att {
				os.Remove(filepath.Join(j.dir, "backup-bases", e.Name()))
			}
		}
	}
	mounts, _ := os.ReadDir(filepath.Join(j.dir, "mounts"))
	for _, m := range mounts {
		if _, ok := j.att[m.Name()]; !ok {
			pool.UnmountFS(j.mountDir(m.Name()))
		}
	}
}

// forInstance adds to a spec the volumes attached to its instance, those
// the view says to attach and not yet carried out included: the driver
// attaches them as it starts it.
func (j *volumeJob) forInstance(ctx context.Context, s driver.Spec) driver.Spec {
	j.mu.Lock()
	defer j.mu.Unlock()
	for _, v := range j.view {
		if v.Attach != nil && v.Attach.InstanceID == s.ID && j.att[v.ID].InstanceID == "" && !v.Delete {
			b, err := j.backend(v)
			if err == nil {
				err = j.attach(ctx, v, b, true)
			}
			if err != nil {
				j.log.Warn("a volume for a starting instance", "volume", v.ID, "err", err)
			}
		}
	}
	s.Volumes = nil
	for _, a := range j.att {
		if a.InstanceID == s.ID {
			s.Volumes = append(s.Volumes, a.Volume)
		}
	}
	sortVolumes(s.Volumes)
	return s
}

func sortVolumes(vs []driver.Volume) {
	for i := 1; i < len(vs); i++ {
		for k := i; k > 0 && vs[k].Device+vs[k].Target < vs[k-1].Device+vs[k-1].Target; k-- {
			vs[k], vs[k-1] = vs[k-1], vs[k]
		}
	}
}

// withVolumes is the instance job's port wiring with the volume job's
// part of the spec added.
type withVolumes struct {
	portWiring
	vols *volumeJob
}

func (w withVolumes) spec(s driver.Spec, as api.Assignment) driver.Spec {
	return w.vols.forInstance(context.Background(), w.portWiring.spec(s, as))
}

func (s *serverAPI) Volumes(ctx context.Context) (api.AgentVolumes, error) {
	return s.c.AgentVolumes(ctx, s.id)
}

func (s *serverAPI) VolumeReport(ctx context.Context, reps []api.VolumeReport) error {
	return s.c.AgentVolumeReport(ctx, s.id, reps)
}
