package agent

import (
	"bufio"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"os"

	"golang.org/x/sys/unix"
	"golang.org/x/time/rate"

	"github.com/kumocloud/kumo/api"
	"github.com/kumocloud/kumo/internal/driver"
	"github.com/kumocloud/kumo/internal/vmimage"
	"github.com/kumocloud/kumo/internal/volumes/pool"
)

// Volumes that go with an instance migrating cold. The source, once the
// instance is stopped or saved, writes the files of its local volumes
// (the boot volume included) to the migration's "cold" channel ahead of
// the driver's own stream, each by its data extents only
// (driver.SendExtents, as a container's disk travels); the target makes
// each in its local pool under a temporary name, checks it (a qcow2 must
// be a plain one of at most the volume's size, naming no other file),
// renames it into place and attaches it to the arriving instance (a
// container's filesystem mounted on the host) before the driver prepares
// the instance from its stream - so a VM booting from a volume has its
// root disk, and an instance the commit starts at once has its volumes.
//
// Until the move commits, the target's files are incoming (the view says
// so too, so a restarted agent keeps them); a failure or rollback drops
// them and the sweep removes them. The source keeps its copies until the
// migration's cleanup: a failed move leaves them attached as they were
// (a container's filesystems mounted again).
//
// A local volume's snapshots (whole sparse copies kept beside it) travel
// after it, the same way: the migration names them, and the commit
// re-checks that they are still those.
//
// Stream: "kumo-volumes v1\n", the count (big-endian uint64), then per
// volume in the migration's order its file's length and its extents, the
// number of its snapshots, and each snapshot's file likewise.

const coldVolumesHeader = "kumo-volumes v1\n"

// coldVolumes are the local volumes a cold move copies (none when both
// hosts are this agent's: they share its pool).
func (mg *migrations) coldVolumes(m *api.AssignmentMigration) []api.MigrationVolume {
	if mg.vols == nil || mg.hosts[m.Source] && mg.hosts[m.Target] {
		return nil
	}
	var out []api.MigrationVolume
	for _, v := range m.Volumes {
		if v.PoolType == api.PoolLocal {
			out = append(out, v)
		}
	}
	return out
}

// maxVolumeFile bounds a received volume file: an ext4 one is its size,
// a qcow2 one its size and room for its tables.
func maxVolumeFile(v api.MigrationVolume) int64 {
	size := v.SizeGiB << 30
	if v.Format == pool.Qcow2 {
		size += size/64 + 64<<20
	}
	return size
}

// releaseCold readies instance id's volumes to travel: it leaves this
// host, so the volume job neither detaches nor attaches them meanwhile,
// and a container's filesystems are unmounted (whole on their files, and
// never mounted on two hosts at once). A mount that is busy refuses the
// move.
func (j *volumeJob) releaseCold(id string) error {
	j.leave(id, true)
	j.mu.Lock()
	defer j.mu.Unlock()
	for v, a := range j.att {
		if a.InstanceID != id || a.Mount == "" || !pool.IsMount(a.Mount) {
			continue
		}
		if err := unix.Unmount(a.Mount, 0); err != nil {
			return fmt.Errorf("unmounting volume %s to move it: %w", v, err)
		}
	}
	return nil
}

// stay undoes releaseCold: the move failed, the instance stays here with
// its volumes as they were.
func (j *volumeJob) stay(id string) {
	j.leave(id, false)
	j.mu.Lock()
	defer j.mu.Unlock()
	for v, a := range j.att {
		if a.InstanceID == id && a.Mount != "" {
			if err := pool.MountFS(j.localOrShared(a).Source(a.Backend), a.Mount); err != nil {
				j.log.Warn("mounting a volume again after a failed move", "volume", v, "err", err)
			}
		}
	}
}

// localOrShared is the pool an attachment's file is in.
func (j *volumeJob) localOrShared(a attachment) pool.Backend {
	if v, ok := j.view[a.Volume.ID]; ok {
		if b, err := j.backend(v); err == nil {
			return b
		}
	}
	return j.localPool()
}

