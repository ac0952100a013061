package volumes

import (
	"context"
	"strings"
	"testing"

	"github.com/kumocloud/kumo/api"
	"github.com/kumocloud/kumo/internal/errs"
)

func viewOf(t *testing.T, svc *Service, e *env, host string) map[string]api.AgentVolume {
	t.Helper()
	view, err := svc.AgentView(context.Background(), map[string]bool{host: true}, e.inst)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]api.AgentVolume{}
	for _, v := range view.Items {
		if _, dup := out[v.ID]; dup {
			t.Fatalf("%s sees volume %s twice: %+v", host, v.ID, view.Items)
		}
		out[v.ID] = v
	}
	return out
}

// TestMoveRefusals: a move is refused clearly for what cannot or need
// not move, and nothing changes.
func TestMoveRefusals(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, unlimited())
	e.svc.hosts = append(e.svc.hosts.(fakeHosts), api.Host{Meta: api.Meta{Name: "h3"}, Enabled: true, State: api.HostOffline})
	v, _ := e.svc.Create(ctx, "p", api.VolumesPost{Name: "data", SizeGiB: 1, Host: "h1"}, true)
	e.report(t, []string{"h1"}, api.VolumeReport{ID: v.ID, Status: "ready", SizeGiB: 1})
	if _, err := e.svc.CreatePool(ctx, api.StoragePoolsPost{Name: "nfs", Type: api.PoolSharedDir, Path: "/srv/nfs"}); err != nil {
		t.Fatal(err)
	}
	sv, _ := e.svc.Create(ctx, "p", api.VolumesPost{Name: "shared", SizeGiB: 1, Host: "h1", Pool: "nfs"}, true)
	e.report(t, []string{"h1"}, api.VolumeReport{ID: sv.ID, Status: "ready", SizeGiB: 1})
	cases := []struct {
		name, vol string
		req       api.VolumeMove
		admin     bool
		kind      errs.Kind
		says      string
	}{
		{"a tenant naming a host", "data", api.VolumeMove{Host: "h2"}, false, errs.KindForbidden, "cloud admin"},
		{"no target", "data", api.VolumeMove{}, true, errs.KindInvalid, "host"},
		{"unknown host", "data", api.VolumeMove{Host: "nope"}, true, errs.KindInvalid, `no host "nope"`},
		{"its own host", "data", api.VolumeMove{Host: "h1"}, true, errs.KindInvalid, "already"},
		{"offline host", "data", api.VolumeMove{Host: "h3"}, true, errs.KindConflict, "OFFLINE"},
		{"shared pool", "shared", api.VolumeMove{Host: "h2"}, true, errs.KindConflict, "no move needed"},
		{"unknown volume", "nope", api.VolumeMove{Host: "h2"}, true, errs.KindNotFound, "not found"},
	}
	for _, c := range cases {
		_, err := e.svc.Move(ctx, "p", c.vol, c.req, c.admin)
		if kindOf(err) != c.kind || !strings.Contains(err.Error(), c.says) {
			t.Errorf("%s: %v", c.name, err)
		}
	}
	if _, err := e.svc.Attach(ctx, "p", "data", api.VolumeAttach{Instance: "vm1"}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.Move(ctx, "p", "data", api.VolumeMove{Near: "vm2"}, false); kindOf(err) != errs.KindConflict || !strings.Contains(err.Error(), "detach") {
		t.Errorf("an attached volume: %v", err)
	}
	if got, _ := e.svc.Get(ctx, "p", "data"); got.Host != "h1" || got.Status == api.VolumeMoving {
		t.Errorf("after the refusals: %+v", got)
	}
	if bs, _ := e.svc.ListBackups(ctx, "p"); len(bs) != 0 {
		t.Errorf("refused moves left backups: %+v", bs)
	}
}

