package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/kumocloud/kumo/api"
	"github.com/kumocloud/kumo/client"
)

// linkedHosts is a server in a network namespace of its own and hosts,
// each a namespace linked to the server's by a veth pair: host i (from
// 1) is 198.19.i.2 and reaches the server at 198.19.i.1.
type linkedHosts struct {
	t    *testing.T
	s    *server
	root []string
	c    *client.Client
	port string
	ns   []string
}

// startLinkedHosts makes the namespaces of n hosts and starts the server
// in its own, listening on every address (serverArgs are added).
func startLinkedHosts(t *testing.T, n int, serverArgs ...string) *linkedHosts {
	lh := &linkedHosts{t: t}
	srv := testNamespace(t, "srv")
	for i := 1; i <= n; i++ {
		h := testNamespace(t, fmt.Sprintf("h%d", i))
		lh.ns = append(lh.ns, h)
		dev := fmt.Sprintf("ul%d", i)
		ipIn(t, srv, "link", "add", dev, "type", "veth", "peer", "name", dev, "netns", h)
		ipIn(t, srv, "addr", "add", fmt.Sprintf("198.19.%d.1/24", i), "dev", dev)
		ipIn(t, srv, "link", "set", dev, "up")
		ipIn(t, h, "addr", "add", fmt.Sprintf("198.19.%d.2/24", i), "dev", dev)
		ipIn(t, h, "link", "set", dev, "up")
	}
	lh.port = strings.Split(freeAddr(t), ":")[1]
	lh.s = startServerIn(t, srv, append([]string{"--listen", "0.0.0.0:" + lh.port}, serverArgs...)...)
	lh.root = []string{"KUMO_SOCKET=" + lh.s.socket}
	lh.c = client.Socket(lh.s.socket)
	return lh
}

// startAgent starts the agent of host i (from 1), named name, in its
// namespace with a state dir and a cgroup parent of its own (extra: its
// driver and other flags), and waits until its host is ONLINE. The
// test's end kills it and removes what it ran.
func (lh *linkedHosts) startAgent(i int, name string, extra ...string) *netAgent {
	t := lh.t
	dir := t.TempDir()
	a := &netAgent{t: t, stateDir: dir, args: append([]string{"--net=" + lh.ns[i-1], kumoBin, "agent", "--server", fmt.Sprintf("https://198.19.%d.1:%s", i, lh.port),
		"--join-token", joinToken(t, lh.root), "--state-dir", dir, "--host-name", name, "--vtep", fmt.Sprintf("198.19.%d.2", i),
		"--heartbeat", "1s", "--cgroup-parent", migCgroupParent(name)}, extra...)}
	a.start()
	t.Cleanup(func() { a.kill9(); removeInstances(dir); removeCgroupParent(migCgroupParent(name)) })
	eventually(t, 120*time.Second, name+" online", func() (bool, string) {
		h, err := lh.c.Host(context.Background(), name)
		return err == nil && h.State == api.HostOnline, fmt.Sprint(h, err) + a.out.String()
	})
	return a
}
