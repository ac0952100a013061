package volumes

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/kumocloud/kumo/api"
	"github.com/kumocloud/kumo/internal/errs"
	"github.com/kumocloud/kumo/internal/quota"
	"github.com/kumocloud/kumo/internal/store"
	"github.com/kumocloud/kumo/internal/store/memstore"
)

type fakeImages map[string]api.Image

func (f fakeImages) Resolve(_ context.Context, _, ref string) (api.Image, error) {
	if img, ok := f[ref]; ok {
		return img, nil
	}
	return api.Image{}, errs.NotFound("image %q not found", ref)
}

type fakeInstances map[string]api.Instance

func (f fakeInstances) Get(_ context.Context, _, name string) (api.Instance, []api.HistoryRecord, error) {
	if in, ok := f[name]; ok {
		return in, nil, nil
	}
	return api.Instance{}, nil, errs.NotFound("instance %q not found", name)
}

func (f fakeInstances) LiveInstance(_ context.Context, _, name string) (string, string, string, error) {
	in, ok := f[name]
	if !ok || in.State == api.StateDone {
		return "", "", "", errs.NotFound("instance %q not found", name)
	}
	return in.ID, in.Type, in.Host, nil
}

type fakeHosts []api.Host

func (f fakeHosts) List(context.Context, string, int) ([]api.Host, string, error) { return f, "", nil }

type env struct {
	svc  *Service
	inst fakeInstances
	st   *memstore.Store
}

func newEnv(t *testing.T, lim api.ResourceCounts) *env {
	st := memstore.New()
	ctx := context.Background()
	if _, err := st.Txn(ctx, nil, []store.Op{quota.InitOp("p", lim)}); err != nil {
		t.Fatal(err)
	}
	inst := fakeInstances{
		"vm1": {Meta: api.Meta{ID: "id-vm1", Name: "vm1"}, Type: api.TypeVM, State: api.StateRunning, Host: "h1"},
		"vm2": {Meta: api.Meta{ID: "id-vm2", Name: "vm2"}, Type: api.TypeVM, State: api.StateRunning, Host: "h2"},
		"c1":  {Meta: api.Meta{ID: "id-c1", Name: "c1"}, Type: api.TypeContainer, State: api.StateRunning, Host: "h1"},
	}
	hosts := fakeHosts{{Meta: api.Meta{Name: "h1"}, Enabled: true, State: api.HostOnline}, {Meta: api.Meta{Name: "h2"}, Enabled: true, State: api.HostOnline}}
	imgs := fakeImages{
		"disk":   {Meta: api.Meta{Name: "disk"}, Project: "p", Kind: api.KindVMDisk, Status: api.ImageActive, Format: "qcow2", SHA256: "abc", VirtualSize: 2 << 30},
		"rootfs": {Meta: api.Meta{Name: "rootfs"}, Project: "p", Kind: api.KindContainerRootfs, Status: api.ImageActive},
	}
	svc := New(st, imgs, inst, hosts, time.Now)
	if err := svc.SetBackupDir(t.TempDir()); err != nil {
		t.Fatal(err)
	}
	return &env{svc: svc, inst: inst, st: st}
}

func kindOf(err error) errs.Kind {
	var e *errs.Error
	if errors.As(err, &e) {
		return e.Kind
	}
	return -1
}

func unlimited() api.ResourceCounts {
	return api.ResourceCounts{Volumes: -1, VolumeGiB: -1, Snapshots: -1, Backups: -1, BackupGiB: -1}
}

// report is what an agent of hosts says.
func (e *env) report(t *testing.T, hosts []string, reps ...api.VolumeReport) {
	t.Helper()
	hs := map[string]bool{}
	for _, h := range hosts {
		hs[h] = true
	}
	if err := e.svc.Report(context.Background(), hs, e.inst, reps); err != nil {
		t.Fatal(err)
	}
}