// TestMove: a move goes through its steps as the two agents report,
// each step surviving a server restart (a new service on the same
// store); the volume is on one host in the store at every moment, its
// old copy is removed, the move's backup goes.
func TestMove(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, unlimited())
	restart := func() {
		dir := e.svc.dir
		e.svc = New(e.st, e.svc.images, e.inst, e.svc.hosts, e.svc.now)
		e.svc.SetBackupDir(dir)
	}
	v, _ := e.svc.Create(ctx, "p", api.VolumesPost{Name: "data", SizeGiB: 1, Near: "vm1"}, false)
	e.report(t, []string{"h1"}, api.VolumeReport{ID: v.ID, Status: "ready", SizeGiB: 1})
	mv, err := e.svc.Move(ctx, "p", "data", api.VolumeMove{Near: "vm2"}, false)
	if err != nil {
		t.Fatal(err)
	}
	if mv.Status != api.VolumeMoving || mv.MovingTo != "h2" || mv.Host != "h1" {
		t.Fatalf("moving: %+v", mv)
	}
	if _, err := e.svc.Move(ctx, "p", "data", api.VolumeMove{Near: "vm2"}, false); kindOf(err) != errs.KindConflict {
		t.Errorf("a second move: %v", err)
	}
	for what, err := range map[string]error{
		"attach": func() error { _, err := e.svc.Attach(ctx, "p", "data", api.VolumeAttach{Instance: "vm1"}); return err }(),
		"delete": func() error { _, err := e.svc.Delete(ctx, "p", "data"); return err }(),
		"resize": func() error { _, err := e.svc.Resize(ctx, "p", "data", 2); return err }(),
	} {
		if kindOf(err) != errs.KindConflict {
			t.Errorf("%s while moving: %v", what, err)
		}
	}
	bs, _ := e.svc.ListBackups(ctx, "p")
	if len(bs) != 1 || !strings.HasPrefix(bs[0].Name, "move-") {
		t.Fatalf("the move's backup: %+v", bs)
	}
	if err := e.svc.DeleteBackup(ctx, "p", bs[0].Name); kindOf(err) != errs.KindConflict {
		t.Errorf("deleting the move's backup: %v", err)
	}
	restart()
	// 1. The old home sends the backup; the target sees nothing yet.
	if got := viewOf(t, e.svc, e, "h1")[v.ID]; len(got.Backups) != 1 || got.Backups[0] != bs[0].ID || got.Delete {
		t.Fatalf("h1 is not asked to send: %+v", got)
	}
	if got, ok := viewOf(t, e.svc, e, "h2")[v.ID]; ok {
		t.Fatalf("h2 sees the volume before its backup is made: %+v", got)
	}
	e.report(t, []string{"h1"}, api.VolumeReport{ID: v.ID, Status: "ready", SizeGiB: 1})
	if _, err := e.svc.FinishBackup(ctx, map[string]bool{"h1": true}, e.inst, bs[0].ID, api.BackupManifest{Chunks: make([]string, 256)}); err != nil {
		t.Fatal(err)
	}
	restart()
	// 2. The target restores it (and may read the backup); the store
	// still names the old home until it says it is made.
	got := viewOf(t, e.svc, e, "h2")[v.ID]
	if got.FromBackup != bs[0].ID || got.Host != "h2" || got.Delete {
		t.Fatalf("h2 is not asked to restore: %+v", got)
	}
	if _, err := e.svc.BackupManifest(ctx, map[string]bool{"h2": true}, e.inst, bs[0].ID, 0, 0); err != nil {
		t.Fatalf("h2 reading the move's backup: %v", err)
	}
	if got := viewOf(t, e.svc, e, "h1")[v.ID]; got.Delete {
		t.Fatalf("h1 deletes before h2 has it: %+v", got)
	}
	e.report(t, []string{"h2"}, api.VolumeReport{ID: v.ID, Status: "creating"})
	if got, _ := e.svc.Get(ctx, "p", "data"); got.Host != "h1" || got.Status != api.VolumeMoving {
		t.Fatalf("before h2 made it: %+v", got)
	}
	e.report(t, []string{"h2"}, api.VolumeReport{ID: v.ID, Status: "ready", SizeGiB: 1})
	now, _ := e.svc.Get(ctx, "p", "data")
	if now.Host != "h2" || now.Status != api.VolumeAvailable || now.MovingTo != "" {
		t.Fatalf("after h2 made it: %+v", now)
	}
	restart()
	// 3. The old home removes its copy; until it says so, the move is
	// not over (no second move), but the volume is usable on h2.
	if got := viewOf(t, e.svc, e, "h1")[v.ID]; !got.Delete || got.Host != "h1" {
		t.Fatalf("h1 is not asked to remove its copy: %+v", got)
	}
	if got := viewOf(t, e.svc, e, "h2")[v.ID]; got.Delete || got.Host != "h2" {
		t.Fatalf("h2's view after the switch: %+v", got)
	}
	if _, err := e.svc.Move(ctx, "p", "data", api.VolumeMove{Near: "vm1"}, false); kindOf(err) != errs.KindConflict {
		t.Errorf("a move back before the old copy went: %v", err)
	}
	e.report(t, []string{"h1"}, api.VolumeReport{ID: v.ID, Status: "gone"})
	if got, err := e.svc.Get(ctx, "p", "data"); err != nil || got.Host != "h2" || got.Status != api.VolumeAvailable {
		t.Fatalf("after the old copy went: %+v %v", got, err)
	}
	if _, ok := viewOf(t, e.svc, e, "h1")[v.ID]; ok {
		t.Fatal("h1 still sees the volume")
	}
	if bs, _ := e.svc.ListBackups(ctx, "p"); len(bs) != 0 {
		t.Errorf("the move's backup stayed: %+v", bs)
	}
	// And it moves back.
	if _, err := e.svc.Move(ctx, "p", "data", api.VolumeMove{Near: "vm1"}, false); err != nil {
		t.Fatal(err)
	}
}

