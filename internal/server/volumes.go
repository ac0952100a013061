package server

import (
	"context"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/kumocloud/kumo/api"
	"github.com/kumocloud/kumo/internal/compute"
	"github.com/kumocloud/kumo/internal/driver"
	"github.com/kumocloud/kumo/internal/errs"
	"github.com/kumocloud/kumo/internal/server/response"
)

// liveInstances is compute as the volume service's agent side reads it.
type liveInstances struct{ c *compute.Service }

func (l liveInstances) LiveInstance(ctx context.Context, project, name string) (string, string, string, error) {
	in, _, err := l.c.Get(ctx, project, name)
	if err != nil {
		return "", "", "", err
	}
	if in.State == api.StateDone {
		return "", "", "", errs.NotFound("instance %q is gone", name)
	}
	return in.ID, in.Type, l.c.HostOf(project, name), nil
}

// Rehoming implements volumes.Rehoming.
func (l liveInstances) Rehoming(_ context.Context, project, name string) bool {
	return l.c.Rehoming(project, name)
}

// RestoresRoot implements volumes.RootRestores.
func (l liveInstances) RestoresRoot(_ context.Context, hosts map[string]bool, backup string) bool {
	return l.c.RestoresRoot(hosts, backup)
}

// MigrationTarget implements volumes.Migrating.
func (l liveInstances) MigrationTarget(ctx context.Context, project, name string) (string, bool) {
	in, _, err := l.c.Get(ctx, project, name)
	if err != nil || in.Migration == nil {
		return "", false
	}
	m := in.Migration
	return m.Target, m.Phase == api.MigrationTransfer
}

func (s *Server) getVolumes(r *request) response.Response {
	project := r.PathValue("project")
	if err := s.ids.RequireProject(r.Context(), project); err != nil {
		return response.Error(err)
	}
	vs, err := s.volumes.List(r.Context(), project)
	if err != nil {
		return response.Error(err)
	}
	return list(vs, "")
}

func (s *Server) postVolumes(r *request) response.Response {
	var req api.VolumesPost
	if err := decodeBody(r.Request, &req); err != nil {
		return response.Error(err)
	}
	project := r.PathValue("project")
	if err := s.ids.RequireProject(r.Context(), project); err != nil {
		return response.Error(err)
	}
	v, err := s.volumes.Create(r.Context(), project, req, r.p.CloudAdmin)
	if err != nil {
		return response.Error(err)
	}
	return response.Created(v)
}

func (s *Server) getVolume(r *request) response.Response {
	v, err := s.volumes.Get(r.Context(), r.PathValue("project"), r.PathValue("name"))
	if err != nil {
		return response.Error(err)
	}
	return response.OK(v)
}

func (s *Server) patchVolume(r *request) response.Response {
	var req api.VolumePatch
	if err := decodeBody(r.Request, &req); err != nil {
		return response.Error(err)
	}
	if req.SizeGiB == nil && req.BackupEvery == nil {
		return response.Error(errs.Invalid("size_gib", "give size_gib (the new size; volumes grow only) or backup_every"))
	}
	project, name := r.PathValue("project"), r.PathValue("name")
	var v api.Volume
	var err error
	if req.BackupEvery != nil {
		every, perr := time.ParseDuration(*req.BackupEvery)
		if perr != nil || every < 0 {
			return response.Error(errs.Invalid("backup_every", "backup_every %q: a duration such as 24h, or 0 to stop", *req.BackupEvery))
		}
		keep := 7
		if req.BackupKeep != nil {
			keep = *req.BackupKeep
		}
		if v, err = s.volumes.SetSchedule(r.Context(), project, name, every, keep); err != nil {
			return response.Error(err)
		}
	}
	if req.SizeGiB != nil {
		if v, err = s.volumes.Resize(r.Context(), project, name, *req.SizeGiB); err != nil {
			return response.Error(err)
		}
	}
	return response.OK(v)
}

func (s *Server) deleteVolume(r *request) response.Response {
	v, err := s.volumes.Delete(r.Context(), r.PathValue("project"), r.PathValue("name"))
	if err != nil {
		return response.Error(err)
	}
	return response.OK(v)
}

func (s *Server) postVolumeAttach(r *request) response.Response {
	var req api.VolumeAttach
	if err := decodeBody(r.Request, &req); err != nil {
		return response.Error(err)
	}
	v, err := s.volumes.Attach(r.Context(), r.PathValue("project"), r.PathValue("name"), req)
	if err != nil {
		return response.Error(err)
	}
	return response.OK(v)
}

