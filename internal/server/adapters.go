package server

import (
	"context"
	"log/slog"

	"github.com/kumocloud/kumo/api"
	"github.com/kumocloud/kumo/internal/compute"
	"github.com/kumocloud/kumo/internal/identity"
	"github.com/kumocloud/kumo/internal/images"
	"github.com/kumocloud/kumo/internal/metering"
)

// What services read of each other, where their types differ: each
// consumer declares a small interface, and these adapt the producers to it.

// instancesLater is the compute service as the image and network services
// see it: they are made before it (it needs them), so it is bound here,
// once, right after it is made and before anything runs.
type instancesLater struct{ c *compute.Service }

func (l *instancesLater) ImageUsers(ctx context.Context, project, image string) (int, error) {
	return l.c.ImageUsers(ctx, project, image)
}

func (l *instancesLater) HostOf(project, instance string) string {
	return l.c.HostOf(project, instance)
}

func (l *instancesLater) GroupUsers(project, group string) int {
	return l.c.GroupUsers(project, group)
}

func (l *instancesLater) InstanceNICs(ctx context.Context, project, instance string) (string, []api.InstanceNIC, error) {
	return l.c.InstanceNICs(ctx, project, instance)
}

// instanceGetter is compute as snapshots read it.
type instanceGetter struct{ c *compute.Service }

func (g instanceGetter) Instance(ctx context.Context, project, name string) (api.Instance, error) {
	in, _, err := g.c.Get(ctx, project, name)
	return in, err
}

// meteredInstances is compute as metering reads it.
type meteredInstances struct{ c *compute.Service }

func (m meteredInstances) MeteredInstances(ctx context.Context, project string) ([]metering.Instance, error) {
	ms, err := m.c.ForMetering(ctx, project)
	out := make([]metering.Instance, len(ms))
	for i, m := range ms {
		out[i] = meteredOf(m)
	}
	return out, err
}

func meteredOf(m compute.Metered) metering.Instance {
	return metering.Instance{ID: m.Instance.ID, Name: m.Instance.Name, Project: m.Instance.Project, Flavor: m.Instance.Flavor, Size: m.Instance.Size, History: m.History}
}

// FollowInstances feeds metering's running totals from compute.
func (m meteredInstances) FollowInstances(ctx context.Context, r *metering.Running, log *slog.Logger) {
	m.c.FollowMetered(ctx, runningSink{r}, log)
}

// runningSink is metering's running totals as compute feeds them.
type runningSink struct{ r *metering.Running }

var meteredSources = map[string]string{compute.SourceLive: metering.SourceLive, compute.SourceArchive: metering.SourceArchive}

func (s runningSink) Replace(source string, items map[string]compute.Metered) {
	out := make(map[string]metering.Instance, len(items))
	for k, m := range items {
		out[k] = meteredOf(m)
	}
	s.r.Replace(meteredSources[source], out)
}

func (s runningSink) Put(source, key string, m compute.Metered) {
	s.r.Put(meteredSources[source], key, meteredOf(m))
}

func (s runningSink) Delete(source, key string) { s.r.Delete(meteredSources[source], key) }

// meteredImages is the image service as metering reads it.
type meteredImages struct{ svc *images.Service }

func (m meteredImages) MeteredImages(ctx context.Context, project string) ([]metering.Image, error) {
	stored, err := m.svc.StoredImages(ctx, project)
	out := make([]metering.Image, len(stored))
	for i, st := range stored {
		out[i] = metering.Image{Project: st.Project, Name: st.Name, Bytes: st.Bytes, From: st.From, To: st.To}
	}
	return out, err
}

// projectBudgets is identity as metering reads it.
type projectBudgets struct{ ids *identity.Service }

// allSeeing lists every project.
var allSeeing = identity.LocalRoot()

func (p projectBudgets) Budgets(ctx context.Context) ([]metering.Budget, error) {
	projects, _, err := p.ids.ListProjects(ctx, allSeeing, nil, "", 0)
	out := make([]metering.Budget, len(projects))
	for i, pr := range projects {
		out[i] = metering.Budget{Project: pr.Name, Micro: pr.BudgetMicro}
	}
	return out, err
}
