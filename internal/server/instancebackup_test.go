package server

import (
	"strings"
	"testing"

	"github.com/kumocloud/kumo/api"
	"github.com/kumocloud/kumo/internal/apitest"
	"github.com/kumocloud/kumo/internal/store/memstore"
)

// Instance backups through the API, with sim agents answering for their
// hosts: a VM with a root volume and a data disk is backed up (one
// transaction: the instance backup, a volume backup per volume, their
// quota), survives a server restart while its hosts send the volume
// backups, and is restored as a new instance whose volumes are made on
// the host it is placed on (PROLOG is told to wait for them). Bad input
// leaves nothing; another project neither sees nor restores it; deleting
// it takes its volume backups and their quota.
func TestInstanceBackupRestore(t *testing.T) {
	st := memstore.New()
	ts := newTestServerOn(t, st)
	v, err := apitest.New()
	if err != nil {
		t.Fatal(err)
	}
	ts.net = v.Handler(ts.s.Handler())
	t.Cleanup(func() {
		for _, p := range v.Problems() {
			t.Error(p)
		}
	})
	admin := ts.user("boss", true)
	ts.project("p")
	ts.project("q")
	member := ts.user("m", false, "p", "member")
	qm := ts.user("qm", false, "q", "member")
	agents := simAgents(t, ts, admin, []string{"vm", "container"}, "h1", "h2")
	// An agent reports what its view lists (its hosts' volumes, with the
	// attachment to carry out): wait until it does, as an agent would.
	report := func(host string, reps ...api.VolumeReport) {
		t.Helper()
		a := agents[host]
		waitFor(t, host+"'s view of the volumes reported", func() bool {
			var view api.AgentVolumes
			ts.do("GET", "/v1/agents/"+a.ID+"/volumes", a.Credential, nil).decode(t, &view)
			listed := map[string]bool{}
			for _, it := range view.Items {
				listed[it.ID] = it.Attach != nil
			}
			for _, rep := range reps {
				if attached, ok := listed[rep.ID]; !ok || rep.AttachedTo != "" && !attached {
					return false
				}
			}
			return true
		})
		if r := ts.do("POST", "/v1/agents/"+a.ID+"/volumes", a.Credential, api.AgentVolumeReport{Volumes: reps}); r.Status != 204 {
			t.Fatalf("report: %d %s", r.Status, r.Body)
		}
	}
	getVol := func(name string) api.Volume {
		t.Helper()
		var vol api.Volume
		if r := ts.do("GET", "/v1/projects/p/volumes/"+name, member, nil); r.Status != 200 {
			t.Fatalf("volume %s: %d %s", name, r.Status, r.Body)
		} else {
			r.decode(t, &vol)
		}
		return vol
	}
	usage := func() api.ResourceCounts {
		var p api.Project
		ts.do("GET", "/v1/projects/p", member, nil).decode(t, &p)
		return p.Usage
	}

	// vm1: a root volume (1 GiB) and a data disk at vdb (2 GiB), made and
	// attached on its host.
	if r := ts.do("POST", "/v1/projects/p/instances", member, api.InstancesPost{Name: "vm1", Type: "vm", Flavor: "tiny", Image: "x",
		RootVolumeSizeGiB: 1, UserData: "#cloud-config\n", Labels: map[string]string{"tier": "db"}}); r.Status != 201 {
		t.Fatalf("vm1: %d %s", r.Status, r.Body)
	}
	var vm1 api.Instance
	waitFor(t, "vm1 placed", func() bool {
		ts.do("GET", "/v1/projects/p/instances/vm1", member, nil).decode(t, &vm1)
		return vm1.Host != ""
	})
	host := vm1.Host
	root := getVol("vm1-root")
	report(host, api.VolumeReport{ID: root.ID, Status: "ready", SizeGiB: 1, AttachedTo: vm1.ID})
	var data api.Volume
	if r := ts.do("POST", "/v1/projects/p/volumes", member, api.VolumesPost{Name: "data", SizeGiB: 2, Near: "vm1"}); r.Status != 201 {
		t.Fatalf("data: %d %s", r.Status, r.Body)
	} else {
		r.decode(t, &data)
	}
	report(host, api.VolumeReport{ID: data.ID, Status: "ready", SizeGiB: 2})
	if r := ts.do("POST", "/v1/projects/p/volumes/data/attach", member, api.VolumeAttach{Instance: "vm1", Device: "vdb"}); r.Status != 200 {
		t.Fatalf("attach: %d %s", r.Status, r.Body)
	}
	report(host, api.VolumeReport{ID: data.ID, Status: "ready", SizeGiB: 2, AttachedTo: vm1.ID})

	// Bad input: nothing made.
	for _, c := range []struct {
		path, name string
		status     int
		says       string
	}{
		{"/v1/projects/p/instances/vm1/backups", strings.Repeat("a", 57), 400, "at most 56"},
		{"/v1/projects/p/instances/nope/backups", "ib0", 404, "nope"},
	} {
		if r := ts.do("POST", c.path, member, api.InstanceBackupsPost{Name: c.name}); r.Status != c.status || !strings.Contains(r.errBody(t).Message, c.says) {
			t.Fatalf("backup %s: %d %s, want %d saying %q", c.path, r.Status, r.Body, c.status, c.says)
		}
	}
	if u := usage(); u.Backups != 0 {
		t.Fatalf("refused backups counted: %+v", u)
	}

	var ib api.InstanceBackup
	if r := ts.do("POST", "/v1/projects/p/instances/vm1/backups", member, api.InstanceBackupsPost{Name: "ib1"}); r.Status != 201 {
		t.Fatalf("backup: %d %s", r.Status, r.Body)
	} else {
		r.decode(t, &ib)
	}
	if ib.Status != api.VolumeCreating || len(ib.Volumes) != 2 || ib.EphemeralRoot || ib.SizeGiB != 3 ||
		ib.Volumes[0].Device != "vda" || ib.Volumes[0].Backup != "ib1-vda" || !ib.Volumes[0].DeleteOnTerminate ||
		ib.Volumes[1].Device != "vdb" || ib.Volumes[1].Volume != "data" ||
		ib.Definition.Flavor != "tiny" || ib.Definition.Image != "x" || ib.Definition.UserData != "#cloud-config\n" || ib.Definition.Labels["tier"] != "db" {
		t.Fatalf("instance backup: %+v", ib)
	}
	// One backup for the instance backup, one a volume; their GiB.
	if u := usage(); u.Backups != 3 || u.BackupGiB != 3 {
		t.Fatalf("usage after the backup: %+v", u)
	}
	if r := ts.do("POST", "/v1/projects/p/instances/vm1/backups", member, api.InstanceBackupsPost{Name: "ib1"}); r.Status != 409 || !strings.Contains(r.errBody(t).Message, "already exists") {
		t.Fatalf("a second ib1: %d %s", r.Status, r.Body)
	}
	if r := ts.do("DELETE", "/v1/projects/p/volume-backups/ib1-vdb", member, nil); r.Status != 409 || !strings.Contains(r.errBody(t).Message, "instance backup") {
		t.Fatalf("deleting a volume backup of an instance backup alone: %d %s", r.Status, r.Body)
	}
	if r := ts.do("POST", "/v1/projects/p/instance-backups/ib1/restore", member, api.InstanceRestore{Name: "vm2"}); r.Status != 409 || !strings.Contains(r.errBody(t).Message, "creating") {
		t.Fatalf("restore of a backup being made: %d %s", r.Status, r.Body)
	}

	// The server restarts: the store says what is to be made, the host
	// sends the volume backups (all zeros here: nothing to upload).
	ts.s.Close()
	ts2 := newTestServerOn(t, st)
	ts2.net = v.Handler(ts2.s.Handler())
	ts = ts2
	a := agents[host]
	var view api.AgentVolumes
	waitFor(t, "the restarted server's agent view", func() bool {
		return ts.do("GET", "/v1/agents/"+a.ID+"/volumes", a.Credential, nil).Status == 200
	})
	ts.do("GET", "/v1/agents/"+a.ID+"/volumes", a.Credential, nil).decode(t, &view)
	sent := 0
	for _, it := range view.Items {
		for _, b := range it.Backups {
			n := it.SizeGiB << 30 / api.BackupChunk
			var miss api.BackupMissing
			if r := ts.do("POST", "/v1/agents/"+a.ID+"/backups/"+b, a.Credential, api.BackupManifest{Chunks: make([]string, n)}); r.Status != 200 {
				t.Fatalf("manifest: %d %s", r.Status, r.Body)
			} else if r.decode(t, &miss); len(miss.Missing) != 0 {
				t.Fatalf("missing %v", miss.Missing)
			}
			sent++
		}
	}
	if sent != 2 {
		t.Fatalf("the host was asked for %d backups, want 2: %+v", sent, view.Items)
	}
	ts.do("GET", "/v1/projects/p/instance-backups/ib1", member, nil).decode(t, &ib)
	if ib.Status != api.VolumeAvailable || ib.Volumes[0].Status != api.VolumeAvailable || ib.Volumes[1].Status != api.VolumeAvailable {
		t.Fatalf("instance backup once sent: %+v", ib)
	}

	// Another project neither sees nor restores it.
	if r := ts.do("GET", "/v1/projects/q/instance-backups/ib1", qm, nil); r.Status != 404 {
		t.Fatalf("q sees p's backup: %d %s", r.Status, r.Body)
	}
	if r := ts.do("POST", "/v1/projects/q/instance-backups/ib1/restore", qm, api.InstanceRestore{Name: "stolen"}); r.Status != 404 {
		t.Fatalf("q restores p's backup: %d %s", r.Status, r.Body)
	}
	var ql api.List[api.InstanceBackup]
	if ts.do("GET", "/v1/projects/q/instance-backups", qm, nil).decode(t, &ql); len(ql.Items) != 0 {
		t.Fatalf("q lists %+v", ql.Items)
	}

	// Restore refusals leave nothing: the name taken, a full quota.
	before := usage()
	refused := func(what string, req api.InstanceRestore, status int, says string) {
		t.Helper()
		r := ts.do("POST", "/v1/projects/p/instance-backups/ib1/restore", member, req)
		if r.Status != status || !strings.Contains(r.errBody(t).Message, says) {
			t.Fatalf("%s: %d %s, want %d saying %q", what, r.Status, r.Body, status, says)
		}
		if u := usage(); u != before {
			t.Fatalf("%s: usage %+v, was %+v", what, u, before)
		}
		if req.Name != "" {
			if g := ts.do("GET", "/v1/projects/p/volumes/"+req.Name+"-root", member, nil); g.Status != 404 {
				t.Fatalf("%s: its root volume was made: %d", what, g.Status)
			}
		}
	}
	refused("the name taken", api.InstanceRestore{}, 409, `instance "vm1" already exists`)
	if r := ts.do("PUT", "/v1/projects/p/quota", admin, api.QuotaPut{Quota: map[string]int64{"volumes": before.Volumes + 1}}); r.Status != 200 {
		t.Fatalf("quota: %d %s", r.Status, r.Body)
	}
	refused("over the volumes quota", api.InstanceRestore{Name: "vm2"}, 403, "volumes")
	if r := ts.do("PUT", "/v1/projects/p/quota", admin, api.QuotaPut{Quota: map[string]int64{"volumes": 100}}); r.Status != 200 {
		t.Fatalf("quota: %d %s", r.Status, r.Body)
	}

	// The restore: one transaction makes vm2 and its volumes, restored
	// from the backups, attached where they were, with no host yet.
	var vm2 api.Instance
	if r := ts.do("POST", "/v1/projects/p/instance-backups/ib1/restore", member, api.InstanceRestore{Name: "vm2"}); r.Status != 201 {
		t.Fatalf("restore: %d %s", r.Status, r.Body)
	} else {
		r.decode(t, &vm2)
	}
	if vm2.BootVolume != "vm2-root" || vm2.Flavor != "tiny" || vm2.Image != "x" || vm2.UserData != "#cloud-config\n" || vm2.Labels["tier"] != "db" {
		t.Fatalf("vm2: %+v", vm2)
	}
	r2, d2 := getVol("vm2-root"), getVol("vm2-vdb")
	if r2.SizeGiB != 1 || !r2.DeleteOnTerminate || r2.Attachment == nil || r2.Attachment.Device != "vda" || r2.Attachment.InstanceID != vm2.ID ||
		d2.SizeGiB != 2 || d2.Attachment == nil || d2.Attachment.Device != "vdb" || d2.Status != api.VolumeCreating {
		t.Fatalf("restored volumes: %+v %+v", r2, d2)
	}
	if u := usage(); u.Volumes != before.Volumes+2 || u.VolumeGiB != before.VolumeGiB+3 || u.Instances != before.Instances+1 {
		t.Fatalf("usage after the restore %+v, before %+v", u, before)
	}
	waitFor(t, "vm2 placed", func() bool {
		ts.do("GET", "/v1/projects/p/instances/vm2", member, nil).decode(t, &vm2)
		return vm2.Host != ""
	})
	// Its host's agent is told to wait for both volumes and to make them
	// from the backups.
	a2 := agents[vm2.Host]
	var as api.Assignments
	ts.do("GET", "/v1/agents/"+a2.ID+"/assignments?wait=0", a2.Credential, nil).decode(t, &as)
	found := false
	for _, it := range as.Items {
		if it.ID == vm2.ID {
			found = it.BootVolume == r2.ID && len(it.NewVolumes) == 1 && it.NewVolumes[0] == d2.ID
			if !found {
				t.Fatalf("vm2's assignment: %+v", it)
			}
		}
	}
	if !found {
		t.Fatalf("vm2 is not assigned to %s: %+v", vm2.Host, as.Items)
	}
	ts.do("GET", "/v1/agents/"+a2.ID+"/volumes", a2.Credential, nil).decode(t, &view)
	from := map[string]string{}
	for _, it := range view.Items {
		from[it.ID] = it.FromBackup
	}
	if from[r2.ID] == "" || from[d2.ID] == "" {
		t.Fatalf("%s's agent view does not restore vm2's volumes: %+v", vm2.Host, view.Items)
	}
	// While they are made the backup is not deleted.
	if r := ts.do("DELETE", "/v1/projects/p/instance-backups/ib1", member, nil); r.Status != 409 || !strings.Contains(r.errBody(t).Message, "being restored") {
		t.Fatalf("delete while restoring: %d %s", r.Status, r.Body)
	}
	report(vm2.Host, api.VolumeReport{ID: r2.ID, Status: "ready", SizeGiB: 1, AttachedTo: vm2.ID}, api.VolumeReport{ID: d2.ID, Status: "ready", SizeGiB: 2, AttachedTo: vm2.ID})
	if r2, d2 = getVol("vm2-root"), getVol("vm2-vdb"); r2.Host != vm2.Host || d2.Host != vm2.Host || d2.Status != api.VolumeInUse {
		t.Fatalf("restored volumes once made: %+v %+v", r2, d2)
	}

	// Deleting the instance backup takes its volume backups and quota.
	if r := ts.do("DELETE", "/v1/projects/p/instance-backups/ib1", member, nil); r.Status != 204 {
		t.Fatalf("delete: %d %s", r.Status, r.Body)
	}
	var vbs api.List[api.VolumeBackup]
	if ts.do("GET", "/v1/projects/p/volume-backups", member, nil).decode(t, &vbs); len(vbs.Items) != 0 {
		t.Fatalf("volume backups left: %+v", vbs.Items)
	}
	if u := usage(); u.Backups != 0 || u.BackupGiB != 0 {
		t.Fatalf("usage after the delete: %+v", u)
	}
}

