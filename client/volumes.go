package client

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/url"
	"strconv"

	"github.com/kumocloud/kumo/api"
)

// Volumes lists the project's volumes.
func (c *Client) Volumes(ctx context.Context, project string) ([]api.Volume, error) {
	var out api.List[api.Volume]
	return out.Items, c.do(ctx, http.MethodGet, p("v1", "projects", project, "volumes"), nil, nil, &out)
}

// CreateVolume creates a volume; its host makes it (status creating, then
// available).
func (c *Client) CreateVolume(ctx context.Context, project string, req api.VolumesPost) (api.Volume, error) {
	var out api.Volume
	return out, c.do(ctx, http.MethodPost, p("v1", "projects", project, "volumes"), nil, req, &out)
}

// Volume shows a volume.
func (c *Client) Volume(ctx context.Context, project, name string) (api.Volume, error) {
	var out api.Volume
	return out, c.do(ctx, http.MethodGet, p("v1", "projects", project, "volumes", name), nil, nil, &out)
}

// ResizeVolume grows a volume to gib GiB.
func (c *Client) ResizeVolume(ctx context.Context, project, name string, gib int64) (api.Volume, error) {
	var out api.Volume
	return out, c.do(ctx, http.MethodPatch, p("v1", "projects", project, "volumes", name), nil, api.VolumePatch{SizeGiB: &gib}, &out)
}

// DeleteVolume deletes a volume that is not attached (its host removes
// it; the volume is gone when Volume answers not found).
func (c *Client) DeleteVolume(ctx context.Context, project, name string) (api.Volume, error) {
	var out api.Volume
	return out, c.do(ctx, http.MethodDelete, p("v1", "projects", project, "volumes", name), nil, nil, &out)
}

// AttachVolume attaches a volume to an instance.
func (c *Client) AttachVolume(ctx context.Context, project, name string, req api.VolumeAttach) (api.Volume, error) {
	var out api.Volume
	return out, c.do(ctx, http.MethodPost, p("v1", "projects", project, "volumes", name, "attach"), nil, req, &out)
}

// DetachVolume detaches a volume.
func (c *Client) DetachVolume(ctx context.Context, project, name string) (api.Volume, error) {
	var out api.Volume
	return out, c.do(ctx, http.MethodPost, p("v1", "projects", project, "volumes", name, "detach"), nil, struct{}{}, &out)
}

// StoragePools lists the storage pools.
func (c *Client) StoragePools(ctx context.Context) ([]api.StoragePool, error) {
	var out api.List[api.StoragePool]
	return out.Items, c.do(ctx, http.MethodGet, p("v1", "storage-pools"), nil, nil, &out)
}

// StoragePool shows a storage pool.
func (c *Client) StoragePool(ctx context.Context, name string) (api.StoragePool, error) {
	var out api.StoragePool
	return out, c.do(ctx, http.MethodGet, p("v1", "storage-pools", name), nil, nil, &out)
}

// CreateStoragePool adds a shared-dir pool (cloud admin).
func (c *Client) CreateStoragePool(ctx context.Context, req api.StoragePoolsPost) (api.StoragePool, error) {
	var out api.StoragePool
	return out, c.do(ctx, http.MethodPost, p("v1", "storage-pools"), nil, req, &out)
}

// DeleteStoragePool removes an empty pool (cloud admin).
func (c *Client) DeleteStoragePool(ctx context.Context, name string) error {
	return c.do(ctx, http.MethodDelete, p("v1", "storage-pools", name), nil, nil, nil)
}

// AgentVolumes is the complete list of the volumes an agent's hosts
// handle (agent only).
func (c *Client) AgentVolumes(ctx context.Context, id string) (api.AgentVolumes, error) {
	var out api.AgentVolumes
	return out, c.do(ctx, http.MethodGet, p("v1", "agents", id, "volumes"), nil, nil, &out)
}

// AgentVolumeReport says what an agent did with its volumes (agent only).
func (c *Client) AgentVolumeReport(ctx context.Context, id string, reps []api.VolumeReport) error {
	return c.do(ctx, http.MethodPost, p("v1", "agents", id, "volumes"), nil, api.AgentVolumeReport{Volumes: reps}, nil)
}

// VolumeSnapshots lists a volume's snapshots.
func (c *Client) VolumeSnapshots(ctx context.Context, project, volume string) ([]api.VolumeSnapshot, error) {
	var out api.List[api.VolumeSnapshot]
	return out.Items, c.do(ctx, http.MethodGet, p("v1", "projects", project, "volumes", volume, "snapshots"), nil, nil, &out)
}

// CreateVolumeSnapshot takes a snapshot (creating, then available).
func (c *Client) CreateVolumeSnapshot(ctx context.Context, project, volume, name string) (api.VolumeSnapshot, error) {
	var out api.VolumeSnapshot
	return out, c.do(ctx, http.MethodPost, p("v1", "projects", project, "volumes", volume, "snapshots"), nil, api.VolumeSnapshotsPost{Name: name}, &out)
}