func TestCreateChecksInputAndQuota(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, api.ResourceCounts{Volumes: 2, VolumeGiB: 10})
	bad := []struct {
		req   api.VolumesPost
		field string
	}{
		{api.VolumesPost{Name: "", SizeGiB: 1}, "name"},
		{api.VolumesPost{Name: "../x", SizeGiB: 1}, "name"},
		{api.VolumesPost{Name: "a", SizeGiB: 0}, "size_gib"},
		{api.VolumesPost{Name: "a", SizeGiB: api.MaxVolumeGiB + 1}, "size_gib"},
		{api.VolumesPost{Name: "a", SizeGiB: 1, Format: "vmdk"}, "format"},
		{api.VolumesPost{Name: "a", SizeGiB: 1, Image: "rootfs"}, "image"},
		{api.VolumesPost{Name: "a", SizeGiB: 1, Image: "disk"}, "size_gib"},
		{api.VolumesPost{Name: "a", SizeGiB: 1, Pool: "nope"}, "pool"},
	}
	for _, b := range bad {
		_, err := e.svc.Create(ctx, "p", b.req, false)
		var ee *errs.Error
		if !errors.As(err, &ee) || ee.Kind != errs.KindInvalid || ee.Field != b.field {
			t.Errorf("%+v: got %v, want invalid %s", b.req, err, b.field)
		}
	}
	if _, err := e.svc.Create(ctx, "p", api.VolumesPost{Name: "a", SizeGiB: 1, Host: "h1"}, false); kindOf(err) != errs.KindForbidden {
		t.Errorf("a tenant naming a host: %v", err)
	}
	v, err := e.svc.Create(ctx, "p", api.VolumesPost{Name: "a", SizeGiB: 8, Near: "vm2"}, false)
	if err != nil || v.Host != "h2" || v.Status != api.VolumeCreating || v.Format != api.VolumeQcow2 {
		t.Fatalf("create near vm2: %+v %v", v, err)
	}
	if _, err := e.svc.Create(ctx, "p", api.VolumesPost{Name: "a", SizeGiB: 1}, false); kindOf(err) != errs.KindConflict {
		t.Errorf("same name again: %v", err)
	}
	_, err = e.svc.Create(ctx, "p", api.VolumesPost{Name: "b", SizeGiB: 3}, false)
	if kindOf(err) != errs.KindQuotaExceeded || !strings.Contains(err.Error(), "volume_gib") {
		t.Errorf("past volume_gib: %v", err)
	}
	if _, err := e.svc.Create(ctx, "p", api.VolumesPost{Name: "b", SizeGiB: 2}, false); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.Create(ctx, "p", api.VolumesPost{Name: "c", SizeGiB: 0 + 1}, false); kindOf(err) != errs.KindQuotaExceeded {
		t.Errorf("past volumes: %v", err)
	}
	q, _, _ := quota.Get(ctx, e.st, "p")
	if q.Usage.Volumes != 2 || q.Usage.VolumeGiB != 10 {
		t.Errorf("usage %+v", q.Usage)
	}
	// Growing past the quota is refused, and shrinking always.
	if _, err := e.svc.Resize(ctx, "p", "b", 3); kindOf(err) != errs.KindQuotaExceeded {
		t.Errorf("grow past quota: %v", err)
	}
	if _, err := e.svc.Resize(ctx, "p", "b", 1); kindOf(err) != errs.KindInvalid {
		t.Errorf("shrink: %v", err)
	}
}

