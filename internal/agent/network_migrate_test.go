package agent

import (
	"context"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/kumocloud/kumo/api"
	"github.com/kumocloud/kumo/internal/network/datapath"
	"github.com/vishvananda/netns"
)

// emptyView is the server's view of a host with no ports of its own: a
// migration's target before the move commits (the instance is still on
// its source).
type emptyView struct{}

func (emptyView) Networks(context.Context, string, string, time.Duration) (api.AgentNetworks, error) {
	return api.AgentNetworks{Networks: []api.AgentNetwork{}}, nil
}

// TestMigrationTargetKeepsItsPorts: a live migration's target wires the
// VM's TAP before its QEMU opens it, while the server's view still shows
// the VM on its source. The host's network rounds must leave that TAP
// alone for as long as the transfer lasts (deleting it left the QEMU on
// a detached descriptor: no network after the move, and a main loop
// spinning on EBADFD that starved the next migration from there). An
// instance that is not migrating and that two views in a row lack still
// loses its ports.
func TestMigrationTargetKeepsItsPorts(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("the datapath needs root (namespaces, bridges); CI runs as root")
	}
	dir, err := os.MkdirTemp("/run", "kumo-agent-net-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	ns := filepath.Join(dir, "host")
	if err := datapath.NewNamespace(ns); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { datapath.RemoveNamespace(ns) })
	// The underlay: a device holding the host's VTEP address.
	for _, args := range [][]string{{"link", "add", "ul0", "type", "veth", "peer", "name", "ul1"}, {"addr", "add", "198.18.9.1/24", "dev", "ul0"}, {"link", "set", "ul0", "up"}, {"link", "set", "ul1", "up"}, {"link", "set", "lo", "up"}} {
		if out, err := exec.Command("nsenter", append([]string{"--net=" + ns, "ip"}, args...)...).CombinedOutput(); err != nil {
			t.Fatalf("ip %v: %v %s", args, err, out)
		}
	}
	dp, err := datapath.Open(datapath.Config{NetNS: ns, VTEP: netip.MustParseAddr("198.18.9.1"), NSDir: filepath.Join(dir, "ns"),
		ResolvConf: filepath.Join(dir, "resolv.conf")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		dp.RemoveNetwork(4242)
		dp.Close()
		es, _ := os.ReadDir(filepath.Join(dir, "ns"))
		for _, e := range es {
			datapath.RemoveNamespace(filepath.Join(dir, "ns", e.Name()))
		}
	})
	// A TAP is made by ioctl in the calling thread's namespace (the agent
	// runs in its host's): this test's goroutine goes into the host's.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	orig, err := netns.Get()
	if err != nil {
		t.Fatal(err)
	}
	defer orig.Close()
	hostNS, err := netns.GetFromPath(ns)
	if err != nil {
		t.Fatal(err)
	}
	defer hostNS.Close()
	if err := netns.Set(hostNS); err != nil {
		t.Fatal(err)
	}
	defer netns.Set(orig)
	assigned := make(chan struct{})
	close(assigned)
	h := newHostNetwork(dp, "", false, emptyView{}, &metadataService{}, nil, assigned, slog.New(slog.NewTextHandler(io.Discard, nil)))
	nic := api.InstanceNIC{Network: "app", VNI: 4242, CIDR: "10.77.0.0/24", Gateway: "10.77.0.1", PortID: "11111111-aaaa-0001", Port: "p1", MAC: "52:54:00:00:00:01", IP: "10.77.0.5"}
	moving := api.Assignment{ID: "vm-moving", Type: api.TypeVM, State: api.StateMigrate, Host: "src", NICs: []api.InstanceNIC{nic},
		Migration: &api.AssignmentMigration{ID: "m1", Source: "src", Target: "here", Mode: api.MigrateLive, Phase: api.MigrationTransfer}}
	nic2 := nic
	nic2.PortID, nic2.Port, nic2.MAC, nic2.IP = "22222222-aaaa-0002", "p2", "52:54:00:00:00:02", "10.77.0.6"
	gone := api.Assignment{ID: "vm-gone", Type: api.TypeVM, State: api.StateRunning, Host: "here", NICs: []api.InstanceNIC{nic2}}
	ctx := context.Background()
	has := func(dev string) bool {
		st, err := dp.State()
		if err != nil {
			t.Fatal(err)
		}
		return st[nic.VNI][dev]
	}
	tapMoving, tapGone := datapath.PortName(nic.PortID), datapath.PortName(nic2.PortID)
	for _, as := range []api.Assignment{moving, gone} {
		if err := h.wire(ctx, as); err != nil {
			t.Fatal(err)
		}
		if dev := datapath.PortName(as.NICs[0].PortID); !has(dev) {
			t.Fatalf("wire made no TAP %s", dev)
		}
	}
	// The network rounds of a transfer that lasts (a 1 MiB/s move of a
	// disk takes minutes).
	for i := 0; i < 5; i++ {
		h.netMu.Lock()
		h.syncLocked(ctx)
		h.netMu.Unlock()
	}
	if !has(tapMoving) {
		t.Errorf("the migration target's TAP %s was removed while the transfer was under way", tapMoving)
	}
	if has(tapGone) {
		t.Errorf("the TAP %s of an instance no view places here was kept", tapGone)
	}
}
