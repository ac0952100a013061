package identity

import (
	"context"
	"errors"
	"maps"
	"slices"
	"strconv"

	"github.com/google/uuid"

	"github.com/kumocloud/kumo/api"
	"github.com/kumocloud/kumo/internal/errs"
	"github.com/kumocloud/kumo/internal/events"
	"github.com/kumocloud/kumo/internal/idempotency"
	"github.com/kumocloud/kumo/internal/quota"
	"github.com/kumocloud/kumo/internal/store"
	"github.com/kumocloud/kumo/internal/validate"
)

// projectRecord is what is stored; quota and usage live in the quota record.
type projectRecord struct {
	api.Meta
	Description string `json:"description,omitempty"`
	BudgetMicro int64  `json:"budget_micro,omitempty"`
	// Deleting marks a project whose deletion began.
	Deleting bool `json:"deleting,omitempty"`
}

func projectKey(name string) string { return projectsPrefix + name }

func projectURL(name string) string { return "/v1/projects/" + name }

func (r projectRecord) api(q quota.Record, rev int64) api.Project {
	p := api.Project{Meta: r.Meta, Description: r.Description, Quota: q.Limit, Usage: q.Usage, BudgetMicro: r.BudgetMicro, Deleting: r.Deleting}
	p.Revision = rev
	return p
}

// ValidateProjectsPost checks a create request.
func ValidateProjectsPost(req *api.ProjectsPost) error {
	if err := validate.Name("name", req.Name); err != nil {
		return err
	}
	if err := validate.Text("description", req.Description, 1024); err != nil {
		return err
	}
	if err := validate.Labels("labels", req.Labels); err != nil {
		return err
	}
	var lim api.ResourceCounts
	return quota.Apply(&lim, req.Quota, "quota")
}

// CreateProject creates a project with its quota record, atomically.
func (svc *Service) CreateProject(ctx context.Context, req api.ProjectsPost) (api.Project, error) {
	if err := ValidateProjectsPost(&req); err != nil {
		return api.Project{}, err
	}
	lim := svc.opts.DefaultQuota
	quota.Apply(&lim, req.Quota, "quota")
	t := now()
	rec := projectRecord{Meta: api.Meta{ID: uuid.NewString(), Name: req.Name, Labels: req.Labels, CreatedAt: t, UpdatedAt: t}, Description: req.Description}
	q := quota.Record{Limit: lim}
	ops := append(svc.createProjectOps(ctx, rec, q), idempotency.Done(ctx, rec.api(q, 0))...)
	rev, err := svc.s.Txn(ctx, []store.Cond{store.Absent(projectKey(req.Name)), store.Absent(quota.Key(req.Name))}, ops)
	if errors.Is(err, store.ErrConflict) {
		return api.Project{}, errs.Conflict("project %q already exists", req.Name)
	}
	if err != nil {
		return api.Project{}, err
	}
	return rec.api(q, rev), nil
}

func (svc *Service) createProjectOps(ctx context.Context, rec projectRecord, q quota.Record) []store.Op {
	return []store.Op{
		store.PutJSON(projectKey(rec.Name), rec),
		quota.InitOp(rec.Name, q.Limit),
		events.Op(ctx, "project", events.Created, rec.Name, projectURL(rec.Name), rec.api(q, 0)),
	}
}

func (svc *Service) getProjectRecord(ctx context.Context, name string) (projectRecord, int64, error) {
	var rec projectRecord
	rev, err := store.GetJSON(ctx, svc.s, projectKey(name), &rec)
	if isNotFound(err) {
		return rec, 0, errs.NotFound("project %q not found", name)
	}
	return rec, rev, err
}

// GetProject returns a project with its quota and live usage.
func (svc *Service) GetProject(ctx context.Context, name string) (api.Project, error) {
	rec, rev, err := svc.getProjectRecord(ctx, name)
	if err != nil {
		return api.Project{}, err
	}
	q, _, err := quota.Get(ctx, svc.s, name)
	if err != nil {
		return api.Project{}, err
	}
	return rec.api(q, rev), nil
}

// RequireProject answers errs.NotFound unless the project exists: what a
// project's endpoints check before anything else (without GetProject's
// read of its quota, on every create).
func (svc *Service) RequireProject(ctx context.Context, name string) error {
	_, _, err := svc.getProjectRecord(ctx, name)
	return err
}

// ProjectExists reports whether the project exists (and is not being
// deleted: nothing new may name it).
func (svc *Service) ProjectExists(ctx context.Context, name string) (bool, error) {
	rec, _, err := svc.getProjectRecord(ctx, name)
	if errors.Is(err, errs.ErrNotFound) {
		return false, nil
	}
	return err == nil && !rec.Deleting, err
}