// sendCold writes the files of vols (local volumes of instance id, which
// releaseCold readied) to w, at most bandwidth bytes a second (0: no cap).
func (j *volumeJob) sendCold(ctx context.Context, vols []api.MigrationVolume, w io.Writer, bandwidth int64) (int64, error) {
	if bandwidth > 0 {
		w = &capWriter{ctx: ctx, w: w, lim: rate.NewLimiter(rate.Limit(bandwidth), capBurst)}
	}
	cw := &driver.CountWriter{W: w}
	bw := bufio.NewWriterSize(cw, 1<<20)
	bw.WriteString(coldVolumesHeader)
	writeUint(bw, uint64(len(vols)))
	for _, v := range vols {
		if err := sendVolume(ctx, j.localPool(), v, bw); err != nil {
			return cw.N, fmt.Errorf("sending volume %s: %w", v.Name, err)
		}
	}
	err := bw.Flush()
	return cw.N, err
}

// sendVolume writes one volume's file, then its snapshots' count and
// files (in the migration's order).
func sendVolume(ctx context.Context, b pool.Dir, v api.MigrationVolume, w io.Writer) error {
	if err := pool.CheckID(v.ID); err != nil {
		return err
	}
	pv := pool.Volume{ID: v.ID, Format: v.Format}
	if err := sendFile(ctx, b.Source(pv), w); err != nil {
		return err
	}
	if err := writeUint(w, uint64(len(v.Snapshots))); err != nil {
		return err
	}
	for _, snap := range v.Snapshots {
		if err := pool.CheckID(snap); err != nil {
			return err
		}
		if err := sendFile(ctx, b.SnapshotSource(pv, snap), w); err != nil {
			return fmt.Errorf("snapshot %s: %w", snap, err)
		}
	}
	return nil
}

// sendFile writes a file's length, then its extents.
func sendFile(ctx context.Context, path string, w io.Writer) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	if err := writeUint(w, uint64(st.Size())); err != nil {
		return err
	}
	return driver.SendExtents(ctx, f, st.Size(), w)
}

func writeUint(w io.Writer, n uint64) error {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], n)
	_, err := w.Write(b[:])
	return err
}

func readUint(r io.Reader) (uint64, error) {
	var b [8]byte
	if _, err := io.ReadFull(r, b[:]); err != nil {
		return 0, fmt.Errorf("migration stream: %w", err)
	}
	return binary.BigEndian.Uint64(b[:]), nil
}

// receiveCold makes, for a cold move's target, the volumes of instance
// id (of type typ): those of copy from r, the others (a shared pool) as
// they are; and attaches them to it here. It reads exactly the volumes'
// stream from r.
func (j *volumeJob) receiveCold(ctx context.Context, id, typ string, vols, copy []api.MigrationVolume, r io.Reader) ([]driver.Volume, error) {
	type got struct {
		av api.AgentVolume
		b  pool.Backend
	}
	var all []got
	j.mu.Lock()
	for _, v := range vols {
		if err := pool.CheckID(v.ID); err != nil {
			j.mu.Unlock()
			return nil, err
		}
		av := api.AgentVolume{ID: v.ID, Name: v.Name, SizeGiB: v.SizeGiB, Format: v.Format, PoolType: v.PoolType, PoolPath: v.PoolPath,
			Attach: &api.AgentVolumeAttach{InstanceID: id, Type: typ, Device: v.Device, Path: v.Path}}
		b, err := j.backend(av)
		if err == nil {
			if a, ok := j.att[v.ID]; ok && a.InstanceID != id {
				err = fmt.Errorf("volume %s is attached to instance %s on this host already", v.Name, a.InstanceID)
			}
		}
		if err != nil {
			j.mu.Unlock()
			return nil, err
		}
		if j.incoming == nil {
			j.incoming = map[string]string{}
		}
		j.incoming[v.ID] = id // the sweep keeps its files from now on
		all = append(all, got{av, b})
	}
	j.mu.Unlock()

	if len(copy) > 0 {
		hdr := make([]byte, len(coldVolumesHeader)+8)
		if _, err := io.ReadFull(r, hdr); err != nil || string(hdr[:len(coldVolumesHeader)]) != coldVolumesHeader {
			return nil, fmt.Errorf("migration stream: no volumes where %d were due (%v)", len(copy), err)
		}
		if n := binary.BigEndian.Uint64(hdr[len(coldVolumesHeader):]); n != uint64(len(copy)) {
			return nil, fmt.Errorf("migration stream: %d volumes, not the %d the migration carries", n, len(copy))
		}
		for _, v := range copy {
			if err := j.receiveVolume(ctx, v, r); err != nil {
				return nil, fmt.Errorf("volume %s: %w", v.Name, err)
			}
		}
	}

	j.mu.Lock()
	defer j.mu.Unlock()
	var out []driver.Volume
	for _, g := range all {
		pv := poolVolume(g.av)
		if !g.b.Exists(pv) {
			return nil, fmt.Errorf("volume %s is not in pool %s on this host", g.av.Name, g.av.PoolPath)
		}
		mount := ""
		if typ == api.TypeContainer {
			mount = j.mountDir(g.av.ID)
			if err := pool.MountFS(g.b.Source(pv), mount); err != nil {
				return nil, err
			}
		}
		dv := driverVolume(g.av, g.b, mount)
		j.att[g.av.ID] = attachment{InstanceID: id, Type: typ, Volume: dv, Backend: pv, Mount: mount}
		out = append(out, dv)
	}
	j.save()
	sortVolumes(out)
	return out, nil
}

