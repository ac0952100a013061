package client

import (
	"context"
	"io"
	"net/http"
	"net/url"

	"github.com/kumocloud/kumo/api"
)

// MigrateInstance starts moving an instance to another host (req.Host,
// or the scheduler's choice) and returns the operation following it
// (202): wait for it (WaitOperation, FollowOperation). What can be
// refused at once (a state that cannot migrate, a target without room, a
// live move of a container) is refused here.
func (c *Client) MigrateInstance(ctx context.Context, project, name string, req api.InstanceMigrate) (api.Operation, error) {
	req.Cancel = false
	var out api.Operation
	return out, c.do(ctx, http.MethodPost, p("v1", "projects", project, "instances", name, "migrate"), nil, req, &out)
}

// CancelMigration asks the migration under way to stop; the instance
// stays on its source. It returns the instance as the cancel left it.
func (c *Client) CancelMigration(ctx context.Context, project, name string) (api.Instance, error) {
	var out api.Instance
	return out, c.do(ctx, http.MethodPost, p("v1", "projects", project, "instances", name, "migrate"), nil, api.InstanceMigrate{Cancel: true}, &out)
}

// ExplainMigration says, for every host, whether the instance could
// migrate there now, and why not.
func (c *Client) ExplainMigration(ctx context.Context, project, name string) (api.Explain, error) {
	var out api.Explain
	return out, c.do(ctx, http.MethodGet, p("v1", "projects", project, "instances", name, "explain"), url.Values{"migrate": {"true"}}, nil, &out)
}

// EvacuationPlan says where each instance of a host would go (a dry run:
// nothing moves).
func (c *Client) EvacuationPlan(ctx context.Context, host string) (api.EvacuationPlan, error) {
	var out api.EvacuationPlan
	return out, c.do(ctx, http.MethodPost, p("v1", "hosts", host, "evacuate"), nil, api.HostEvacuate{DryRun: true}, &out)
}

// EvacuateHost disables a host and migrates everything off it; the
// operation says how far it is.
func (c *Client) EvacuateHost(ctx context.Context, host string, concurrency int) (api.Operation, error) {
	var out api.Operation
	return out, c.do(ctx, http.MethodPost, p("v1", "hosts", host, "evacuate"), nil, api.HostEvacuate{Concurrency: concurrency}, &out)
}

// AgentMigrationReport tells the server how a migration goes on one of
// the agent's hosts.
func (c *Client) AgentMigrationReport(ctx context.Context, id string, rep api.MigrationReport) (api.Instance, error) {
	var out api.Instance
	return out, c.do(ctx, http.MethodPost, p("v1", "agents", id, "migrations", rep.Migration), nil, rep, &out)
}

// AgentMigrationTunnel opens one channel of a migration's tunnel: the
// server joins it to the same channel opened by the agent of the
// migration's other host.
func (c *Client) AgentMigrationTunnel(ctx context.Context, id, migration, channel, host string) (io.ReadWriteCloser, error) {
	return c.stream(ctx, p("v1", "agents", id, "migrations", migration, "tunnel", channel)+"?host="+url.QueryEscape(host))
}
