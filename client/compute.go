package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/kumocloud/kumo/api"
)

// Instances lists a project's instances (all=true: DONE ones too).
func (c *Client) Instances(ctx context.Context, project string, all bool, o ListOptions) ([]api.Instance, error) {
	path := p("v1", "projects", project, "instances")
	if all {
		o.extra = url.Values{"all": {"true"}}
	}
	return listAll[api.Instance](ctx, c, path, o)
}

// CreateInstance creates an instance (it starts PENDING).
func (c *Client) CreateInstance(ctx context.Context, project string, req api.InstancesPost) (api.Instance, error) {
	var out api.Instance
	return out, c.do(ctx, http.MethodPost, p("v1", "projects", project, "instances"), nil, req, &out)
}

// Instance shows an instance.
func (c *Client) Instance(ctx context.Context, project, name string) (api.Instance, error) {
	var out api.Instance
	return out, c.do(ctx, http.MethodGet, p("v1", "projects", project, "instances", name), nil, nil, &out)
}

// InstanceAction asks for a lifecycle action.
func (c *Client) InstanceAction(ctx context.Context, project, name string, action api.Action) (api.Instance, error) {
	var out api.Instance
	return out, c.do(ctx, http.MethodPost, p("v1", "projects", project, "instances", name, "actions"), nil, api.InstanceActionPost{Action: action}, &out)
}

// InstanceHistory returns an instance's state transitions.
func (c *Client) InstanceHistory(ctx context.Context, project, name string) ([]api.HistoryRecord, error) {
	var out api.List[api.HistoryRecord]
	return out.Items, c.do(ctx, http.MethodGet, p("v1", "projects", project, "instances", name, "history"), nil, nil, &out)
}

// Explain says how every host judges an instance.
func (c *Client) Explain(ctx context.Context, project, name string) (api.Explain, error) {
	var out api.Explain
	return out, c.do(ctx, http.MethodGet, p("v1", "projects", project, "instances", name, "explain"), nil, nil, &out)
}

// ServerGroups lists a project's server groups.
func (c *Client) ServerGroups(ctx context.Context, project string) ([]api.ServerGroup, error) {
	var out api.List[api.ServerGroup]
	return out.Items, c.do(ctx, http.MethodGet, p("v1", "projects", project, "server-groups"), nil, nil, &out)
}

// CreateServerGroup creates a server group.
func (c *Client) CreateServerGroup(ctx context.Context, project string, req api.ServerGroupsPost) (api.ServerGroup, error) {
	var out api.ServerGroup
	return out, c.do(ctx, http.MethodPost, p("v1", "projects", project, "server-groups"), nil, req, &out)
}

// ServerGroup shows a server group.
func (c *Client) ServerGroup(ctx context.Context, project, name string) (api.ServerGroup, error) {
	var out api.ServerGroup
	return out, c.do(ctx, http.MethodGet, p("v1", "projects", project, "server-groups", name), nil, nil, &out)
}

// DeleteServerGroup deletes an empty server group.
func (c *Client) DeleteServerGroup(ctx context.Context, project, name string) error {
	return c.do(ctx, http.MethodDelete, p("v1", "projects", project, "server-groups", name), nil, nil, nil)
}

// Hosts lists hosts (cloud admin).
func (c *Client) Hosts(ctx context.Context) ([]api.Host, error) {
	return listAll[api.Host](ctx, c, "/v1/hosts", ListOptions{})
}

// Host shows a host.
func (c *Client) Host(ctx context.Context, name string) (api.Host, error) {
	var out api.Host
	return out, c.do(ctx, http.MethodGet, p("v1", "hosts", name), nil, nil, &out)
}

// PatchHost changes a host's admin settings.
func (c *Client) PatchHost(ctx context.Context, name string, req api.HostPatch) (api.Host, error) {
	var out api.Host
	return out, c.do(ctx, http.MethodPatch, p("v1", "hosts", name), nil, req, &out)
}

// DeleteHost removes a host holding no live instances (cloud admin); its
// agent can no longer act for it.
func (c *Client) DeleteHost(ctx context.Context, name string) error {
	return c.do(ctx, http.MethodDelete, p("v1", "hosts", name), nil, nil, nil)
}

