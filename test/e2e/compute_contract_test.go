package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kumocloud/kumo/api"
	"github.com/kumocloud/kumo/client"
	"github.com/kumocloud/kumo/internal/agent"
)

// computePath: endpoints TestComputeContract covers (TestContract the
// rest, TestMigrationContract migration's).
func computePath(p string) bool {
	return !migrationPath(p) && !dayTwoPath(p) && !volumeAgentPath(p) && containsAny(p, "/instances", "/server-groups", "/hosts", "/join-tokens", "/agents")
}

// TestComputeContract drives the compute, host and agent endpoints over
// HTTPS - the agent's own calls included - validating every exchange
// against api/openapi.yaml.
func TestComputeContract(t *testing.T) {
	s, v, admin, ctx, check := contractSetup(t, 2*time.Minute)
	jt, err := admin.CreateJoinToken(ctx, api.JoinTokensPost{Description: "contract"})
	check("join token", err)
	_, err = admin.JoinTokens(ctx)
	check("list join tokens", err)

	actx, acancel := context.WithCancel(ctx)
	defer acancel()
	cc, cfg := simAgent(t, ctx, s, v, jt.Token, "contract", 500*time.Millisecond)
	_, err = agent.New(actx, cfg)
	check("agent joins", err)
	cfg.Conn = agent.NewConn(cc)
	ag, err := agent.New(actx, cfg) // a restart: re-attaches with its credential
	check("agent re-attaches", err)
	go ag.Run(actx)

	_, err = admin.Hosts(ctx)
	check("hosts", err)
	_, err = admin.Host(ctx, "sim-0000")
	check("host", err)
	yes := true
	_, err = admin.PatchHost(ctx, "sim-0000", api.HostPatch{Labels: map[string]string{"zone": "a"}, Draining: &yes})
	check("patch host", err)
	_, err = admin.CreateServerGroup(ctx, "default", api.ServerGroupsPost{Name: "web", Policy: "anti-affinity", Soft: true})
	check("server group", err)
	_, err = admin.ServerGroups(ctx, "default")
	check("server groups", err)
	_, err = admin.CreateInstance(client.WithIdempotencyKey(ctx, "i1"), "default", api.InstancesPost{Name: "c1", Type: "container", Flavor: "tiny", Image: "x", ServerGroup: "web", Rank: "-RUNNING_VMS", UserData: "#!/bin/sh\necho hi\n"})
	check("create instance", err)
	wait := func(want api.State) {
		eventually(t, 20*time.Second, "c1 "+string(want), func() (bool, string) {
			in, err := admin.Instance(ctx, "default", "c1")
			return err == nil && in.State == want, string(in.State)
		})
	}
	wait(api.StateRunning)
	// The agent reports a running instance's usage on its own clock:
	// wait for one report (on a fast machine the test could end first).
	eventually(t, 20*time.Second, "the agent sends usage", func() (bool, string) {
		return slices.Contains(v.Checked(), "POST /v1/agents/{id}/usage"), "no usage request yet"
	})
	_, err = admin.ServerGroup(ctx, "default", "web")
	check("server group", err)
	logs, err := admin.InstanceLogs(ctx, "default", "c1", 10)
	check("logs", err)
	if !strings.Contains(logs.Output, "sim: c1") {
		t.Errorf("logs: %q", logs.Output)
	}
	if con, err := admin.InstanceConsole(ctx, "default", "c1", ""); err != nil {
		t.Errorf("console: %v", err)
	} else {
		_, err := io.ReadAll(con)
		con.Close()
		if err == nil || !strings.Contains(err.Error(), "sim driver has no console") {
			t.Errorf("console on the sim driver ended with %v, want its error", err)
		}
	}
	if _, err := admin.InstanceExec(ctx, "default", "c1", api.InstanceExecPost{Command: []string{"true"}}); client.StatusOf(err) != 409 || !strings.Contains(err.Error(), "cannot run commands") {
		t.Errorf("exec on the sim driver: %v", err)
	}
	for _, step := range []struct {
		action api.Action
		want   api.State
	}{{"suspend", "SUSPENDED"}, {"resume", "RUNNING"}, {"terminate", "DONE"}} {
		_, err := admin.InstanceAction(ctx, "default", "c1", step.action)
		check(string(step.action), err)
		wait(step.want)
	}
	if _, err := admin.InstanceAction(ctx, "default", "c1", "start"); client.StatusOf(err) != 409 {
		t.Errorf("start of a DONE instance: %v", err)
	}
	_, err = admin.InstanceHistory(ctx, "default", "c1")
	check("history", err)
	if _, err := admin.Explain(ctx, "default", "c1"); client.StatusOf(err) != 409 {
		t.Errorf("explain of a DONE instance: %v", err)
	}
	_, err = admin.CreateNetwork(ctx, "default", api.NetworksPost{Name: "cnet", CIDR: "10.40.0.0/24"})
	check("network", err)
	_, err = admin.CreateInstance(ctx, "default", api.InstancesPost{Name: "c2", Type: "vm", Flavor: "small", Image: "x", Requirements: "FREE_MEM > 1", Networks: []string{"cnet"}})
	check("create c2", err)
	// A snapshot is an operation: the image is registered at once, the
	// VM's agent is asked for the disk; the sim driver has none to give,
	// so the operation fails with the driver's word and the image is gone
	// again.
	eventually(t, 20*time.Second, "c2 RUNNING", func() (bool, string) {
		in, err := admin.Instance(ctx, "default", "c2")
		return err == nil && in.State == api.StateRunning, string(in.State)
	})
	snapOp, err := admin.SnapshotInstance(ctx, "default", "c2", api.InstanceSnapshotPost{Name: "c2-snap"})
	check("snapshot", err)
	if snapOp.Kind != "instance.snapshot" || snapOp.Resource != "/v1/projects/default/images/c2-snap" {
		t.Errorf("snapshot operation: %+v", snapOp)
	}
	if op, err := admin.WaitOperation(ctx, snapOp.ID); op.Status != api.OpFailed || !strings.Contains(op.Error, "cannot snapshot disks") || err == nil {
		t.Errorf("snapshot on the sim driver: %+v %v", op, err)
	}
	if _, err := admin.Image(ctx, "default", "c2-snap"); client.StatusOf(err) != 404 {
		t.Errorf("a failed snapshot left its image: %v", err)
	}
	if _, err := admin.SnapshotInstance(ctx, "default", "c2", api.InstanceSnapshotPost{Name: "Bad Name"}); client.StatusOf(err) != 400 {
		t.Errorf("a snapshot into a bad image name: %v", err)
	}
	_, err = admin.Explain(ctx, "default", "c2")
	check("explain", err)
	_, err = admin.Instances(ctx, "default", true, client.ListOptions{})
	check("instances --all", err)
	_, err = admin.Instances(ctx, "default", false, client.ListOptions{Limit: 5})
	check("instances", err)
	check("delete server group", admin.DeleteServerGroup(ctx, "default", "web"))
	check("delete join token", admin.DeleteJoinToken(ctx, jt.ID))
	// The agent fetches an image by its hash, with its own credential.
	rootfs := tinyRootfs(t)
	_, err = admin.CreateImage(ctx, "default", api.ImagesPost{Name: "tiny", Kind: api.KindContainerRootfs})
	check("image", err)
	img, err := admin.UploadImage(ctx, "default", "tiny", bytes.NewReader(rootfs), int64(len(rootfs)))
	check("upload", err)
	// Only for an instance on its hosts: an agent gets no other image.
	_, err = admin.CreateInstance(ctx, "default", api.InstancesPost{Name: "c3", Type: "container", Flavor: "tiny", Image: "tiny"})
	check("create c3", err)
	eventually(t, 20*time.Second, "c3 RUNNING", func() (bool, string) {
		in, err := admin.Instance(ctx, "default", "c3")
		return err == nil && in.State == api.StateRunning, string(in.State)
	})
	var cred struct {
		AgentID    string `json:"agent_id"`
		Credential string `json:"credential"`
	}
	b, _ := os.ReadFile(filepath.Join(cc.StateDir, "agent.json"))
	json.Unmarshal(b, &cred)
	agentClient := s.remote(t, cred.Credential)
	agentClient.WrapTransport(v.Transport)
	// What the agent's hosts need of networks: c2's port, its rules.
	nv, err := agentClient.AgentNetworks(ctx, cred.AgentID, "")
	check("agent networks", err)
	if len(nv.Networks) != 1 || len(nv.Networks[0].Ports) != 1 || len(nv.Networks[0].Ports[0].Rules) == 0 {
		t.Errorf("agent networks: %+v", nv)
	}
	rc, err := agentClient.AgentImage(ctx, cred.AgentID, img.SHA256)
	check("agent image", err)
	got, _ := io.ReadAll(rc)
	rc.Close()
	if !bytes.Equal(got, rootfs) {
		t.Error("the agent got other bytes")
	}
	// A host with a live instance is not deleted; an empty one is.
	c3, err := admin.Instance(ctx, "default", "c3")
	check("c3", err)
	if err := admin.DeleteHost(ctx, c3.Host); client.StatusOf(err) != 409 {
		t.Errorf("deleting c3's host: %v", err)
	}
	hs, err := admin.Hosts(ctx)
	check("hosts", err)
	for _, h := range hs {
		if h.Instances == 0 {
			check("delete host", admin.DeleteHost(ctx, h.Name))
			break
		}
	}
	acancel()

	assertContract(t, v, computePath)
}
