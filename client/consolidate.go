package client

import (
	"context"
	"net/http"

	"github.com/kumocloud/kumo/api"
)

// Consolidation shows the plan that would empty the least-used hosts
// (cloud admin; nothing moves).
func (c *Client) Consolidation(ctx context.Context) (api.Consolidation, error) {
	var out api.Consolidation
	return out, c.do(ctx, http.MethodGet, p("v1", "consolidation"), nil, nil, &out)
}

// Consolidate applies a fresh consolidation plan by migration (cloud
// admin); a server without migration answers 409.
func (c *Client) Consolidate(ctx context.Context) (api.Consolidation, error) {
	var out api.Consolidation
	return out, c.do(ctx, http.MethodPost, p("v1", "consolidation"), nil, nil, &out)
}