// TestMoveFails: a backup the old home cannot make, or a restore the
// target cannot do, ends the move with the volume where it was.
func TestMoveFails(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, unlimited())
	v, _ := e.svc.Create(ctx, "p", api.VolumesPost{Name: "data", SizeGiB: 1, Near: "vm1"}, false)
	e.report(t, []string{"h1"}, api.VolumeReport{ID: v.ID, Status: "ready", SizeGiB: 1})
	for _, step := range []string{"backup", "restore", "host removed"} {
		if _, err := e.svc.Move(ctx, "p", "data", api.VolumeMove{Near: "vm2"}, false); err != nil {
			t.Fatal(err)
		}
		bs, _ := e.svc.ListBackups(ctx, "p")
		if step == "backup" {
			e.svc.FinishBackup(ctx, map[string]bool{"h1": true}, e.inst, bs[0].ID, api.BackupManifest{Error: "disk on fire"})
			e.report(t, []string{"h1"}, api.VolumeReport{ID: v.ID, Status: "ready", SizeGiB: 1})
		} else if step == "restore" {
			e.svc.FinishBackup(ctx, map[string]bool{"h1": true}, e.inst, bs[0].ID, api.BackupManifest{Chunks: make([]string, 256)})
			e.report(t, []string{"h2"}, api.VolumeReport{ID: v.ID, Status: "error", Error: "no room"})
			// h2 removes what it may have made before the volume moves
			// again.
			if got := viewOf(t, e.svc, e, "h2")[v.ID]; !got.Delete || got.FromBackup != "" {
				t.Fatalf("h2 is not asked to remove its copy: %+v", got)
			}
			if _, err := e.svc.Move(ctx, "p", "data", api.VolumeMove{Near: "vm2"}, false); kindOf(err) != errs.KindConflict {
				t.Fatalf("a move before h2 removed its copy: %v", err)
			}
			e.report(t, []string{"h2"}, api.VolumeReport{ID: v.ID, Status: "gone"})
		} else {
			hosts := e.svc.hosts
			e.svc.hosts = fakeHosts{hosts.(fakeHosts)[0]}
			e.report(t, []string{"h1"}, api.VolumeReport{ID: v.ID, Status: "ready", SizeGiB: 1})
			e.svc.hosts = hosts
		}
		got, _ := e.svc.Get(ctx, "p", "data")
		if got.Host != "h1" || got.Status != api.VolumeAvailable || !strings.Contains(got.Error, "move to host h2 failed") {
			t.Fatalf("%s failed: %+v", step, got)
		}
		if _, ok := viewOf(t, e.svc, e, "h2")[v.ID]; ok {
			t.Fatalf("%s failed: h2 still sees the volume (its copy would stay)", step)
		}
		if bs, _ := e.svc.ListBackups(ctx, "p"); len(bs) != 0 {
			t.Errorf("%s failed: the move's backup stayed: %+v", step, bs)
		}
	}
}
