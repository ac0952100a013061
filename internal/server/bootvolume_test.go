package server

import (
	"strings"
	"testing"

	"github.com/kumocloud/kumo/api"
)

// Boot volumes through the API: an instance booting from a volume of a
// local pool is placed on the volume's host (explain names the volume for
// the others); bad input is a 4xx naming the field and leaves nothing; a
// local volume does not attach to an instance on another host; a new root
// volume is made with its instance and counts in the quota.
func TestBootVolumeAPI(t *testing.T) {
	ts := validated(t)
	admin := ts.user("boss", true)
	ts.project("p")
	member := ts.user("m", false, "p", "member")
	var jt api.JoinToken
	ts.do("POST", "/v1/join-tokens", admin, map[string]any{}).decode(t, &jt)
	join := func(name, host string) api.Agent {
		var a api.Agent
		r := ts.do("POST", "/v1/agents", "", api.AgentsPost{JoinToken: jt.Token, Name: name, Driver: "sim",
			Hosts: []api.HostSpec{{Name: host, Kinds: []string{"vm", "container"}, Capacity: api.Size{VCPUs: 8, MemoryMiB: 8192, DiskGiB: 100}}}})
		if r.Status != 201 {
			t.Fatalf("join %s: %d %s", name, r.Status, r.Body)
		}
		r.decode(t, &a)
		return a
	}
	agents := map[string]api.Agent{"h1": join("a1", "h1"), "h2": join("a2", "h2")}
	// A volume on a host, made there (its agent says so).
	volume := func(name, host string) api.Volume {
		t.Helper()
		var v api.Volume
		r := ts.do("POST", "/v1/projects/p/volumes", admin, api.VolumesPost{Name: name, SizeGiB: 1, Host: host})
		if r.Status != 201 {
			t.Fatalf("volume %s: %d %s", name, r.Status, r.Body)
		}
		r.decode(t, &v)
		a := agents[host]
		if r := ts.do("POST", "/v1/agents/"+a.ID+"/volumes", a.Credential, api.AgentVolumeReport{Volumes: []api.VolumeReport{{ID: v.ID, Status: "ready", SizeGiB: 1}}}); r.Status != 204 {
			t.Fatalf("report %s: %d %s", name, r.Status, r.Body)
		}
		ts.do("GET", "/v1/projects/p/volumes/"+name, member, nil).decode(t, &v)
		if v.Status != api.VolumeAvailable {
			t.Fatalf("volume %s: %+v", name, v)
		}
		return v
	}
	volume("data", "h2")
	refused := func(what string, req api.InstancesPost, status int, words ...string) {
		t.Helper()
		r := ts.do("POST", "/v1/projects/p/instances", member, req)
		msg := string(r.Body)
		if r.Status >= 400 {
			msg = r.errBody(t).Message
		}
		if r.Status != status {
			t.Fatalf("%s: %d %s, want %d", what, r.Status, msg, status)
		}
		for _, w := range words {
			if !strings.Contains(msg, w) {
				t.Fatalf("%s: %s does not say %q", what, msg, w)
			}
		}
		if g := ts.do("GET", "/v1/projects/p/instances/"+req.Name, member, nil); g.Status != 404 {
			t.Fatalf("%s: the instance was made: %d %s", what, g.Status, g.Body)
		}
	}
	refused("an unknown volume", api.InstancesPost{Name: "bad", Type: "vm", Flavor: "tiny", BootVolume: "nope"}, 400, "boot_volume", `"nope"`)
	refused("a container", api.InstancesPost{Name: "bad", Type: "container", Flavor: "tiny", Image: "x", BootVolume: "data"}, 400, "boot_volume", "container")
	refused("both", api.InstancesPost{Name: "bad", Type: "vm", Flavor: "tiny", Image: "x", BootVolume: "data", RootVolumeSizeGiB: 2}, 400, "root_volume_size_gib")
	refused("keep without a root volume", api.InstancesPost{Name: "bad", Type: "vm", Flavor: "tiny", Image: "x", KeepRootVolume: true}, 400, "keep_root_volume")
	refused("no image, no volume", api.InstancesPost{Name: "bad", Type: "vm", Flavor: "tiny"}, 400, "image")

	// Packing would take h1 (first by name): the volume takes it to h2.
	var in api.Instance
	if r := ts.do("POST", "/v1/projects/p/instances", member, api.InstancesPost{Name: "vm1", Type: "vm", Flavor: "tiny", BootVolume: "data"}); r.Status != 201 {
		t.Fatalf("vm1: %d %s", r.Status, r.Body)
	}
	waitFor(t, "vm1 placed", func() bool {
		ts.do("GET", "/v1/projects/p/instances/vm1", member, nil).decode(t, &in)
		return in.Host != ""
	})
	if in.Host != "h2" || in.BootVolume != "data" {
		t.Fatalf("vm1 on %q, boot volume %q: want h2, data", in.Host, in.BootVolume)
	}
	var ex api.Explain
	ts.do("GET", "/v1/projects/p/instances/vm1/explain", member, nil).decode(t, &ex)
	for _, h := range ex.Hosts {
		if h.Host == "h1" && (h.Feasible || h.Reason != "volume data lives on host h2 (local pool)") {
			t.Fatalf("explain h1: %+v", h)
		}
	}
	var v api.Volume
	ts.do("GET", "/v1/projects/p/volumes/data", member, nil).decode(t, &v)
	if v.Attachment == nil || v.Attachment.Instance != "vm1" || v.Attachment.Device != api.BootDevice || v.Status != api.VolumeInUse {
		t.Fatalf("data: %+v", v)
	}
	refused("a volume attached elsewhere", api.InstancesPost{Name: "vm2", Type: "vm", Flavor: "tiny", BootVolume: "data"}, 409, `"data"`, `"vm1"`)
	if r := ts.do("POST", "/v1/projects/p/volumes/data/detach", member, nil); r.Status != 409 || !strings.Contains(string(r.Body), "root disk") {
		t.Fatalf("detach of a root disk: %d %s", r.Status, r.Body)
	}
	// (A live migration takes its volumes along, and an instance
	// snapshot is an image of the boot volume: internal/agent's
	// TestMigrateLiveWithVolumes, the qemu driver's
	// TestLiveMigrationOfVolumes.)
	// A volume of another project is not found by name.
	ts.project("q")
	qm := ts.user("qm", false, "q", "member")
	if r := ts.do("POST", "/v1/projects/q/instances", qm, api.InstancesPost{Name: "vmq", Type: "vm", Flavor: "tiny", BootVolume: "data"}); r.Status != 400 || !strings.Contains(r.errBody(t).Message, `no volume "data" in project "q"`) {
		t.Fatalf("another project's volume: %d %s", r.Status, r.Body)
	}

	// A local volume on h1 does not attach to vm1 on h2.
	volume("other", "h1")
	r := ts.do("POST", "/v1/projects/p/volumes/other/attach", member, api.VolumeAttach{Instance: "vm1"})
	if r.Status != 409 || !strings.Contains(string(r.Body), "lives on host h1") || !strings.Contains(string(r.Body), "is on host h2") {
		t.Fatalf("attach across hosts: %d %s", r.Status, r.Body)
	}

	// A new root volume counts in the quota, in the instance's transaction.
	if r := ts.do("PUT", "/v1/projects/p/quota", admin, api.QuotaPut{Quota: map[string]int64{"volumes": 3}}); r.Status != 200 {
		t.Fatalf("quota: %d %s", r.Status, r.Body)
	}
	if r := ts.do("POST", "/v1/projects/p/instances", member, api.InstancesPost{Name: "vm3", Type: "vm", Flavor: "tiny", Image: "x", RootVolumeSizeGiB: 2}); r.Status != 201 {
		t.Fatalf("vm3: %d %s", r.Status, r.Body)
	}
	ts.do("GET", "/v1/projects/p/volumes/vm3-root", member, nil).decode(t, &v)
	if v.SizeGiB != 2 || !v.DeleteOnTerminate || v.Attachment == nil || v.Attachment.Instance != "vm3" || v.Attachment.Device != api.BootDevice {
		t.Fatalf("vm3-root: %+v", v)
	}
	var p api.Project
	ts.do("GET", "/v1/projects/p", member, nil).decode(t, &p)
	if p.Usage.Volumes != 3 || p.Usage.VolumeGiB != 4 {
		t.Fatalf("usage %+v: want 3 volumes, 4 GiB", p.Usage)
	}
	refused("over the volumes quota", api.InstancesPost{Name: "vm4", Type: "vm", Flavor: "tiny", Image: "x", RootVolumeSizeGiB: 1}, 403, "volumes")
	if g := ts.do("GET", "/v1/projects/p/volumes/vm4-root", member, nil); g.Status != 404 {
		t.Fatalf("vm4-root was made: %d", g.Status)
	}
}