// VolumeSnapshot shows a snapshot.
func (c *Client) VolumeSnapshot(ctx context.Context, project, volume, name string) (api.VolumeSnapshot, error) {
	var out api.VolumeSnapshot
	return out, c.do(ctx, http.MethodGet, p("v1", "projects", project, "volumes", volume, "snapshots", name), nil, nil, &out)
}

// DeleteVolumeSnapshot deletes a snapshot (its host removes it).
func (c *Client) DeleteVolumeSnapshot(ctx context.Context, project, volume, name string) (api.VolumeSnapshot, error) {
	var out api.VolumeSnapshot
	return out, c.do(ctx, http.MethodDelete, p("v1", "projects", project, "volumes", volume, "snapshots", name), nil, nil, &out)
}

// MoveVolume starts moving a detached local volume to another host.
func (c *Client) MoveVolume(ctx context.Context, project, volume string, req api.VolumeMove) (api.Volume, error) {
	var out api.Volume
	return out, c.do(ctx, http.MethodPost, p("v1", "projects", project, "volumes", volume, "move"), nil, req, &out)
}

// RevertVolume brings a detached volume back to a snapshot.
func (c *Client) RevertVolume(ctx context.Context, project, volume, snapshot string) (api.Volume, error) {
	var out api.Volume
	return out, c.do(ctx, http.MethodPost, p("v1", "projects", project, "volumes", volume, "revert"), nil, api.VolumeRevert{Snapshot: snapshot}, &out)
}

// CreateVolumeBackup backs a volume up to the server (creating, then
// available).
func (c *Client) CreateVolumeBackup(ctx context.Context, project, volume string, req api.VolumeBackupsPost) (api.VolumeBackup, error) {
	var out api.VolumeBackup
	return out, c.do(ctx, http.MethodPost, p("v1", "projects", project, "volumes", volume, "backups"), nil, req, &out)
}

// VolumeBackups lists the project's volume backups.
func (c *Client) VolumeBackups(ctx context.Context, project string) ([]api.VolumeBackup, error) {
	var out api.List[api.VolumeBackup]
	return out.Items, c.do(ctx, http.MethodGet, p("v1", "projects", project, "volume-backups"), nil, nil, &out)
}

// VolumeBackup shows a volume backup.
func (c *Client) VolumeBackup(ctx context.Context, project, name string) (api.VolumeBackup, error) {
	var out api.VolumeBackup
	return out, c.do(ctx, http.MethodGet, p("v1", "projects", project, "volume-backups", name), nil, nil, &out)
}

// DeleteVolumeBackup deletes a volume backup.
func (c *Client) DeleteVolumeBackup(ctx context.Context, project, name string) error {
	return c.do(ctx, http.MethodDelete, p("v1", "projects", project, "volume-backups", name), nil, nil, nil)
}

// AgentBackupChunk sends a chunk of a backup (agents).
func (c *Client) AgentBackupChunk(ctx context.Context, agentID, backup, sum string, data []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, c.base+p("v1", "agents", agentID, "backups", backup, "chunks", sum), bytes.NewReader(data))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/octet-stream")
	resp, err := c.raw(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	return nil
}

// AgentBackupManifest sends a backup's manifest and returns the chunks the
// server still lacks (agents).
func (c *Client) AgentBackupManifest(ctx context.Context, agentID, backup string, m api.BackupManifest) (api.BackupMissing, error) {
	var out api.BackupMissing
	return out, c.do(ctx, http.MethodPost, p("v1", "agents", agentID, "backups", backup), nil, m, &out)
}

// AgentBackup is a page of the manifest of a backup the agent restores:
// limit chunks from offset, at most api.BackupManifestPage (limit 0: a
// page); Count says how many there are.
func (c *Client) AgentBackup(ctx context.Context, agentID, backup string, offset, limit int64) (api.BackupManifest, error) {
	var out api.BackupManifest
	q := url.Values{"offset": {strconv.FormatInt(offset, 10)}, "limit": {strconv.FormatInt(limit, 10)}}
	return out, c.do(ctx, http.MethodGet, p("v1", "agents", agentID, "backups", backup), q, nil, &out)
}

// AgentBackupChunkRead streams a chunk of a backup the agent restores.
func (c *Client) AgentBackupChunkRead(ctx context.Context, agentID, backup, sum string) (io.ReadCloser, error) {
	resp, err := c.send(ctx, http.MethodGet, p("v1", "agents", agentID, "backups", backup, "chunks", sum), nil, nil, "application/octet-stream")
	if err != nil {
		return nil, err
	}
	return resp.Body, nil
}

// ScheduleVolumeBackups sets a volume's backup schedule: a backup every
// period ("24h"; "0" stops), the newest keep kept.
func (c *Client) ScheduleVolumeBackups(ctx context.Context, project, volume, every string, keep int) (api.Volume, error) {
	var out api.Volume
	return out, c.do(ctx, http.MethodPatch, p("v1", "projects", project, "volumes", volume), nil, api.VolumePatch{BackupEvery: &every, BackupKeep: &keep}, &out)
}
