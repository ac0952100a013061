package e2e

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kumocloud/kumo/api"
	"github.com/kumocloud/kumo/client"
)

// TestLocalAgentIdentity: the all-in-one server's own agent keeps its
// hosts across restarts (same agent, by its kept credential). With the
// credential gone it takes nothing over: the server keeps serving and
// says what to do, and once a cloud admin deletes the hosts, the agent
// joins again as a new agent.
func TestLocalAgentIdentity(t *testing.T) {
	s := startServer(t, "--drivers", "sim", "--sim-hosts", "2")
	root := []string{"KUMO_SOCKET=" + s.socket}
	c := client.Socket(s.socket)
	ctx := context.Background()
	owners := func() (map[string]string, string) {
		hs, err := c.Hosts(ctx)
		if err != nil {
			return nil, err.Error()
		}
		out := map[string]string{}
		desc := ""
		for _, h := range hs {
			out[h.Name] = h.Agent
			desc += h.Name + "=" + h.Agent + "/" + string(h.State) + " "
		}
		return out, desc
	}
	first, desc := owners()
	if len(first) != 2 || first["sim-0000"] == "" || first["sim-0000"] != first["sim-0001"] {
		t.Fatalf("hosts after the first start: %s", desc)
	}
	agentID := first["sim-0000"]

	s.stop()
	s.start()
	if again, desc := owners(); again["sim-0000"] != agentID || again["sim-0001"] != agentID {
		t.Fatalf("a restart changed the hosts' agent: %s", desc)
	}

	if err := os.Remove(filepath.Join(s.dir, "agent", "agent.json")); err != nil {
		t.Fatal(err)
	}
	s.stop()
	s.agentCannotJoin = true
	s.start()
	eventually(t, 30*time.Second, "the server to say what to do", func() (bool, string) {
		out := s.out.String()
		return strings.Contains(out, "kumo host delete") && strings.Contains(out, "agent.json"), out
	})
	if now, desc := owners(); now["sim-0000"] != agentID || now["sim-0001"] != agentID {
		t.Fatalf("an agent without its credential took the hosts: %s", desc)
	}
	// Its hosts are still the old agent's, silent: an instance placed
	// there holds the host until it is terminated (UNKNOWN once the host
	// is OFFLINE, which terminates at once).
	if r := kumo(t, root, "", "instance", "create", "w1", "--image", "x", "--flavor", "tiny"); r.code != 0 {
		t.Fatalf("the server stopped serving: %s", r.err)
	}
	var in api.Instance
	eventually(t, 30*time.Second, "w1 placed", func() (bool, string) {
		in, _ = c.Instance(ctx, "default", "w1")
		return in.Host != "", string(in.State)
	})
	if r := kumo(t, root, "", "host", "delete", in.Host); r.code != 1 || !strings.Contains(r.err, "default/w1") || !strings.Contains(r.err, "terminate them first") {
		t.Fatalf("deleting a host with an instance: exit %d %s", r.code, r.err)
	}
	eventually(t, 60*time.Second, "w1 UNKNOWN", func() (bool, string) {
		in, _ = c.Instance(ctx, "default", "w1")
		return in.State == api.StateUnknown, string(in.State)
	})
	must(t, root, "", "instance", "terminate", "w1")
	must(t, root, "", "host", "delete", "sim-0000", "sim-0001")
	eventually(t, 60*time.Second, "the local agent to join again", func() (bool, string) {
		now, desc := owners()
		ok := len(now) == 2 && now["sim-0000"] != "" && now["sim-0000"] != agentID && now["sim-0000"] == now["sim-0001"]
		return ok, desc
	})
	if hs, _ := c.Hosts(ctx); hs[0].State != api.HostOnline {
		t.Errorf("host after the new join: %+v", hs[0])
	}
}
