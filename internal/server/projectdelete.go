package server

import (
	"context"
	"sync"

	"github.com/kumocloud/kumo/internal/errs"
	"github.com/kumocloud/kumo/internal/operations"
	"github.com/kumocloud/kumo/internal/server/response"
)

const opDeleteProject = "project.delete"

func (s *Server) deleteProject(r *request) response.Response {
	name := r.PathValue("project")
	p, err := s.ids.GetProject(r.Context(), name)
	if err != nil {
		return response.Error(err)
	}
	// Refuse at once what would fail anyway, so the caller gets a 409
	// instead of a failed operation.
	if err := s.ids.CheckProjectDeletable(r.Context(), name); err != nil {
		return response.Error(err)
	}
	op, err := s.ops.Start(r.Context(), name, opDeleteProject, "Deleting project "+name, "/v1/projects/"+name,
		map[string]string{"project": name, "project_id": p.ID})
	if err != nil {
		return response.Error(err)
	}
	return response.Async(op)
}

// runDeleteProject is the project deletion: nothing new may enter the
// project from the moment it starts (the fence waits for requests already
// in it), then identity marks it, checks it is empty and removes it with
// everything kept under its name. Resumed after a crash, it finishes.
func (s *Server) runDeleteProject(ctx context.Context, op *operations.Op) error {
	name := op.Args["project"]
	if err := s.fence.close(ctx, name); err != nil {
		return err
	}
	defer s.fence.open(name)
	op.Progress(ctx, 5)
	return s.ids.DeleteProject(ctx, name, op.Args["project_id"], func(ctx context.Context, id string) error {
		return s.forgetProject(ctx, name, id)
	}, func(pct int) { op.Progress(ctx, pct) })
}

// forgetProject removes what other services keep under the name of a
// project being deleted, so that a new project of the same name inherits
// none of it. Each step is idempotent. Per prefix with a {project} part:
//
//   - /secgroups/{p}/  security groups, its default one too: deleted
//   - /servergroups/{p}/  server groups: deleted
//   - /metering/alerts/{p}/  budget alerts already fired: deleted
//   - /metering/storage/{p}/  the ledger of its volumes, snapshots and
//     backups: moved as the archives below are
//   - /archive/instances/{p}/, /archive/images/{p}/  the history of its
//     DONE instances and deleted images (metering bills from it): kept,
//     moved to the name "{p}.deleted-{id}" (never a valid project name),
//     so showback still counts them and a new {p} sees none
//   - images of other projects shared with {p}: {p} leaves their lists
//   - /instances/, /images/, /networks/, /ports/, /floatingips/ {p}/:
//     none left (they are counted in the quota, which must be empty)
//   - /quota/{p}, /projects/{p}, role bindings: identity removes them
//   - events and operations naming {p}, and Idempotency-Key records
//     (hashed, expiring): history, kept.
func (s *Server) forgetProject(ctx context.Context, name, id string) error {
	if err := s.networks.DeleteProjectGroups(ctx, name); err != nil {
		return err
	}
	if err := s.compute.DeleteProjectGroups(ctx, name); err != nil {
		return err
	}
	tomb := name + ".deleted-" + id[:min(8, len(id))]
	if err := s.meter.ForgetProject(ctx, name, tomb); err != nil {
		return err
	}
	if err := s.compute.ArchiveProject(ctx, name, tomb); err != nil {
		return err
	}
	return s.images.ForgetProject(ctx, name, tomb)
}

// projectFence keeps requests that change a project (any method but GET
// on a path with {project}) out of a project being deleted, and lets its
// deletion wait for those already in. In memory: one server per store.
type projectFence struct {
	mu     sync.Mutex
	closed map[string]bool
	active map[string]int
	idle   map[string]chan struct{} // closed when a closed project's last request ends
}

func newProjectFence() *projectFence {
	return &projectFence{closed: map[string]bool{}, active: map[string]int{}, idle: map[string]chan struct{}{}}
}

// enter admits a request into project, or refuses it; call the returned
// func when the request ends.
func (f *projectFence) enter(project string) (func(), error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed[project] {
		return nil, errs.Conflict("project %q is being deleted; nothing in it can change", project)
	}
	f.active[project]++
	return func() {
		f.mu.Lock()
		defer f.mu.Unlock()
		if f.active[project]--; f.active[project] <= 0 {
			delete(f.active, project)
			if ch, ok := f.idle[project]; ok {
				close(ch)
				delete(f.idle, project)
			}
		}
	}, nil
}

// close refuses new requests into project and waits for those in it.
func (f *projectFence) close(ctx context.Context, project string) error {
	f.mu.Lock()
	f.closed[project] = true
	if f.active[project] == 0 {
		f.mu.Unlock()
		return nil
	}
	ch, ok := f.idle[project]
	if !ok {
		ch = make(chan struct{})
		f.idle[project] = ch
	}
	f.mu.Unlock()
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// open lets requests into project again.
func (f *projectFence) open(project string) {
	f.mu.Lock()
	delete(f.closed, project)
	f.mu.Unlock()
}
