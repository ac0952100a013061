package server

import (
	"strings"
	"testing"

	"github.com/kumocloud/kumo/api"
)

// A container's root filesystem in its instance backup: a volume backup
// NAME-root (root_of the container) that only the container's host is
// asked for and may send; refused with nothing made while the container
// is on no host (unless skip_root_disk); another project neither sees nor
// restores it; a restore hands the backup to the new container's host
// (its assignment's root_backup), and only that host's agent may read it.
func TestInstanceBackupContainerRoot(t *testing.T) {
	ts := validated(t)
	admin := ts.user("boss", true)
	ts.project("p")
	ts.project("q")
	member := ts.user("m", false, "p", "member")
	qm := ts.user("qm", false, "q", "member")
	agents := simAgents(t, ts, admin, []string{"container"}, "h1", "h2")
	usage := func() api.ResourceCounts {
		var p api.Project
		ts.do("GET", "/v1/projects/p", member, nil).decode(t, &p)
		return p.Usage
	}
	if r := ts.do("POST", "/v1/projects/p/instances", member, api.InstancesPost{Name: "c1", Type: "container", Flavor: "tiny", Image: "x"}); r.Status != 201 {
		t.Fatalf("c1: %d %s", r.Status, r.Body)
	}
	var c1 api.Instance
	waitFor(t, "c1 placed", func() bool {
		ts.do("GET", "/v1/projects/p/instances/c1", member, nil).decode(t, &c1)
		return c1.State == api.StateProlog
	})
	// On its host but not made yet: refused, nothing made.
	for _, c := range []struct {
		name   string
		status int
		says   string
	}{{"early", 409, "skip_root_disk"}, {strings.Repeat("a", 57), 400, "at most 56"}} {
		if r := ts.do("POST", "/v1/projects/p/instances/c1/backups", member, api.InstanceBackupsPost{Name: c.name}); r.Status != c.status || !strings.Contains(r.errBody(t).Message, c.says) {
			t.Fatalf("backup %q: %d %s, want %d saying %q", c.name, r.Status, r.Body, c.status, c.says)
		}
	}
	if u := usage(); u.Backups != 0 {
		t.Fatalf("refused backups counted: %+v", u)
	}
	if r := ts.do("GET", "/v1/projects/p/volume-backups/early-root", member, nil); r.Status != 404 {
		t.Fatalf("a refused backup's root: %d %s", r.Status, r.Body)
	}
	home := agents[c1.Host]
	for _, st := range []api.State{api.StateBoot, api.StateRunning} {
		if r := ts.do("POST", "/v1/agents/"+home.ID+"/reports", home.Credential, api.AgentReport{Instances: []api.InstanceReport{{ID: c1.ID, Host: c1.Host, From: c1.State, To: st}}}); r.Status != 200 {
			t.Fatalf("report: %d %s", r.Status, r.Body)
		}
		c1.State = st
	}

	var ib api.InstanceBackup
	if r := ts.do("POST", "/v1/projects/p/instances/c1/backups", member, api.InstanceBackupsPost{Name: "ib"}); r.Status != 201 {
		t.Fatalf("backup: %d %s", r.Status, r.Body)
	} else {
		r.decode(t, &ib)
	}
	if ib.RootBackup != "ib-root" || ib.EphemeralRoot || ib.Status != api.VolumeCreating || ib.SizeGiB != 1 {
		t.Fatalf("backup of a container: %+v", ib)
	}
	if u := usage(); u.Backups != 2 || u.BackupGiB != 1 {
		t.Fatalf("usage %+v: want the instance backup and its root filesystem's", u)
	}
	var rb api.VolumeBackup
	ts.do("GET", "/v1/projects/p/volume-backups/ib-root", member, nil).decode(t, &rb)
	if rb.RootOf != "c1" || rb.VolumeID != c1.ID || rb.InstanceBackup != "ib" || rb.Format != api.VolumeExt4 {
		t.Fatalf("root backup: %+v", rb)
	}
	// Only the container's host is asked for it, and only it may send it.
	var other api.Agent
	for h, a := range agents {
		var view api.AgentVolumes
		ts.do("GET", "/v1/agents/"+a.ID+"/volumes", a.Credential, nil).decode(t, &view)
		switch {
		case h == c1.Host && (len(view.Roots) != 1 || view.Roots[0].Backup != rb.ID || view.Roots[0].InstanceID != c1.ID):
			t.Fatalf("%s, the container's host: roots %+v", h, view.Roots)
		case h != c1.Host && len(view.Roots) != 0:
			t.Fatalf("%s is asked for another host's container: %+v", h, view.Roots)
		case h != c1.Host:
			other = a
		}
	}
	chunks := make([]string, 1<<30/api.BackupChunk)
	if r := ts.do("POST", "/v1/agents/"+other.ID+"/backups/"+rb.ID, other.Credential, api.BackupManifest{Chunks: chunks}); r.Status != 404 {
		t.Fatalf("another host sends the root backup: %d %s", r.Status, r.Body)
	}
	if r := ts.do("POST", "/v1/agents/"+home.ID+"/backups/"+rb.ID, home.Credential, api.BackupManifest{Chunks: chunks}); r.Status != 200 {
		t.Fatalf("manifest: %d %s", r.Status, r.Body)
	}
	ts.do("GET", "/v1/projects/p/instance-backups/ib", member, nil).decode(t, &ib)
	if ib.Status != api.VolumeAvailable {
		t.Fatalf("once sent: %+v", ib)
	}

	// Another project neither sees nor restores it.
	if r := ts.do("GET", "/v1/projects/q/instance-backups/ib", qm, nil); r.Status != 404 {
		t.Fatalf("q sees p's backup: %d %s", r.Status, r.Body)
	}
	if r := ts.do("POST", "/v1/projects/q/instance-backups/ib/restore", qm, api.InstanceRestore{Name: "stolen"}); r.Status != 404 {
		t.Fatalf("q restores p's backup: %d %s", r.Status, r.Body)
	}
	if r := ts.do("POST", "/v1/projects/p/instance-backups/ib/restore", qm, api.InstanceRestore{Name: "stolen"}); r.Status != 403 && r.Status != 404 {
		t.Fatalf("q's member restores in p: %d %s", r.Status, r.Body)
	}

	// The restore: the new container's host is handed the backup and may
	// read it; the other host may not.
	if r := ts.do("POST", "/v1/projects/p/instance-backups/ib/restore", member, api.InstanceRestore{Name: "c2"}); r.Status != 201 {
		t.Fatalf("restore: %d %s", r.Status, r.Body)
	}
	var c2 api.Instance
	waitFor(t, "c2 placed", func() bool {
		ts.do("GET", "/v1/projects/p/instances/c2", member, nil).decode(t, &c2)
		return c2.Host != ""
	})
	for h, a := range agents {
		var as api.Assignments
		ts.do("GET", "/v1/agents/"+a.ID+"/assignments?wait=0", a.Credential, nil).decode(t, &as)
		for _, it := range as.Items {
			if it.ID == c2.ID && it.RootBackup != rb.ID {
				t.Fatalf("c2's assignment: root backup %q, want %q", it.RootBackup, rb.ID)
			}
		}
		want := 404
		if h == c2.Host {
			want = 200
		}
		if r := ts.do("GET", "/v1/agents/"+a.ID+"/backups/"+rb.ID+"?offset=0&limit=0", a.Credential, nil); r.Status != want {
			t.Fatalf("%s reads the root backup of c2: %d %s, want %d", h, r.Status, r.Body, want)
		}
	}

	// Once prepared (BOOT) the backup is no longer c2's to read.
	c2Host := agents[c2.Host]
	if r := ts.do("POST", "/v1/agents/"+c2Host.ID+"/reports", c2Host.Credential, api.AgentReport{Instances: []api.InstanceReport{{ID: c2.ID, Host: c2.Host, From: api.StateProlog, To: api.StateBoot}}}); r.Status != 200 {
		t.Fatalf("report: %d %s", r.Status, r.Body)
	}
	waitFor(t, "c2's host no longer reads the root backup once c2 is prepared", func() bool {
		return ts.do("GET", "/v1/agents/"+c2Host.ID+"/backups/"+rb.ID+"?offset=0&limit=0", c2Host.Credential, nil).Status == 404
	})
	var as api.Assignments
	ts.do("GET", "/v1/agents/"+c2Host.ID+"/assignments?wait=0", c2Host.Credential, nil).decode(t, &as)
	for _, it := range as.Items {
		if it.ID == c2.ID && (it.State != api.StateBoot || it.RootBackup != "") {
			t.Fatalf("c2's assignment once prepared: %+v", it)
		}
	}

	// Without its root filesystem: nothing for a host to send.
	ib = api.InstanceBackup{}
	if r := ts.do("POST", "/v1/projects/p/instances/c1/backups", member, api.InstanceBackupsPost{Name: "light", SkipRootDisk: true}); r.Status != 201 {
		t.Fatalf("skip_root_disk: %d %s", r.Status, r.Body)
	} else if r.decode(t, &ib); ib.RootBackup != "" || !ib.EphemeralRoot || ib.Status != api.VolumeAvailable {
		t.Fatalf("skip_root_disk: %+v", ib)
	}
	if r := ts.do("DELETE", "/v1/projects/p/instance-backups/ib", member, nil); r.Status != 204 {
		t.Fatalf("delete: %d %s", r.Status, r.Body)
	}
	if r := ts.do("GET", "/v1/projects/p/volume-backups/ib-root", member, nil); r.Status != 404 {
		t.Fatalf("the root backup after its instance backup's delete: %d %s", r.Status, r.Body)
	}
}

// simAgents joins one sim agent a host (named a-HOST), each host taking
// these kinds of instances.
func simAgents(t *testing.T, ts *testServer, admin string, kinds []string, hosts ...string) map[string]api.Agent {
	t.Helper()
	var jt api.JoinToken
	ts.do("POST", "/v1/join-tokens", admin, map[string]any{}).decode(t, &jt)
	agents := map[string]api.Agent{}
	for _, h := range hosts {
		var a api.Agent
		r := ts.do("POST", "/v1/agents", "", api.AgentsPost{JoinToken: jt.Token, Name: "a-" + h, Driver: "sim",
			Hosts: []api.HostSpec{{Name: h, Kinds: kinds, Capacity: api.Size{VCPUs: 8, MemoryMiB: 8192, DiskGiB: 100}}}})
		if r.Status != 201 {
			t.Fatalf("join %s: %d %s", h, r.Status, r.Body)
		}
		r.decode(t, &a)
		agents[h] = a
	}
	return agents
}
