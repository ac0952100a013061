package client

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/kumocloud/kumo/api"
)

// ListOptions pages and filters a list. Limit 0 gets every page (the
// server answers a page at a time: 500 items unless asked).
type ListOptions struct {
	Limit  int
	After  string
	Labels map[string]string
	extra  url.Values // the list's own parameters
}

func (o ListOptions) query() url.Values {
	q := url.Values{}
	for k, v := range o.extra {
		q[k] = v
	}
	if o.Limit > 0 {
		q.Set("limit", strconv.Itoa(o.Limit))
	}
	if o.After != "" {
		q.Set("after", o.After)
	}
	for k, v := range o.Labels {
		q.Add("label", k+"="+v)
	}
	return q
}

func p(parts ...string) string {
	for i, s := range parts {
		parts[i] = url.PathEscape(s)
	}
	return "/" + strings.Join(parts, "/")
}

// listAll follows Next links until the list ends.
func listAll[T any](ctx context.Context, c *Client, path string, o ListOptions) ([]T, error) {
	var out []T
	for {
		var page api.List[T]
		if err := c.do(ctx, http.MethodGet, path, o.query(), nil, &page); err != nil {
			return nil, err
		}
		out = append(out, page.Items...)
		if page.Next == "" || o.Limit > 0 {
			if out == nil {
				out = []T{}
			}
			return out, nil
		}
		o.After = page.Next
	}
}

// ServerInfo returns what the server says of itself.
func (c *Client) ServerInfo(ctx context.Context) (api.ServerInfo, error) {
	var out api.ServerInfo
	return out, c.do(ctx, http.MethodGet, "/v1", nil, nil, &out)
}

