package compute

import (
	"context"
	"errors"
	"sort"

	"github.com/google/uuid"

	"github.com/kumocloud/kumo/api"
	"github.com/kumocloud/kumo/internal/errs"
	"github.com/kumocloud/kumo/internal/events"
	"github.com/kumocloud/kumo/internal/idempotency"
	"github.com/kumocloud/kumo/internal/store"
	"github.com/kumocloud/kumo/internal/validate"
)

const groupsPrefix = "/servergroups/"

func groupKey(project, name string) string { return groupsPrefix + project + "/" + name }

type groupRecord struct {
	api.Meta
	Project string `json:"project"`
	Policy  string `json:"policy"`
	Hard    bool   `json:"hard"`
}

func (svc *Service) getGroup(ctx context.Context, project, name string) (groupRecord, int64, error) {
	var g groupRecord
	rev, err := store.GetJSON(ctx, svc.s, groupKey(project, name), &g)
	if errors.Is(err, store.ErrNotFound) {
		return g, 0, errs.NotFound("server group %q not found in project %q", name, project)
	}
	return g, rev, err
}

// allGroups maps "project/name" to every server group.
func (svc *Service) allGroups(ctx context.Context) (map[string]groupRecord, error) {
	items, err := store.ListJSON[groupRecord](ctx, svc.s, groupsPrefix)
	out := map[string]groupRecord{}
	for _, it := range items {
		out[it.Value.Project+"/"+it.Value.Name] = it.Value
	}
	return out, err
}

func (svc *Service) groupAPI(g groupRecord, rev int64) api.ServerGroup {
	out := api.ServerGroup{Meta: g.Meta, Project: g.Project, Policy: g.Policy, Hard: g.Hard, Members: []string{}}
	out.Revision = rev
	svc.cache.mu.RLock()
	for _, e := range svc.cache.instances {
		if e.rec.Project == g.Project && e.rec.ServerGroup == g.Name {
			out.Members = append(out.Members, e.rec.Name)
		}
	}
	svc.cache.mu.RUnlock()
	sort.Strings(out.Members)
	return out
}

// CreateGroup makes a server group.
func (svc *Service) CreateGroup(ctx context.Context, project string, req api.ServerGroupsPost) (api.ServerGroup, error) {
	if err := validate.Name("name", req.Name); err != nil {
		return api.ServerGroup{}, err
	}
	if req.Policy != "affinity" && req.Policy != "anti-affinity" {
		return api.ServerGroup{}, errs.Invalid("policy", "policy %q: use affinity or anti-affinity", req.Policy)
	}
	if err := validate.Labels("labels", req.Labels); err != nil {
		return api.ServerGroup{}, err
	}
	t := svc.now()
	g := groupRecord{Meta: api.Meta{ID: uuid.NewString(), Name: req.Name, Labels: req.Labels, CreatedAt: t, UpdatedAt: t}, Project: project, Policy: req.Policy, Hard: !req.Soft}
	rev, err := svc.s.Txn(ctx, []store.Cond{store.Absent(groupKey(project, req.Name))}, append([]store.Op{
		store.PutJSON(groupKey(project, req.Name), g),
		events.Op(ctx, "servergroup", events.Created, project, "/v1/projects/"+project+"/server-groups/"+req.Name, g),
	}, idempotency.Done(ctx, svc.groupAPI(g, 0))...))
	if errors.Is(err, store.ErrConflict) {
		return api.ServerGroup{}, errs.Conflict("server group %q already exists", req.Name)
	}
	if err != nil {
		return api.ServerGroup{}, err
	}
	return svc.groupAPI(g, rev), nil
}

// GetGroup shows a server group with its members.
func (svc *Service) GetGroup(ctx context.Context, project, name string) (api.ServerGroup, error) {
	g, rev, err := svc.getGroup(ctx, project, name)
	if err != nil {
		return api.ServerGroup{}, err
	}
	return svc.groupAPI(g, rev), nil
}

// ListGroups lists a project's server groups.
func (svc *Service) ListGroups(ctx context.Context, project string) ([]api.ServerGroup, error) {
	items, err := store.ListJSON[groupRecord](ctx, svc.s, groupsPrefix+project+"/")
	out := []api.ServerGroup{}
	for _, it := range items {
		out = append(out, svc.groupAPI(it.Value, it.Revision))
	}
	return out, err
}

// DeleteGroup removes an empty server group.
func (svc *Service) DeleteGroup(ctx context.Context, project, name string) error {
	g, rev, err := svc.getGroup(ctx, project, name)
	if err != nil {
		return err
	}
	if m := svc.groupAPI(g, rev).Members; len(m) > 0 {
		return errs.Conflict("server group %q still has %d members", name, len(m))
	}
	_, err = svc.s.Txn(ctx, []store.Cond{store.At(groupKey(project, name), rev)}, []store.Op{
		store.Del(groupKey(project, name)),
		events.Op(ctx, "servergroup", events.Deleted, project, "/v1/projects/"+project+"/server-groups/"+name, nil),
	})
	return err
}

// DeleteProjectGroups removes every server group of a project being
// deleted (it has no instances left to be members).
func (svc *Service) DeleteProjectGroups(ctx context.Context, project string) error {
	prefix := groupsPrefix + project + "/"
	return store.DeleteUnder(ctx, svc.s, prefix, func(kv store.KV) []store.Op {
		return []store.Op{events.Op(ctx, "servergroup", events.Deleted, project, "/v1/projects/"+project+"/server-groups/"+kv.Key[len(prefix):], nil)}
	})
}

// ArchiveProject moves the history of a deleted project's instances (its
// DONE instances, which metering bills from) to the name as, which no
// project can have: showback keeps counting them, and a new project of
// the old name sees none of them.
func (svc *Service) ArchiveProject(ctx context.Context, project, as string) error {
	return store.MoveJSON(ctx, svc.s, archivePrefix+project+"/", archivePrefix+as+"/", func(r *record) { r.Project = as })
}
