package e2e

import (
	"strings"
	"testing"
)

// TestNetworkCLI: networks and ports through the CLI - addresses
// allocated from the subnet with their derived MACs, a full subnet and
// bad input refused with the reason, nothing deleted that is in use.
// (The datapath is not built yet: ports are allocated, not wired.)
func TestNetworkCLI(t *testing.T) {
	s := startServer(t)
	root := []string{"KUMO_SOCKET=" + s.socket}
	must(t, root, "", "network", "create", "app", "--subnet", "10.20.0.0/29", "--gateway", "10.20.0.1", "--dns", "10.20.0.1")
	if r := kumo(t, root, "", "network", "create", "bad", "--subnet", "10.20.0.5/24"); r.code != 1 || !strings.Contains(r.err, "did you mean 10.20.0.0/24") {
		t.Errorf("a subnet with host bits: exit %d %s", r.code, r.err)
	}
	for _, n := range []string{"a1", "a2", "a3", "a4", "a5"} {
		must(t, root, "", "port", "create", n, "--network", "app")
	}
	if r := kumo(t, root, "", "port", "create", "a6", "--network", "app"); r.code != 1 || !strings.Contains(r.err, "no free address") {
		t.Errorf("a full subnet: exit %d %s", r.code, r.err)
	}
	out := must(t, root, "", "port", "list", "--network", "app")
	if got := len(lines(out)); got != 6 || !strings.Contains(out, "02:00:0a:14:00:0") || strings.Contains(out, "10.20.0.1 ") {
		t.Errorf("port list (%d lines):\n%s", got, out)
	}
	if r := kumo(t, root, "", "network", "delete", "app"); r.code != 1 || !strings.Contains(r.err, "5 ports") {
		t.Errorf("deleting a network with ports: exit %d %s", r.code, r.err)
	}
	if out := must(t, root, "", "project", "show", "default", "-o", "json"); !strings.Contains(out, `"ports": 5`) {
		t.Errorf("the quota does not count the ports:\n%s", out)
	}
	for _, n := range []string{"a1", "a2", "a3", "a4", "a5"} {
		must(t, root, "", "port", "delete", n)
	}
	must(t, root, "", "network", "delete", "app")
}
