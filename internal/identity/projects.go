package identity

import (
	"context"
	"errors"
	"maps"
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
}

func projectKey(name string) string { return projectsPrefix + name }

func projectURL(name string) string { return "/v1/projects/" + name }

func (r projectRecord) api(q quota.Record, rev int64) api.Project {
	p := api.Project{Meta: r.Meta, Description: r.Description, Quota: q.Limit, Usage: q.Usage, BudgetMicro: r.BudgetMicro}
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

// ProjectExists reports whether the project exists.
func (svc *Service) ProjectExists(ctx context.Context, name string) (bool, error) {
	_, _, err := svc.getProjectRecord(ctx, name)
	if errors.Is(err, errs.ErrNotFound) {
		return false, nil
	}
	return err == nil, err
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

// DeleteProject removes a project: its role bindings, then the project and
// its quota record in one transaction. It is idempotent, so an interrupted
// deletion is finished by running it again.
func (svc *Service) DeleteProject(ctx context.Context, name string, progress func(int)) error {
	users, err := store.ListAll(ctx, svc.s, usersPrefix)
	if err != nil {
		return err
	}
	for i, kv := range users {
		var u userRecord
		if err := unmarshal(kv, &u); err != nil {
			return err
		}
		if hasBinding(u.Roles, name) {
			if err := svc.RemoveMember(ctx, name, u.Name); err != nil && !errors.Is(err, errs.ErrNotFound) {
				return err
			}
		}
		if progress != nil {
			progress(10 + 80*(i+1)/len(users))
		}
	}
	rec, rev, err := svc.getProjectRecord(ctx, name)
	if errors.Is(err, errs.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	if err := svc.CheckProjectDeletable(ctx, name); err != nil {
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