// CreateJoinToken makes a join token for agents.
func (c *Client) CreateJoinToken(ctx context.Context, req api.JoinTokensPost) (api.JoinToken, error) {
	var out api.JoinToken
	return out, c.do(ctx, http.MethodPost, "/v1/join-tokens", nil, req, &out)
}

// JoinTokens lists join tokens.
func (c *Client) JoinTokens(ctx context.Context) ([]api.JoinToken, error) {
	var out api.List[api.JoinToken]
	return out.Items, c.do(ctx, http.MethodGet, "/v1/join-tokens", nil, nil, &out)
}

// DeleteJoinToken revokes a join token.
func (c *Client) DeleteJoinToken(ctx context.Context, id string) error {
	return c.do(ctx, http.MethodDelete, p("v1", "join-tokens", id), nil, nil, nil)
}

// JoinAgent registers an agent with a join token.
func (c *Client) JoinAgent(ctx context.Context, req api.AgentsPost) (api.Agent, error) {
	var out api.Agent
	return out, c.do(ctx, http.MethodPost, "/v1/agents", nil, req, &out)
}

// PutAgentHosts re-registers an agent's hosts.
func (c *Client) PutAgentHosts(ctx context.Context, id string, hosts []api.HostSpec) (api.Agent, error) {
	var out api.Agent
	return out, c.do(ctx, http.MethodPut, p("v1", "agents", id, "hosts"), nil, api.AgentHostsPut{Hosts: hosts}, &out)
}

// AgentHeartbeat tells the server the agent's hosts are alive.
func (c *Client) AgentHeartbeat(ctx context.Context, id string, hb api.Heartbeat) error {
	return c.do(ctx, http.MethodPost, p("v1", "agents", id, "heartbeat"), nil, hb, nil)
}

// AgentUsage sends what instances on the agent's hosts use (at most
// api.MaxUsageBatch a call).
func (c *Client) AgentUsage(ctx context.Context, id string, us []api.InstanceUsage) error {
	return c.do(ctx, http.MethodPost, p("v1", "agents", id, "usage"), nil, api.AgentUsage{Usage: us}, nil)
}

// Assignments long-polls the instances on the agent's hosts changed after
// revision since.
func (c *Client) Assignments(ctx context.Context, id string, since int64, wait time.Duration) (api.Assignments, error) {
	var out api.Assignments
	q := url.Values{"since": {strconv.FormatInt(since, 10)}, "wait": {strconv.FormatFloat(wait.Seconds(), 'f', 1, 64)}}
	return out, c.do(ctx, http.MethodGet, p("v1", "agents", id, "assignments"), q, nil, &out)
}

// AgentReport sends instance state changes.
func (c *Client) AgentReport(ctx context.Context, id string, reps []api.InstanceReport) (api.AgentReportResult, error) {
	var out api.AgentReportResult
	return out, c.do(ctx, http.MethodPost, p("v1", "agents", id, "reports"), nil, api.AgentReport{Instances: reps}, &out)
}

// Usage reports usage and cost of a project ("" = every project, cloud
// admin) over [from, to).
func (c *Client) Usage(ctx context.Context, project, from, to, groupBy string) (api.UsageReport, error) {
	var out api.UsageReport
	path := "/v1/usage"
	if project != "" {
		path = p("v1", "projects", project, "usage")
	}
	q := url.Values{"from": {from}, "to": {to}, "group_by": {groupBy}}
	return out, c.do(ctx, http.MethodGet, path, q, nil, &out)
}

// Prices returns prices, their history and the charging rules.
func (c *Client) Prices(ctx context.Context) (api.Prices, error) {
	var out api.Prices
	return out, c.do(ctx, http.MethodGet, "/v1/prices", nil, nil, &out)
}

// SetFlavorPrice changes a flavor's price.
func (c *Client) SetFlavorPrice(ctx context.Context, flavor string, put api.PricePut) (api.Flavor, error) {
	var out api.Flavor
	return out, c.do(ctx, http.MethodPut, p("v1", "flavors", flavor, "price"), nil, put, &out)
}

// SetStoragePrice changes the storage price.
func (c *Client) SetStoragePrice(ctx context.Context, put api.PricePut) (api.Prices, error) {
	var out api.Prices
	return out, c.do(ctx, http.MethodPut, "/v1/prices/storage", nil, put, &out)
}

