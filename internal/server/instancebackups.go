package server

import (
	"context"
	"errors"

	"github.com/kumocloud/kumo/api"
	"github.com/kumocloud/kumo/internal/errs"
	"github.com/kumocloud/kumo/internal/server/response"
	"github.com/kumocloud/kumo/internal/volumes"
)

// Instance backups (internal/volumes/instbackups.go): an instance's
// definition and a backup of each of its volumes, made in one
// transaction; a restore makes a new instance with its volumes restored,
// in one transaction too (compute writes the volume service's plan with
// the instance).

func (s *Server) postInstanceBackups(r *request) response.Response {
	var req api.InstanceBackupsPost
	if err := decodeBody(r.Request, &req); err != nil {
		return response.Error(err)
	}
	project := r.PathValue("project")
	in, _, err := s.compute.Get(r.Context(), project, r.PathValue("name"))
	if err != nil {
		return response.Error(err)
	}
	ib, err := s.volumes.CreateInstanceBackup(r.Context(), project, in, req)
	if err != nil {
		return response.Error(err)
	}
	return response.Created(ib)
}

func (s *Server) getInstanceBackups(r *request) response.Response {
	project := r.PathValue("project")
	if _, err := s.ids.GetProject(r.Context(), project); err != nil {
		return response.Error(err)
	}
	bs, err := s.volumes.ListInstanceBackups(r.Context(), project)
	if err != nil {
		return response.Error(err)
	}
	return list(bs, "")
}

func (s *Server) getInstanceBackup(r *request) response.Response {
	ib, err := s.volumes.GetInstanceBackup(r.Context(), r.PathValue("project"), r.PathValue("backup"))
	if err != nil {
		return response.Error(err)
	}
	return response.OK(ib)
}

func (s *Server) deleteInstanceBackup(r *request) response.Response {
	if err := s.volumes.DeleteInstanceBackup(r.Context(), r.PathValue("project"), r.PathValue("backup"), rootCopier{s}); err != nil {
		return response.Error(err)
	}
	return response.NoContent()
}

// postInstanceRestore makes a new instance from an instance backup: 201
// with the instance (PENDING); its volumes are made on the host it is
// placed on, and it starts with them.
func (s *Server) postInstanceRestore(r *request) response.Response {
	var req api.InstanceRestore
	if err := decodeBody(r.Request, &req); err != nil {
		return response.Error(err)
	}
	project, backup := r.PathValue("project"), r.PathValue("backup")
	ib, err := s.volumes.RestoreDefinition(r.Context(), project, backup)
	if err != nil {
		return response.Error(err)
	}
	in, err := s.compute.CreateWith(r.Context(), project, restoreRequest(ib, req), func(ctx context.Context, bi volumes.BootInstance) (volumes.BootPlan, error) {
		if err := s.restoreImage(ctx, project, ib); err != nil {
			return volumes.BootPlan{}, err
		}
		return s.volumes.PlanRestore(ctx, project, bi, backup)
	})
	if err != nil {
		return response.Error(restoreError(err, ib))
	}
	return response.Created(in)
}

// restoreRequest is the create of the instance a backup restores.
func restoreRequest(ib api.InstanceBackup, req api.InstanceRestore) api.InstancesPost {
	d := ib.Definition
	in := api.InstancesPost{Name: req.Name, Type: d.Type, Flavor: d.Flavor, Image: d.Image, Requirements: d.Requirements, Rank: d.Rank,
		ServerGroup: d.ServerGroup, UserData: d.UserData, Labels: d.Labels, Networks: d.Networks, SecurityGroups: d.SecurityGroups, HA: d.HA}
	if in.Name == "" {
		in.Name = ib.Instance
	}
	if ib.RootImage != "" {
		in.Image = ib.Project + "/" + ib.RootImage // its root disk's copy
	}
	for _, v := range ib.Volumes {
		if v.Device == api.BootDevice && in.Image == "" {
			// A VM booting from a volume of its own loader: the restored
			// root volume (the plan makes it) is what it boots.
			in.BootVolume = in.Name + volumes.RootSuffix
		}
	}
	return in
}

// restoreImage refuses a restore whose image is gone or is no longer the
// one backed up (another image took its name): the new instance would
// start from other bytes.
func (s *Server) restoreImage(ctx context.Context, project string, ib api.InstanceBackup) error {
	if ib.RootImage != "" {
		// RestoreDefinition found it active, of the id recorded.
		return nil
	}
	d := ib.Definition
	if d.ImageSHA256 == "" {
		return nil
	}
	img, err := s.images.Resolve(ctx, project, d.Image)
	if errors.Is(err, errs.ErrNotFound) {
		return errs.Conflict("image %q the instance was made from is gone: instance backup %q cannot be restored without it", d.Image, ib.Name)
	}
	if err != nil {
		return err
	}
	if img.SHA256 != d.ImageSHA256 {
		return errs.Conflict("image %q is no longer the image instance backup %q was made with (its content changed)", d.Image, ib.Name)
	}
	return nil
}

// restoreError says what of the backup's definition is missing now (a
// flavor, a server group or a network deleted since): not found becomes
// a conflict naming it, the backup itself being there.
func restoreError(err error, ib api.InstanceBackup) error {
	if errors.Is(err, errs.ErrNotFound) {
		return errs.Conflict("instance backup %q cannot be restored as it was made: %v", ib.Name, err)
	}
	return err
}

// rootCopier drops the image holding a VM's root disk in an instance
// backup made before root disks went to the backup store.
type rootCopier struct{ s *Server }

// DropRoot deletes the image of an instance backup's root disk, if it is
// still the one made for it; one instances now use (restored from it)
// stays, an image of the project like any other.
func (c rootCopier) DropRoot(ctx context.Context, project, image, id string) error {
	img, err := c.s.images.Get(ctx, project, project+"/"+image)
	if errors.Is(err, errs.ErrNotFound) || err == nil && img.ID != id {
		return nil
	}
	if err != nil {
		return err
	}
	err = c.s.images.Delete(ctx, project, image, false)
	if errors.Is(err, errs.ErrNotFound) {
		return nil
	}
	if errors.Is(err, errs.ErrConflict) {
		if n, uerr := c.s.compute.ImageUsers(ctx, project, image); uerr == nil && n > 0 {
			return nil
		}
	}
	return err
}