// A VM's own root disk (not a volume) is kept with its backup as a volume
// backup NAME-root (root_of the VM, in the backup store as chunks): refused
// while no host runs it (unless skip_root_disk), asked of the VM's host
// only, its size the disk's (the flavor's or the image's), the backup
// creating until it is sent, and deleted with the backup.
func TestInstanceBackupRootDisk(t *testing.T) {
	ts := validated(t)
	admin := ts.user("boss", true)
	ts.project("p")
	member := ts.user("m", false, "p", "member")
	a := simAgents(t, ts, admin, []string{"vm"}, "h1")["h1"]
	if r := ts.do("POST", "/v1/projects/p/instances", member, api.InstancesPost{Name: "vm", Type: "vm", Flavor: "tiny", Image: "x"}); r.Status != 201 {
		t.Fatalf("vm: %d %s", r.Status, r.Body)
	}
	var in api.Instance
	waitFor(t, "vm placed", func() bool {
		ts.do("GET", "/v1/projects/p/instances/vm", member, nil).decode(t, &in)
		return in.State == api.StateProlog
	})
	// In PROLOG no host runs it yet.
	if r := ts.do("POST", "/v1/projects/p/instances/vm/backups", member, api.InstanceBackupsPost{Name: "early"}); r.Status != 409 || !strings.Contains(r.errBody(t).Message, "skip_root_disk") {
		t.Fatalf("backup in PROLOG: %d %s", r.Status, r.Body)
	}
	var ib api.InstanceBackup
	if r := ts.do("POST", "/v1/projects/p/instances/vm/backups", member, api.InstanceBackupsPost{Name: "noroot", SkipRootDisk: true}); r.Status != 201 {
		t.Fatalf("backup without its root: %d %s", r.Status, r.Body)
	} else if r.decode(t, &ib); !ib.EphemeralRoot || ib.RootBackup != "" || ib.Status != api.VolumeAvailable {
		t.Fatalf("backup without its root: %+v", ib)
	}
	for _, st := range []api.State{api.StateBoot, api.StateRunning} {
		if r := ts.do("POST", "/v1/agents/"+a.ID+"/reports", a.Credential, api.AgentReport{Instances: []api.InstanceReport{{ID: in.ID, Host: "h1", From: in.State, To: st}}}); r.Status != 200 {
			t.Fatalf("report: %d %s", r.Status, r.Body)
		}
		in.State = st
	}
	ib = api.InstanceBackup{}
	if r := ts.do("POST", "/v1/projects/p/instances/vm/backups", member, api.InstanceBackupsPost{Name: "full"}); r.Status != 201 {
		t.Fatalf("backup: %d %s", r.Status, r.Body)
	} else {
		r.decode(t, &ib)
	}
	if ib.EphemeralRoot || ib.RootBackup != "full-root" || ib.RootImage != "" || ib.Status != api.VolumeCreating || ib.SizeGiB != 1 {
		t.Fatalf("backup with its root: %+v", ib)
	}
	var rb api.VolumeBackup
	ts.do("GET", "/v1/projects/p/volume-backups/full-root", member, nil).decode(t, &rb)
	if rb.RootOf != "vm" || rb.VolumeID != in.ID || rb.Format != api.VolumeQcow2 || rb.SizeGiB != 1 {
		t.Fatalf("root disk backup: %+v", rb)
	}
	var view api.AgentVolumes
	ts.do("GET", "/v1/agents/"+a.ID+"/volumes", a.Credential, nil).decode(t, &view)
	if len(view.Roots) != 1 || view.Roots[0].Backup != rb.ID || view.Roots[0].Format != api.VolumeQcow2 {
		t.Fatalf("the VM's host is asked for %+v", view.Roots)
	}
	if r := ts.do("POST", "/v1/projects/p/instance-backups/full/restore", member, api.InstanceRestore{Name: "vm2"}); r.Status != 409 || !strings.Contains(r.errBody(t).Message, "creating") {
		t.Fatalf("restore while the root is sent: %d %s", r.Status, r.Body)
	}
	// More chunks than the disk counted are refused; the disk's own size
	// (less than the whole GiB) is taken.
	if r := ts.do("POST", "/v1/agents/"+a.ID+"/backups/"+rb.ID, a.Credential, api.BackupManifest{Chunks: make([]string, 1<<30/api.BackupChunk+1)}); r.Status != 400 {
		t.Fatalf("too many chunks: %d %s", r.Status, r.Body)
	}
	if r := ts.do("POST", "/v1/agents/"+a.ID+"/backups/"+rb.ID, a.Credential, api.BackupManifest{Chunks: make([]string, 100)}); r.Status != 200 {
		t.Fatalf("manifest: %d %s", r.Status, r.Body)
	}
	ts.do("GET", "/v1/projects/p/instance-backups/full", member, nil).decode(t, &ib)
	if ib.Status != api.VolumeAvailable {
		t.Fatalf("once sent: %+v", ib)
	}
	// A second backup of that name is refused.
	if r := ts.do("POST", "/v1/projects/p/instances/vm/backups", member, api.InstanceBackupsPost{Name: "full"}); r.Status != 409 || !strings.Contains(r.errBody(t).Message, "already exists") {
		t.Fatalf("a second full: %d %s", r.Status, r.Body)
	}
	if r := ts.do("DELETE", "/v1/projects/p/instance-backups/full", member, nil); r.Status != 204 {
		t.Fatalf("delete: %d %s", r.Status, r.Body)
	}
	if r := ts.do("GET", "/v1/projects/p/volume-backups/full-root", member, nil); r.Status != 404 {
		t.Fatalf("the root disk's backup after the delete: %d %s", r.Status, r.Body)
	}
}