// SetKindPrice changes the price per GiB-hour of volumes,
// volume-snapshots or volume-backups (kind).
func (c *Client) SetKindPrice(ctx context.Context, kind string, put api.PricePut) (api.Prices, error) {
	var out api.Prices
	return out, c.do(ctx, http.MethodPut, "/v1/prices/storage/"+url.PathEscape(kind), nil, put, &out)
}

// SetRules changes the charging rules.
func (c *Client) SetRules(ctx context.Context, put api.RulesPut) (api.Prices, error) {
	var out api.Prices
	return out, c.do(ctx, http.MethodPut, "/v1/prices/rules", nil, put, &out)
}

// Images lists the images a project can use.
func (c *Client) Images(ctx context.Context, project string) ([]api.Image, error) {
	var out api.List[api.Image]
	return out.Items, c.do(ctx, http.MethodGet, p("v1", "projects", project, "images"), nil, nil, &out)
}

// CreateImage registers an image.
func (c *Client) CreateImage(ctx context.Context, project string, req api.ImagesPost) (api.Image, error) {
	var out api.Image
	return out, c.do(ctx, http.MethodPost, p("v1", "projects", project, "images"), nil, req, &out)
}

// Image shows an image.
func (c *Client) Image(ctx context.Context, project, name string) (api.Image, error) {
	var out api.Image
	return out, c.do(ctx, http.MethodGet, p("v1", "projects", project, "images", name), nil, nil, &out)
}

// PatchImage changes an image's visibility or sharing.
func (c *Client) PatchImage(ctx context.Context, project, name string, req api.ImagePatch) (api.Image, error) {
	var out api.Image
	return out, c.do(ctx, http.MethodPatch, p("v1", "projects", project, "images", name), nil, req, &out)
}

// DeleteImage deletes an image (force: even in use; cloud admin).
func (c *Client) DeleteImage(ctx context.Context, project, name string, force bool) error {
	var q url.Values
	if force {
		q = url.Values{"force": {"true"}}
	}
	return c.do(ctx, http.MethodDelete, p("v1", "projects", project, "images", name), q, nil, nil)
}

// ImageShares lists the images other projects offer project, each
// pending, accepted or rejected.
func (c *Client) ImageShares(ctx context.Context, project string) ([]api.ImageShare, error) {
	var out api.List[api.ImageShare]
	return out.Items, c.do(ctx, http.MethodGet, p("v1", "projects", project, "image-shares"), nil, nil, &out)
}

// AnswerImageShare accepts or rejects (api.ShareAccepted, api.ShareRejected)
// the image owner offers project.
func (c *Client) AnswerImageShare(ctx context.Context, project, owner, name, status string) (api.ImageShare, error) {
	var out api.ImageShare
	return out, c.do(ctx, http.MethodPut, p("v1", "projects", project, "image-shares", owner, name), nil, api.ImageSharePut{Status: status}, &out)
}

// UploadImage streams an image's bytes.
func (c *Client) UploadImage(ctx context.Context, project, name string, body io.Reader, size int64) (api.Image, error) {
	var out api.Image
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, c.base+p("v1", "projects", project, "images", name, "file"), body)
	if err != nil {
		return out, err
	}
	req.ContentLength = size
	req.Header.Set("Content-Type", "application/octet-stream")
	resp, err := c.raw(req)
	if err != nil {
		return out, err
	}
	defer resp.Body.Close()
	return out, json.NewDecoder(resp.Body).Decode(&out)
}

// DownloadImage streams an image's bytes; the caller closes the reader.
func (c *Client) DownloadImage(ctx context.Context, project, name string) (io.ReadCloser, error) {
	resp, err := c.send(ctx, http.MethodGet, p("v1", "projects", project, "images", name, "file"), nil, nil, "application/octet-stream")
	if err != nil {
		return nil, err
	}
	return resp.Body, nil
}

// AgentImage fetches image bytes by sha256 (agents).
func (c *Client) AgentImage(ctx context.Context, agentID, sum string) (io.ReadCloser, error) {
	resp, err := c.send(ctx, http.MethodGet, p("v1", "agents", agentID, "images", sum), nil, nil, "application/octet-stream")
	if err != nil {
		return nil, err
	}
	return resp.Body, nil
}