// ListProjects lists the projects the principal can see, one page at a time,
// keeping only those whose labels include every label in sel.
func (svc *Service) ListProjects(ctx context.Context, p *Principal, sel map[string]string, after string, limit int) ([]api.Project, string, error) {
	return store.Paginate(ctx, svc.s, projectsPrefix, after, limit, func(kv store.KV) (api.Project, bool, error) {
		var rec projectRecord
		if err := unmarshal(kv, &rec); err != nil {
			return api.Project{}, false, err
		}
		if !p.CanSee(rec.Name) || !rec.HasLabels(sel) {
			return api.Project{}, false, nil
		}
		q, _, err := quota.Get(ctx, svc.s, rec.Name)
		if err != nil && !errors.Is(err, errs.ErrNotFound) {
			return api.Project{}, false, err
		}
		return rec.api(q, kv.Revision), true, nil
	})
}

// PatchProject changes description and labels; with a revision, only if the
// project has not changed since.
func (svc *Service) PatchProject(ctx context.Context, name string, patch api.ProjectPatch) (api.Project, error) {
	if patch.Description != nil {
		if err := validate.Text("description", *patch.Description, 1024); err != nil {
			return api.Project{}, err
		}
	}
	if err := validate.Labels("labels", patch.Labels); err != nil {
		return api.Project{}, err
	}
	if patch.BudgetMicro != nil && *patch.BudgetMicro < 0 {
		return api.Project{}, errs.Invalid("budget_micro", "budget_micro must be >= 0 (0 removes the budget)")
	}
	for {
		rec, rev, err := svc.getProjectRecord(ctx, name)
		if err != nil {
			return api.Project{}, err
		}
		if patch.Revision != 0 && patch.Revision != rev {
			return api.Project{}, errs.Conflict("project %q changed since revision %d (now %d); read it again", name, patch.Revision, rev)
		}
		if patch.Description != nil {
			rec.Description = *patch.Description
		}
		if patch.BudgetMicro != nil {
			rec.BudgetMicro = *patch.BudgetMicro
		}
		if patch.Labels != nil {
			rec.Labels = maps.Clone(patch.Labels)
			if len(rec.Labels) == 0 {
				rec.Labels = nil
			}
		}
		rec.UpdatedAt = now()
		q, _, err := quota.Get(ctx, svc.s, name)
		if err != nil {
			return api.Project{}, err
		}
		nrev, err := svc.s.Txn(ctx, []store.Cond{store.At(projectKey(name), rev)}, []store.Op{
			store.PutJSON(projectKey(name), rec),
			events.Op(ctx, "project", events.Updated, name, projectURL(name), rec.api(q, 0)),
		})
		if errors.Is(err, store.ErrConflict) {
			continue
		}
		if err != nil {
			return api.Project{}, err
		}
		return rec.api(q, nrev), nil
	}
}

// SetQuota changes some quota limits of a project.
func (svc *Service) SetQuota(ctx context.Context, name string, changes map[string]int64) (api.Project, error) {
	if len(changes) == 0 {
		return api.Project{}, errs.Invalid("quota", "quota: name at least one limit to change")
	}
	var lim api.ResourceCounts
	if err := quota.Apply(&lim, changes, "quota"); err != nil {
		return api.Project{}, err
	}
	rec, _, err := svc.getProjectRecord(ctx, name)
	if err != nil {
		return api.Project{}, err
	}
	_, err = quota.Update(ctx, svc.s, name, func(r *quota.Record) error {
		return quota.Apply(&r.Limit, changes, "quota")
	}, func(r quota.Record) []store.Op {
		return []store.Op{events.Op(ctx, "project", events.Updated, name, projectURL(name), rec.api(r, 0))}
	})
	if err != nil {
		return api.Project{}, err
	}
	return svc.GetProject(ctx, name)
}

// CheckProjectDeletable refuses to delete the default project or one that
// still holds resources.
func (svc *Service) CheckProjectDeletable(ctx context.Context, name string) error {
	if name == DefaultProject {
		return errs.Conflict("the %q project cannot be deleted", DefaultProject)
	}
	q, _, err := quota.Get(ctx, svc.s, name)
	if err != nil {
		return err
	}
	if q.Usage != (api.ResourceCounts{}) {
		return errs.Conflict("project %q still holds resources (%s); delete them first", name, describeUsage(q.Usage))
	}
	return nil
}