// receiveVolume makes one volume's file in the local pool from r (what
// an earlier try left removed first), then its snapshots'.
func (j *volumeJob) receiveVolume(ctx context.Context, v api.MigrationVolume, r io.Reader) error {
	b := j.localPool()
	if err := b.Remove(ctx, v.ID); err != nil {
		return err
	}
	if err := os.MkdirAll(b.Path, 0o700); err != nil {
		return err
	}
	pv := pool.Volume{ID: v.ID, Format: v.Format}
	if err := receiveFile(ctx, r, b.Source(pv), v); err != nil {
		return err
	}
	n, err := readUint(r)
	if err != nil {
		return err
	}
	if n != uint64(len(v.Snapshots)) {
		return fmt.Errorf("migration stream: %d snapshots, not the %d the migration carries", n, len(v.Snapshots))
	}
	for _, snap := range v.Snapshots {
		if err := pool.CheckID(snap); err != nil {
			return err
		}
		if err := receiveFile(ctx, r, b.SnapshotSource(pv, snap), v); err != nil {
			return fmt.Errorf("snapshot %s: %w", snap, err)
		}
	}
	return nil
}

// receiveFile makes dst, a file of volume v, from r: under a temporary
// name, checked, then renamed into place.
func receiveFile(ctx context.Context, r io.Reader, dst string, v api.MigrationVolume) error {
	n, err := readUint(r)
	if err != nil {
		return err
	}
	size := int64(n)
	if size <= 0 || size > maxVolumeFile(v) {
		return fmt.Errorf("migration stream: a file of %d bytes for a %d GiB %s volume", size, v.SizeGiB, v.Format)
	}
	tmp := dst + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	err = driver.ReceiveExtents(ctx, r, f, size)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil && v.Format == pool.Qcow2 {
		// Made by kumo on the source, but checked as any disk from
		// elsewhere is: a plain qcow2 naming no other file.
		var info vmimage.DiskInfo
		if info, err = vmimage.InspectDisk(ctx, tmp, vmimage.FormatQcow2); err == nil && info.VirtualSize > v.SizeGiB<<30 {
			err = fmt.Errorf("a disk of %d bytes for a %d GiB volume", info.VirtualSize, v.SizeGiB)
		}
	}
	if err == nil {
		err = os.Rename(tmp, dst)
	}
	if err != nil {
		os.Remove(tmp)
		return err
	}
	return nil
}

// capBurst is the largest write a capped stream lets through at once.
const capBurst = 256 << 10

// capWriter holds writes to its limiter's rate (the agent's
// --migrate-volume-bandwidth).
type capWriter struct {
	ctx context.Context
	w   io.Writer
	lim *rate.Limiter
}

func (c *capWriter) Write(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		k := min(len(p)-n, capBurst)
		if err := c.lim.WaitN(c.ctx, k); err != nil {
			return n, err
		}
		m, err := c.w.Write(p[n : n+k])
		n += m
		if err != nil {
			return n, err
		}
	}
	return n, nil
}