// The lifecycle as the host's agent drives it: made, attached, refused
// deletion while attached, detached, deleted with its quota.
func TestLifecycleWithAgent(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, unlimited())
	v, err := e.svc.Create(ctx, "p", api.VolumesPost{Name: "data", SizeGiB: 1, Near: "vm1"}, false)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.Attach(ctx, "p", "data", api.VolumeAttach{Instance: "vm1"}); kindOf(err) != errs.KindConflict {
		t.Fatalf("attach while creating: %v", err)
	}
	// Only the agent of the volume's host is heard, and sees it.
	e.report(t, []string{"h2"}, api.VolumeReport{ID: v.ID, Status: "ready", SizeGiB: 1})
	if got, _ := e.svc.Get(ctx, "p", "data"); got.Status != api.VolumeCreating {
		t.Fatalf("another host's report applied: %+v", got)
	}
	if view, _ := e.svc.AgentView(ctx, map[string]bool{"h2": true}, e.inst); len(view.Items) != 0 {
		t.Fatalf("h2 sees h1's volume: %+v", view)
	}
	e.report(t, []string{"h1"}, api.VolumeReport{ID: v.ID, Status: "ready", SizeGiB: 1})
	if got, _ := e.svc.Get(ctx, "p", "data"); got.Status != api.VolumeAvailable || got.HostSizeGiB != 1 {
		t.Fatalf("after the host made it: %+v", got)
	}
	// A local volume attaches only to instances on its host.
	if _, err := e.svc.Attach(ctx, "p", "data", api.VolumeAttach{Instance: "vm2"}); kindOf(err) != errs.KindConflict || !strings.Contains(err.Error(), "lives on host h1") {
		t.Fatalf("attach to another host's instance: %v", err)
	}
	if _, err := e.svc.Attach(ctx, "p", "data", api.VolumeAttach{Instance: "c1"}); kindOf(err) != errs.KindInvalid {
		t.Fatalf("a qcow2 volume into a container: %v", err)
	}
	if _, err := e.svc.Attach(ctx, "p", "data", api.VolumeAttach{Instance: "vm1", Device: "sda"}); kindOf(err) != errs.KindInvalid {
		t.Fatalf("bad device: %v", err)
	}
	got, err := e.svc.Attach(ctx, "p", "data", api.VolumeAttach{Instance: "vm1"})
	if err != nil || got.Attachment == nil || got.Attachment.Device != "vdb" || got.Status != api.VolumeInUse {
		t.Fatalf("attach: %+v %v", got, err)
	}
	view, _ := e.svc.AgentView(ctx, map[string]bool{"h1": true}, e.inst)
	if len(view.Items) != 1 || view.Items[0].Attach == nil || view.Items[0].Attach.InstanceID != "id-vm1" {
		t.Fatalf("view: %+v", view)
	}
	e.report(t, []string{"h1"}, api.VolumeReport{ID: v.ID, Status: "ready", SizeGiB: 1, AttachedTo: "id-vm1"})
	if got, _ := e.svc.Get(ctx, "p", "data"); !got.Attachment.Attached {
		t.Fatalf("attachment not confirmed: %+v", got)
	}
	if _, err := e.svc.Delete(ctx, "p", "data"); kindOf(err) != errs.KindConflict {
		t.Fatalf("delete while attached: %v", err)
	}
	// Detach: the attachment stays until the host let it go.
	if _, err := e.svc.Detach(ctx, "p", "data"); err != nil {
		t.Fatal(err)
	}
	if view, _ := e.svc.AgentView(ctx, map[string]bool{"h1": true}, e.inst); view.Items[0].Attach != nil {
		t.Fatalf("still attached in the view: %+v", view.Items[0])
	}
	if got, _ := e.svc.Get(ctx, "p", "data"); got.Attachment == nil {
		t.Fatalf("attachment gone before the host let go")
	}
	e.report(t, []string{"h1"}, api.VolumeReport{ID: v.ID, Status: "ready", SizeGiB: 1})
	if got, _ := e.svc.Get(ctx, "p", "data"); got.Attachment != nil || got.Status != api.VolumeAvailable {
		t.Fatalf("after detach: %+v", got)
	}
	if _, err := e.svc.Delete(ctx, "p", "data"); err != nil {
		t.Fatal(err)
	}
	if view, _ := e.svc.AgentView(ctx, map[string]bool{"h1": true}, e.inst); !view.Items[0].Delete {
		t.Fatalf("view after delete: %+v", view)
	}
	e.report(t, []string{"h1"}, api.VolumeReport{ID: v.ID, Status: "gone"})
	if _, err := e.svc.Get(ctx, "p", "data"); kindOf(err) != errs.KindNotFound {
		t.Fatalf("record after the host removed it: %v", err)
	}
	q, _, _ := quota.Get(ctx, e.st, "p")
	if q.Usage.Volumes != 0 || q.Usage.VolumeGiB != 0 {
		t.Errorf("usage after delete %+v", q.Usage)
	}
}