func describeUsage(u api.ResourceCounts) string {
	parts := []struct {
		n    int64
		name string
	}{{u.Instances, "instances"}, {u.Volumes, "volumes"}, {u.Networks, "networks"}, {u.Ports, "ports"}, {u.FloatingIPs, "floating IPs"}, {u.Images, "images"}}
	s := ""
	for _, p := range parts {
		if p.n > 0 {
			if s != "" {
				s += ", "
			}
			s += strconv.FormatInt(p.n, 10) + " " + p.name
		}
	}
	if s == "" {
		s = "allocated capacity"
	}
	return s
}

// DeleteProject removes the project name whose id is id ("" for any), and
// everything it owns, as the long work of an operation:
//
//  1. the project is marked as being deleted (the caller has already
//     stopped requests that add to it or change it);
//  2. a project still holding counted resources is refused, and unmarked;
//  3. every user's role in it, and default_project pointing at it, go;
//  4. cleanup removes what other services keep under its name (security
//     and server groups, its budget alerts...), given the project's id;
//  5. the project and its quota record go, in one transaction.
//
// Each step is idempotent, so a crash mid-way is finished by running it
// again; and a project of the same name made after the deletion ended
// (another id) is never touched.
func (svc *Service) DeleteProject(ctx context.Context, name, id string, cleanup func(ctx context.Context, projectID string) error, progress func(int)) error {
	if progress == nil {
		progress = func(int) {}
	}
	if name == DefaultProject {
		return errs.Conflict("the %q project cannot be deleted", DefaultProject)
	}
	rec, err := svc.setDeleting(ctx, name, id, true)
	if errors.Is(err, errs.ErrNotFound) {
		return nil // deleted already
	}
	if err != nil {
		return err
	}
	if err := svc.CheckProjectDeletable(ctx, name); err != nil {
		if _, uerr := svc.setDeleting(context.WithoutCancel(ctx), name, rec.ID, false); uerr != nil && !errors.Is(uerr, errs.ErrNotFound) {
			return uerr
		}
		return err
	}
	progress(10)
	users, err := store.ListAll(ctx, svc.s, usersPrefix)
	if err != nil {
		return err
	}
	for i, kv := range users {
		var u userRecord
		if err := unmarshal(kv, &u); err != nil {
			return err
		}
		if hasBinding(u.Roles, name) || u.DefaultProject == name {
			_, err := svc.updateUser(ctx, u.Name, name, func(r *userRecord) error {
				r.Roles = slices.DeleteFunc(r.Roles, func(b api.RoleBinding) bool { return b.Project == name })
				if r.DefaultProject == name {
					r.DefaultProject = ""
				}
				return nil
			})
			if err != nil && !errors.Is(err, errs.ErrNotFound) {
				return err
			}
		}
		progress(10 + 50*(i+1)/len(users))
	}
	if cleanup != nil {
		if err := cleanup(ctx, rec.ID); err != nil {
			return err
		}
	}
	progress(90)
	rec, rev, err := svc.getProjectRecord(ctx, name)
	if err != nil {
		return err
	}
	_, qrev, err := quota.Get(ctx, svc.s, name)
	if err != nil && !errors.Is(err, errs.ErrNotFound) {
		return err
	}
	conds := []store.Cond{store.At(projectKey(name), rev)}
	if qrev > 0 {
		// Usage must still be zero when the project goes.
		conds = append(conds, store.At(quota.Key(name), qrev))
	}
	_, err = svc.s.Txn(ctx, conds, []store.Op{
		store.Del(projectKey(name)), quota.DeleteOp(name),
		events.Op(ctx, "project", events.Deleted, name, projectURL(rec.Name), nil),
	})
	if errors.Is(err, store.ErrConflict) {
		return errs.Conflict("project %q changed while being deleted; try again", name)
	}
	return err
}

// setDeleting marks (or unmarks) the project name of id ("" for any) as
// being deleted. A project of that name with another id is "not found".
func (svc *Service) setDeleting(ctx context.Context, name, id string, deleting bool) (projectRecord, error) {
	for attempt := 0; attempt < 10; attempt++ {
		rec, rev, err := svc.getProjectRecord(ctx, name)
		if err != nil {
			return rec, err
		}
		if id != "" && rec.ID != id {
			return rec, errs.NotFound("project %q (id %s) not found", name, id)
		}
		if rec.Deleting == deleting {
			return rec, nil
		}
		rec.Deleting, rec.UpdatedAt = deleting, now()
		q, _, _ := quota.Get(ctx, svc.s, name)
		_, err = svc.s.Txn(ctx, []store.Cond{store.At(projectKey(name), rev)}, []store.Op{
			store.PutJSON(projectKey(name), rec),
			events.Op(ctx, "project", events.Updated, name, projectURL(name), rec.api(q, 0)),
		})
		if !errors.Is(err, store.ErrConflict) {
			return rec, err
		}
	}
	return projectRecord{}, errs.Conflict("project %q is changing too often; try again", name)
}