// Metrics returns the server's Prometheus metrics text.
func (c *Client) Metrics(ctx context.Context) (string, error) {
	resp, err := c.send(ctx, http.MethodGet, "/metrics", nil, nil, "text/plain")
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

// Login trades a user name and password for a token.
func (c *Client) Login(ctx context.Context, req api.TokensPost) (api.Token, error) {
	var out api.Token
	return out, c.do(ctx, http.MethodPost, "/v1/tokens", nil, req, &out)
}

// Tokens lists the caller's tokens (all=true: everyone's, cloud admin).
func (c *Client) Tokens(ctx context.Context, all bool) ([]api.Token, error) {
	q := url.Values{}
	if all {
		q.Set("all", "true")
	}
	var out api.List[api.Token]
	return out.Items, c.do(ctx, http.MethodGet, "/v1/tokens", q, nil, &out)
}

// Token shows one of the caller's tokens.
func (c *Client) Token(ctx context.Context, id string) (api.Token, error) {
	var out api.Token
	return out, c.do(ctx, http.MethodGet, p("v1", "tokens", id), nil, nil, &out)
}

// RevokeToken revokes a token.
func (c *Client) RevokeToken(ctx context.Context, id string) (api.Token, error) {
	var out api.Token
	return out, c.do(ctx, http.MethodDelete, p("v1", "tokens", id), nil, nil, &out)
}

// Whoami says who the server thinks the caller is.
func (c *Client) Whoami(ctx context.Context) (api.Whoami, error) {
	var out api.Whoami
	return out, c.do(ctx, http.MethodGet, "/v1/whoami", nil, nil, &out)
}

// Projects lists projects (all pages unless o.Limit is set).
func (c *Client) Projects(ctx context.Context, o ListOptions) ([]api.Project, error) {
	return listAll[api.Project](ctx, c, "/v1/projects", o)
}

// CreateProject creates a project.
func (c *Client) CreateProject(ctx context.Context, req api.ProjectsPost) (api.Project, error) {
	var out api.Project
	return out, c.do(ctx, http.MethodPost, "/v1/projects", nil, req, &out)
}

// Project shows a project.
func (c *Client) Project(ctx context.Context, name string) (api.Project, error) {
	var out api.Project
	return out, c.do(ctx, http.MethodGet, p("v1", "projects", name), nil, nil, &out)
}

// PatchProject changes a project.
func (c *Client) PatchProject(ctx context.Context, name string, req api.ProjectPatch) (api.Project, error) {
	var out api.Project
	return out, c.do(ctx, http.MethodPatch, p("v1", "projects", name), nil, req, &out)
}

// DeleteProject starts deleting a project and returns the operation.
func (c *Client) DeleteProject(ctx context.Context, name string) (api.Operation, error) {
	var out api.Operation
	return out, c.do(ctx, http.MethodDelete, p("v1", "projects", name), nil, nil, &out)
}

// SetQuota changes quota limits.
func (c *Client) SetQuota(ctx context.Context, project string, quota map[string]int64) (api.Project, error) {
	var out api.Project
	return out, c.do(ctx, http.MethodPut, p("v1", "projects", project, "quota"), nil, api.QuotaPut{Quota: quota}, &out)
}

// Members lists a project's members.
func (c *Client) Members(ctx context.Context, project string) ([]api.Member, error) {
	var out api.List[api.Member]
	return out.Items, c.do(ctx, http.MethodGet, p("v1", "projects", project, "members"), nil, nil, &out)
}

// SetMember grants user role in project.
func (c *Client) SetMember(ctx context.Context, project, user, role string) (api.Member, error) {
	var out api.Member
	return out, c.do(ctx, http.MethodPut, p("v1", "projects", project, "members", user), nil, api.MemberPut{Role: role}, &out)
}

// RemoveMember takes user's role in project away.
func (c *Client) RemoveMember(ctx context.Context, project, user string) error {
	return c.do(ctx, http.MethodDelete, p("v1", "projects", project, "members", user), nil, nil, nil)
}

// Operations lists operations of a project ("" = all the caller can see).
func (c *Client) Operations(ctx context.Context, project string, o ListOptions) ([]api.Operation, error) {
	path := "/v1/operations"
	if project != "" {
		path = p("v1", "projects", project, "operations")
	}
	return listAll[api.Operation](ctx, c, path, o)
}

// Operation shows an operation.
func (c *Client) Operation(ctx context.Context, id string) (api.Operation, error) {
	var out api.Operation
	return out, c.do(ctx, http.MethodGet, p("v1", "operations", id), nil, nil, &out)
}

// WaitOperation waits (server side, in rounds of up to a minute) until the
// operation ends or ctx does, and returns it. A failed operation is
// returned as an error too.
func (c *Client) WaitOperation(ctx context.Context, id string) (api.Operation, error) {
	return c.FollowOperation(ctx, id, time.Minute, nil)
}

// FollowOperation is WaitOperation in rounds of every (the server answers
// at the end of a round or of the operation), calling seen, if not nil,
// with the operation as each round finds it: its progress.
func (c *Client) FollowOperation(ctx context.Context, id string, every time.Duration, seen func(api.Operation)) (api.Operation, error) {
	for {
		var op api.Operation
		round := every
		if dl, ok := ctx.Deadline(); ok {
			round = min(round, max(0, time.Until(dl)))
		}
		q := url.Values{"wait": {strconv.FormatFloat(round.Seconds(), 'f', 1, 64)}}
		if err := c.do(ctx, http.MethodGet, p("v1", "operations", id), q, nil, &op); err != nil {
			return op, err
		}
		if seen != nil {
			seen(op)
		}
		if op.Done() {
			if op.Status == api.OpFailed {
				return op, &api.ErrorBody{Code: "operation_failed", Message: op.Description + " failed: " + op.Error}
			}
			return op, nil
		}
		if err := ctx.Err(); err != nil {
			return op, err
		}
	}
}

// Users lists users.
func (c *Client) Users(ctx context.Context, o ListOptions) ([]api.User, error) {
	return listAll[api.User](ctx, c, "/v1/users", o)
}

// CreateUser creates a user.
func (c *Client) CreateUser(ctx context.Context, req api.UsersPost) (api.User, error) {
	var out api.User
	return out, c.do(ctx, http.MethodPost, "/v1/users", nil, req, &out)
}

// User shows a user.
func (c *Client) User(ctx context.Context, name string) (api.User, error) {
	var out api.User
	return out, c.do(ctx, http.MethodGet, p("v1", "users", name), nil, nil, &out)
}

// DeleteUser deletes a user.
func (c *Client) DeleteUser(ctx context.Context, name string) error {
	return c.do(ctx, http.MethodDelete, p("v1", "users", name), nil, nil, nil)
}

// SetPassword sets another user's password as a cloud admin (no current
// password needed). It ends all of that user's tokens.
func (c *Client) SetPassword(ctx context.Context, name, password string) error {
	return c.ChangePassword(ctx, name, "", password)
}

// ChangePassword changes a user's password giving the current one (needed
// for your own). It ends the user's other tokens; the caller's token, if
// it is the user's own, stays valid.
func (c *Client) ChangePassword(ctx context.Context, name, current, password string) error {
	return c.do(ctx, http.MethodPut, p("v1", "users", name, "password"), nil, api.UserPasswordPut{Password: password, CurrentPassword: current}, nil)
}

// Flavors lists flavors.
func (c *Client) Flavors(ctx context.Context, o ListOptions) ([]api.Flavor, error) {
	return listAll[api.Flavor](ctx, c, "/v1/flavors", o)
}

// CreateFlavor creates a flavor.
func (c *Client) CreateFlavor(ctx context.Context, req api.FlavorsPost) (api.Flavor, error) {
	var out api.Flavor
	return out, c.do(ctx, http.MethodPost, "/v1/flavors", nil, req, &out)
}

// Flavor shows a flavor.
func (c *Client) Flavor(ctx context.Context, name string) (api.Flavor, error) {
	var out api.Flavor
	return out, c.do(ctx, http.MethodGet, p("v1", "flavors", name), nil, nil, &out)
}

// DeleteFlavor deletes a flavor.
func (c *Client) DeleteFlavor(ctx context.Context, name string) error {
	return c.do(ctx, http.MethodDelete, p("v1", "flavors", name), nil, nil, nil)
}

// EventQuery selects events.
type EventQuery struct {
	Project string
	Types   []string
	Since   int64
	// NoFollow returns the kept events and ends instead of streaming.
	NoFollow bool
}

// Events streams events to fn until ctx ends, the stream ends, or fn
// returns an error.
func (c *Client) Events(ctx context.Context, eq EventQuery, fn func(api.Event) error) error {
	q := url.Values{}
	if eq.Project != "" {
		q.Set("project", eq.Project)
	}
	if len(eq.Types) > 0 {
		q.Set("type", strings.Join(eq.Types, ","))
	}
	if eq.Since > 0 {
		q.Set("since", strconv.FormatInt(eq.Since, 10))
	}
	if eq.NoFollow {
		q.Set("follow", "false")
	}
	resp, err := c.send(ctx, http.MethodGet, "/v1/events", q, nil, "text/event-stream")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64*1024), 4<<20)
	var event, data string
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "":
			if data != "" {
				if event == "error" {
					var e api.ErrorResponse
					json.Unmarshal([]byte(data), &e)
					return &e.Error
				}
				var ev api.Event
				if err := json.Unmarshal([]byte(data), &ev); err == nil {
					if err := fn(ev); err != nil {
						return err
					}
				}
			}
			event, data = "", ""
		case strings.HasPrefix(line, "event:"):
			event = strings.TrimSpace(line[6:])
		case strings.HasPrefix(line, "data:"):
			data += strings.TrimSpace(line[5:])
		}
	}
	if ctx.Err() != nil {
		return nil
	}
	return sc.Err()
}