func (s *Server) postVolumeDetach(r *request) response.Response {
	v, err := s.volumes.Detach(r.Context(), r.PathValue("project"), r.PathValue("name"))
	if err != nil {
		return response.Error(err)
	}
	return response.OK(v)
}

func (s *Server) getStoragePools(r *request) response.Response {
	ps, err := s.volumes.ListPools(r.Context(), r.p.CloudAdmin)
	if err != nil {
		return response.Error(err)
	}
	return list(ps, "")
}

func (s *Server) getStoragePool(r *request) response.Response {
	p, err := s.volumes.GetPool(r.Context(), r.PathValue("pool"), r.p.CloudAdmin)
	if err != nil {
		return response.Error(err)
	}
	return response.OK(p)
}

func (s *Server) postStoragePools(r *request) response.Response {
	var req api.StoragePoolsPost
	if err := decodeBody(r.Request, &req); err != nil {
		return response.Error(err)
	}
	p, err := s.volumes.CreatePool(r.Context(), req)
	if err != nil {
		return response.Error(err)
	}
	return response.Created(p)
}

func (s *Server) deleteStoragePool(r *request) response.Response {
	if err := s.volumes.DeletePool(r.Context(), r.PathValue("pool")); err != nil {
		return response.Error(err)
	}
	return response.NoContent()
}

// getAgentVolumes is the complete list of the volumes an agent's hosts
// handle: what to make, grow, attach and delete.
func (s *Server) getAgentVolumes(r *request) response.Response {
	if err := s.compute.Ready(r.Context()); err != nil {
		return response.Error(err)
	}
	v, err := s.volumes.AgentView(r.Context(), r.agent.Hosts, liveInstances{s.compute})
	if err != nil {
		return response.Error(err)
	}
	return response.OK(v)
}

func (s *Server) postAgentVolumes(r *request) response.Response {
	var req api.AgentVolumeReport
	if err := decodeBody(r.Request, &req); err != nil {
		return response.Error(err)
	}
	if len(req.Volumes) > api.MaxUsageBatch {
		return response.Error(errs.Invalid("volumes", "at most %d volumes a request", api.MaxUsageBatch))
	}
	for i := range req.Volumes {
		rep := &req.Volumes[i]
		rep.Error = agentText(rep.Error)
		for k := range rep.Snapshots {
			rep.Snapshots[k].Error = agentText(rep.Snapshots[k].Error)
		}
	}
	if err := s.volumes.Report(r.Context(), r.agent.Hosts, liveInstances{s.compute}, req.Volumes); err != nil {
		return response.Error(err)
	}
	return response.NoContent()
}

// agentVolumeImage says whether an agent may fetch an image's bytes to
// make a volume of its hosts.
func (s *Server) agentVolumeImage(r *request, sum string) bool {
	ok, err := s.volumes.VolumeImage(r.Context(), r.agent.Hosts, liveInstances{s.compute}, sum)
	return err == nil && ok
}

func (s *Server) getVolumeSnapshots(r *request) response.Response {
	ss, err := s.volumes.ListSnapshots(r.Context(), r.PathValue("project"), r.PathValue("name"))
	if err != nil {
		return response.Error(err)
	}
	return list(ss, "")
}

func (s *Server) postVolumeSnapshots(r *request) response.Response {
	var req api.VolumeSnapshotsPost
	if err := decodeBody(r.Request, &req); err != nil {
		return response.Error(err)
	}
	sn, err := s.volumes.CreateSnapshot(r.Context(), r.PathValue("project"), r.PathValue("name"), req)
	if err != nil {
		return response.Error(err)
	}
	return response.Created(sn)
}

func (s *Server) getVolumeSnapshot(r *request) response.Response {
	sn, err := s.volumes.GetSnapshot(r.Context(), r.PathValue("project"), r.PathValue("name"), r.PathValue("snapshot"))
	if err != nil {
		return response.Error(err)
	}
	return response.OK(sn)
}

func (s *Server) deleteVolumeSnapshot(r *request) response.Response {
	sn, err := s.volumes.DeleteSnapshot(r.Context(), r.PathValue("project"), r.PathValue("name"), r.PathValue("snapshot"))
	if err != nil {
		return response.Error(err)
	}
	return response.OK(sn)
}