// A volume whose instance was terminated is let go by its host and
// becomes available again.
func TestInstanceGoneFreesVolume(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, unlimited())
	v, _ := e.svc.Create(ctx, "p", api.VolumesPost{Name: "fs", SizeGiB: 1, Format: api.VolumeExt4, Near: "c1"}, false)
	e.report(t, []string{"h1"}, api.VolumeReport{ID: v.ID, Status: "ready", SizeGiB: 1})
	if _, err := e.svc.Attach(ctx, "p", "fs", api.VolumeAttach{Instance: "c1", Path: "/proc/x"}); kindOf(err) != errs.KindInvalid {
		t.Fatalf("path under /proc: %v", err)
	}
	if _, err := e.svc.Attach(ctx, "p", "fs", api.VolumeAttach{Instance: "c1", Path: "/a/../etc"}); kindOf(err) != errs.KindInvalid {
		t.Fatalf("path with ..: %v", err)
	}
	got, err := e.svc.Attach(ctx, "p", "fs", api.VolumeAttach{Instance: "c1"})
	if err != nil || got.Attachment.Path != "/data" {
		t.Fatalf("attach: %+v %v", got, err)
	}
	e.report(t, []string{"h1"}, api.VolumeReport{ID: v.ID, Status: "ready", SizeGiB: 1, AttachedTo: "id-c1"})
	delete(e.inst, "c1")
	// The host still has it: nothing changes until it let go.
	e.report(t, []string{"h1"}, api.VolumeReport{ID: v.ID, Status: "ready", SizeGiB: 1, AttachedTo: "id-c1"})
	if got, _ := e.svc.Get(ctx, "p", "fs"); got.Attachment == nil {
		t.Fatal("attachment dropped while the host still has it")
	}
	e.report(t, []string{"h1"}, api.VolumeReport{ID: v.ID, Status: "ready", SizeGiB: 1})
	if got, _ := e.svc.Get(ctx, "p", "fs"); got.Attachment != nil || got.Status != api.VolumeAvailable {
		t.Fatalf("after the instance went: %+v", got)
	}
}

