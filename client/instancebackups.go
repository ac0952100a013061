package client

import (
	"context"
	"net/http"

	"github.com/kumocloud/kumo/api"
)

// CreateInstanceBackup backs an instance up: its definition and a backup
// of every volume attached to it (creating, then available).
func (c *Client) CreateInstanceBackup(ctx context.Context, project, instance string, req api.InstanceBackupsPost) (api.InstanceBackup, error) {
	var out api.InstanceBackup
	return out, c.do(ctx, http.MethodPost, p("v1", "projects", project, "instances", instance, "backups"), nil, req, &out)
}

// InstanceBackups lists the project's instance backups.
func (c *Client) InstanceBackups(ctx context.Context, project string) ([]api.InstanceBackup, error) {
	var out api.List[api.InstanceBackup]
	return out.Items, c.do(ctx, http.MethodGet, p("v1", "projects", project, "instance-backups"), nil, nil, &out)
}

// InstanceBackup shows an instance backup.
func (c *Client) InstanceBackup(ctx context.Context, project, name string) (api.InstanceBackup, error) {
	var out api.InstanceBackup
	return out, c.do(ctx, http.MethodGet, p("v1", "projects", project, "instance-backups", name), nil, nil, &out)
}

// DeleteInstanceBackup deletes an instance backup and its volume backups.
func (c *Client) DeleteInstanceBackup(ctx context.Context, project, name string) error {
	return c.do(ctx, http.MethodDelete, p("v1", "projects", project, "instance-backups", name), nil, nil, nil)
}

// RestoreInstance makes a new instance from an instance backup (name ""
// keeps the backed-up instance's name).
func (c *Client) RestoreInstance(ctx context.Context, project, backup, name string) (api.Instance, error) {
	var out api.Instance
	return out, c.do(ctx, http.MethodPost, p("v1", "projects", project, "instance-backups", backup, "restore"), nil, api.InstanceRestore{Name: name}, &out)
}