func (s *Server) postVolumeRevert(r *request) response.Response {
	var req api.VolumeRevert
	if err := decodeBody(r.Request, &req); err != nil {
		return response.Error(err)
	}
	v, err := s.volumes.Revert(r.Context(), r.PathValue("project"), r.PathValue("name"), req.Snapshot)
	if err != nil {
		return response.Error(err)
	}
	return response.OK(v)
}

func (s *Server) postVolumeMove(r *request) response.Response {
	var req api.VolumeMove
	if err := decodeBody(r.Request, &req); err != nil {
		return response.Error(err)
	}
	v, err := s.volumes.Move(r.Context(), r.PathValue("project"), r.PathValue("name"), req, r.p.CloudAdmin)
	if err != nil {
		return response.Error(err)
	}
	return response.OK(v)
}

func (s *Server) getVolumeBackups(r *request) response.Response {
	project := r.PathValue("project")
	if err := s.ids.RequireProject(r.Context(), project); err != nil {
		return response.Error(err)
	}
	bs, err := s.volumes.ListBackups(r.Context(), project)
	if err != nil {
		return response.Error(err)
	}
	return list(bs, "")
}

func (s *Server) postVolumeBackups(r *request) response.Response {
	var req api.VolumeBackupsPost
	if err := decodeBody(r.Request, &req); err != nil {
		return response.Error(err)
	}
	b, err := s.volumes.CreateBackup(r.Context(), r.PathValue("project"), r.PathValue("name"), req)
	if err != nil {
		return response.Error(err)
	}
	b.Chunks = nil
	return response.Created(b)
}

func (s *Server) getVolumeBackup(r *request) response.Response {
	b, err := s.volumes.GetBackup(r.Context(), r.PathValue("project"), r.PathValue("backup"))
	if err != nil {
		return response.Error(err)
	}
	return response.OK(b)
}

func (s *Server) deleteVolumeBackup(r *request) response.Response {
	if err := s.volumes.DeleteBackup(r.Context(), r.PathValue("project"), r.PathValue("backup")); err != nil {
		return response.Error(err)
	}
	return response.NoContent()
}

// putAgentBackupChunk keeps a chunk of a backup the agent's hosts send.
func (s *Server) putAgentBackupChunk(r *request) response.Response {
	err := s.volumes.PutChunk(r.Context(), r.agent.Hosts, liveInstances{s.compute}, r.PathValue("backup"), r.PathValue("sha256"), r.Body)
	if err != nil {
		return response.Error(err)
	}
	return response.NoContent()
}

// postAgentBackup takes a backup's manifest: the chunks still missing.
func (s *Server) postAgentBackup(r *request) response.Response {
	var req api.BackupManifest
	if err := decodeBody(r.Request, &req); err != nil {
		return response.Error(err)
	}
	req.Error = agentText(req.Error)
	m, err := s.volumes.FinishBackup(r.Context(), r.agent.Hosts, liveInstances{s.compute}, r.PathValue("backup"), req)
	if err != nil {
		return response.Error(err)
	}
	return response.OK(m)
}

// getAgentBackup is the manifest of a backup the agent's hosts restore.
func (s *Server) getAgentBackup(r *request) response.Response {
	var at [2]int64 // offset, limit
	for i, name := range []string{"offset", "limit"} {
		if v := r.URL.Query().Get(name); v != "" {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil || n < 0 {
				return response.Error(errs.Invalid(name, "%s %q: a whole number, 0 or more", name, v))
			}
			at[i] = n
		}
	}
	m, err := s.volumes.BackupManifest(r.Context(), r.agent.Hosts, liveInstances{s.compute}, r.PathValue("backup"), at[0], at[1])
	if err != nil {
		return response.Error(err)
	}
	return response.OK(m)
}

// getAgentBackupChunk streams a chunk of a backup the agent restores.
func (s *Server) getAgentBackupChunk(r *request, w http.ResponseWriter) {
	rc, err := s.volumes.OpenChunk(r.Context(), r.agent.Hosts, liveInstances{s.compute}, r.PathValue("backup"), r.PathValue("sha256"))
	if err != nil {
		response.Error(err).Render(w, r.Request)
		return
	}
	defer rc.Close()
	w.Header().Set("Content-Type", "application/octet-stream")
	w.WriteHeader(http.StatusOK)
	io.Copy(w, rc)
}

// agentText is what an agent says went wrong, as tenants are shown it
// (kumo volume show prints it in their terminal): without control
// characters, bounded; never empty when something was said.
func agentText(s string) string {
	if s == "" {
		return ""
	}
	if t := driver.Attribute(s); t != "" {
		return t
	}
	return "(no printable reason given)"
}