// Snapshots: charged to volume_gib, made by the host, a revert only of a
// detached volume, a copy made where the snapshot is, a volume with
// snapshots kept until they go.
func TestSnapshots(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, api.ResourceCounts{Volumes: -1, VolumeGiB: 4, Snapshots: -1})
	v, _ := e.svc.Create(ctx, "p", api.VolumesPost{Name: "data", SizeGiB: 1, Near: "vm2"}, false)
	if _, err := e.svc.CreateSnapshot(ctx, "p", "data", api.VolumeSnapshotsPost{Name: "s1"}); kindOf(err) != errs.KindConflict {
		t.Fatalf("snapshot of a volume still being made: %v", err)
	}
	h2 := []string{"h2"}
	e.report(t, h2, api.VolumeReport{ID: v.ID, Status: "ready", SizeGiB: 1})
	s1, err := e.svc.CreateSnapshot(ctx, "p", "data", api.VolumeSnapshotsPost{Name: "s1"})
	if err != nil || s1.Status != api.VolumeCreating {
		t.Fatalf("snapshot: %+v %v", s1, err)
	}
	if _, err := e.svc.CreateSnapshot(ctx, "p", "data", api.VolumeSnapshotsPost{Name: "s1"}); kindOf(err) != errs.KindConflict {
		t.Fatalf("same name: %v", err)
	}
	q, _, _ := quota.Get(ctx, e.st, "p")
	if q.Usage.VolumeGiB != 2 {
		t.Fatalf("volume_gib with a snapshot: %d", q.Usage.VolumeGiB)
	}
	view, _ := e.svc.AgentView(ctx, map[string]bool{"h2": true}, e.inst)
	if len(view.Items) != 1 || len(view.Items[0].Snapshots) != 1 || view.Items[0].Snapshots[0].ID != s1.ID {
		t.Fatalf("view: %+v", view)
	}
	e.report(t, h2, api.VolumeReport{ID: v.ID, Status: "ready", SizeGiB: 1, Snapshots: []api.SnapshotReport{{ID: s1.ID, Status: "ready"}}})
	if got, _ := e.svc.GetSnapshot(ctx, "p", "data", "s1"); got.Status != api.VolumeAvailable {
		t.Fatalf("after the host made it: %+v", got)
	}
	// A copy of the snapshot lives where it is.
	if _, err := e.svc.Create(ctx, "p", api.VolumesPost{Name: "copy", SizeGiB: 1, Snapshot: "data/s1", Near: "vm1"}, false); kindOf(err) != errs.KindInvalid {
		t.Fatalf("a copy placed elsewhere: %v", err)
	}
	cp, err := e.svc.Create(ctx, "p", api.VolumesPost{Name: "copy", SizeGiB: 1, Snapshot: "data/s1"}, false)
	if err != nil || cp.Host != "h2" {
		t.Fatalf("copy: %+v %v", cp, err)
	}
	if _, err := e.svc.DeleteSnapshot(ctx, "p", "data", "s1"); kindOf(err) != errs.KindConflict {
		t.Fatalf("delete a snapshot a volume is made from: %v", err)
	}
	e.report(t, h2, api.VolumeReport{ID: cp.ID, Status: "ready", SizeGiB: 1})
	// Revert: only detached.
	if _, err := e.svc.Attach(ctx, "p", "data", api.VolumeAttach{Instance: "vm2"}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.Revert(ctx, "p", "data", "s1"); kindOf(err) != errs.KindConflict {
		t.Fatalf("revert while attached: %v", err)
	}
	e.svc.Detach(ctx, "p", "data") // never attached on the host: at once
	got, err := e.svc.Revert(ctx, "p", "data", "s1")
	if err != nil || got.Status != api.VolumeReverting {
		t.Fatalf("revert: %+v %v", got, err)
	}
	view, _ = e.svc.AgentView(ctx, map[string]bool{"h2": true}, e.inst)
	var rv *api.AgentRevert
	for _, it := range view.Items {
		if it.ID == v.ID {
			rv = it.Revert
		}
	}
	if rv == nil || rv.Snapshot != s1.ID {
		t.Fatalf("revert not in the view: %+v", view)
	}
	if _, err := e.svc.Attach(ctx, "p", "data", api.VolumeAttach{Instance: "vm2"}); kindOf(err) != errs.KindConflict {
		t.Fatalf("attach while reverting: %v", err)
	}
	e.report(t, h2, api.VolumeReport{ID: v.ID, Status: "ready", SizeGiB: 1, Reverted: rv.ID})
	if got, _ := e.svc.Get(ctx, "p", "data"); got.Status != api.VolumeAvailable {
		t.Fatalf("after the revert: %+v", got)
	}
	if _, err := e.svc.Delete(ctx, "p", "data"); kindOf(err) != errs.KindConflict {
		t.Fatalf("delete a volume with snapshots: %v", err)
	}
	if _, err := e.svc.DeleteSnapshot(ctx, "p", "data", "s1"); err != nil {
		t.Fatal(err)
	}
	e.report(t, h2, api.VolumeReport{ID: v.ID, Status: "ready", SizeGiB: 1, Snapshots: []api.SnapshotReport{{ID: s1.ID, Status: "gone"}}})
	if _, err := e.svc.GetSnapshot(ctx, "p", "data", "s1"); kindOf(err) != errs.KindNotFound {
		t.Fatalf("snapshot after its host removed it: %v", err)
	}
	q, _, _ = quota.Get(ctx, e.st, "p")
	if q.Usage.VolumeGiB != 2 {
		t.Fatalf("volume_gib after the snapshot went: %d", q.Usage.VolumeGiB)
	}
}