// SnapshotInstance starts copying a VM's disk into a new image, req.Name,
// and returns the operation doing it (202): wait for it (WaitOperation,
// FollowOperation), then the image is active. What can be refused at once
// (a name taken, a full quota, an instance without a disk to copy) is
// refused here.
func (c *Client) SnapshotInstance(ctx context.Context, project, name string, req api.InstanceSnapshotPost) (api.Operation, error) {
	var out api.Operation
	return out, c.do(ctx, http.MethodPost, p("v1", "projects", project, "instances", name, "snapshot"), nil, req, &out)
}

// InstanceExec runs a command inside a RUNNING instance and returns its
// exit code and the first MiB of its output (Truncated: there was more).
func (c *Client) InstanceExec(ctx context.Context, project, name string, req api.InstanceExecPost) (api.InstanceExecResult, error) {
	var out api.InstanceExecResult
	return out, c.do(ctx, http.MethodPost, p("v1", "projects", project, "instances", name, "exec"), nil, req, &out)
}

// InstanceExecStream runs a command inside a RUNNING instance, writing
// its output to out as it comes, however much there is, and returns its
// exit code.
func (c *Client) InstanceExecStream(ctx context.Context, project, name string, req api.InstanceExecPost, out io.Writer) (int, error) {
	path := p("v1", "projects", project, "instances", name, "exec")
	resp, err := c.send(ctx, http.MethodPost, path, url.Values{"stream": {"true"}}, req, "application/octet-stream")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if _, err := io.Copy(out, resp.Body); err != nil {
		return 0, fmt.Errorf("exec: the output broke off: %w", err)
	}
	if msg := resp.Trailer.Get("Kumo-Exec-Error"); msg != "" {
		return 0, fmt.Errorf("exec: %s", msg)
	}
	code, err := strconv.Atoi(resp.Trailer.Get("Kumo-Exit-Code"))
	if err != nil {
		return 0, errors.New("exec: the answer ended without the command's exit code")
	}
	return code, nil
}

// InstanceLogs returns the end of an instance's console log.
func (c *Client) InstanceLogs(ctx context.Context, project, name string, tail int) (api.InstanceLogs, error) {
	var out api.InstanceLogs
	return out, c.do(ctx, http.MethodGet, p("v1", "projects", project, "instances", name, "logs"), url.Values{"tail": {strconv.Itoa(tail)}}, nil, &out)
}

// AgentSessions long-polls the exec and logs requests for an agent.
func (c *Client) AgentSessions(ctx context.Context, id string, wait time.Duration) ([]api.Session, error) {
	var out api.List[api.Session]
	q := url.Values{"wait": {strconv.FormatFloat(wait.Seconds(), 'f', 1, 64)}}
	return out.Items, c.do(ctx, http.MethodGet, p("v1", "agents", id, "sessions"), q, nil, &out)
}

// AgentSessionResult answers a session.
func (c *Client) AgentSessionResult(ctx context.Context, id, sid string, res api.SessionResult) error {
	return c.do(ctx, http.MethodPost, p("v1", "agents", id, "sessions", sid), nil, res, nil)
}

// stream opens an upgraded byte stream (the agents' exec and snapshot
// sessions).
func (c *Client) stream(ctx context.Context, path string) (io.ReadWriteCloser, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+path, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", "kumo-stream")
	resp, err := c.raw(req)
	if err != nil {
		return nil, err
	}
	rwc, ok := resp.Body.(io.ReadWriteCloser)
	if resp.StatusCode != http.StatusSwitchingProtocols || !ok {
		resp.Body.Close()
		return nil, &api.ErrorBody{Code: "unavailable", Message: "the server did not switch to a console stream (" + resp.Status + ")", Status: resp.StatusCode}
	}
	return rwc, nil
}

// AgentStream is an agent's end of an exec or snapshot session.
func (c *Client) AgentStream(ctx context.Context, id, sid string) (io.ReadWriteCloser, error) {
	return c.stream(ctx, p("v1", "agents", id, "sessions", sid, "stream"))
}