// The schedule loop starts a backup when one is due, never two at once,
// and keeps only the newest.
// readyVolume is volume data of project p, ready on h1, in a service
// whose clock is *now.
func readyVolume(t *testing.T, now *time.Time) *env {
	e := newEnv(t, unlimited())
	e.svc.now = func() time.Time { return *now }
	v, _ := e.svc.Create(context.Background(), "p", api.VolumesPost{Name: "data", SizeGiB: 1, Near: "vm1"}, false)
	e.report(t, []string{"h1"}, api.VolumeReport{ID: v.ID, Status: "ready", SizeGiB: 1})
	return e
}

func TestBackupSchedule(t *testing.T) {
	ctx := context.Background()
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	e := readyVolume(t, &now)
	if _, err := e.svc.SetSchedule(ctx, "p", "data", time.Second, 2); kindOf(err) != errs.KindInvalid {
		t.Fatalf("every second: %v", err)
	}
	if _, err := e.svc.SetSchedule(ctx, "p", "data", time.Hour, 2); err != nil {
		t.Fatal(err)
	}
	names := func() []string {
		bs, _ := e.svc.ListBackups(ctx, "p")
		var out []string
		for _, b := range bs {
			out = append(out, b.Name+":"+b.Status)
		}
		return out
	}
	finish := func() {
		bs, _ := e.svc.ListBackups(ctx, "p")
		for _, b := range bs {
			if b.Status == api.VolumeCreating {
				if _, err := e.svc.FinishBackup(ctx, map[string]bool{"h1": true}, e.inst, b.ID, api.BackupManifest{Chunks: make([]string, 256)}); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	if err := e.svc.schedulePass(ctx); err != nil {
		t.Fatal(err)
	}
	now = now.Add(2 * time.Hour)
	e.svc.schedulePass(ctx) // one is being made: no second
	if got := names(); len(got) != 1 {
		t.Fatalf("after two passes with one being made: %v", got)
	}
	for i := 0; i < 3; i++ {
		finish()
		now = now.Add(30 * time.Minute)
		e.svc.schedulePass(ctx) // not due yet
		now = now.Add(31 * time.Minute)
		e.svc.schedulePass(ctx)
	}
	finish()
	e.svc.schedulePass(ctx)
	got := names()
	// Made at 00:00, 02:30, 03:31 and 04:32 (each once the newest was an
	// hour old and none was being made); the newest two kept.
	if len(got) != 2 || got[0] != "auto-20260101-033100:available" || got[1] != "auto-20260101-043200:available" {
		t.Fatalf("kept: %v", got)
	}
}

// Scheduled backups that fail are pruned too, past the newest two (kept
// so the user can read why): a volume whose backups keep failing does
// not fill the backup quota with failures, and its good backups stay.
func TestBackupScheduleDropsOldFailures(t *testing.T) {
	ctx := context.Background()
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	e := readyVolume(t, &now)
	if _, err := e.svc.SetSchedule(ctx, "p", "data", time.Hour, 3); err != nil {
		t.Fatal(err)
	}
	// The first succeeds, the next six fail; an hour apart.
	for i := range 7 {
		if err := e.svc.schedulePass(ctx); err != nil {
			t.Fatal(err)
		}
		bs, _ := e.svc.ListBackups(ctx, "p")
		for _, b := range bs {
			if b.Status != api.VolumeCreating {
				continue
			}
			m := api.BackupManifest{Chunks: make([]string, 256)}
			if i > 0 {
				m = api.BackupManifest{Error: "copying the volume: disk gone"}
			}
			if _, err := e.svc.FinishBackup(ctx, map[string]bool{"h1": true}, e.inst, b.ID, m); err != nil {
				t.Fatal(err)
			}
		}
		now = now.Add(time.Hour)
	}
	if err := e.svc.schedulePass(ctx); err != nil { // prunes (and starts the eighth)
		t.Fatal(err)
	}
	bs, _ := e.svc.ListBackups(ctx, "p")
	var got []string
	for _, b := range bs {
		got = append(got, b.Name+":"+b.Status)
	}
	want := "auto-20260101-000000:available auto-20260101-050000:error auto-20260101-060000:error auto-20260101-070000:creating"
	if strings.Join(got, " ") != want {
		t.Fatalf("backups:\n got %v\nwant %s", got, want)
	}
}
