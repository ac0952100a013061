package volumes

import (
	"context"
	"strings"
	"testing"

	"github.com/kumocloud/kumo/api"
)

// A container's root filesystem backup is asked of its host only while
// the container is there; one whose container went before it was sent
// ends in error (the server's volume loop), and so does its instance
// backup, saying why.
func TestRootBackupOfAGoneContainer(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, unlimited())
	c := api.Instance{Meta: api.Meta{ID: "id-c1", Name: "c1"}, Type: api.TypeContainer, State: api.StateRunning, Host: "h1", Size: api.Size{DiskGiB: 2}}
	e.inst["c1"] = c
	ib, err := e.svc.CreateInstanceBackup(ctx, "p", c, api.InstanceBackupsPost{Name: "ib"})
	if err != nil {
		t.Fatal(err)
	}
	if ib.RootBackup != "ib-root" || ib.SizeGiB != 2 || ib.Status != api.VolumeCreating {
		t.Fatalf("instance backup %+v", ib)
	}
	roots := func(host string) []api.AgentRootBackup {
		v, err := e.svc.AgentView(ctx, map[string]bool{host: true}, e.inst)
		if err != nil {
			t.Fatal(err)
		}
		return v.Roots
	}
	if r := roots("h1"); len(r) != 1 || r[0].InstanceID != "id-c1" || r[0].Format != api.VolumeExt4 {
		t.Fatalf("h1's roots: %+v", r)
	}
	if r := roots("h2"); len(r) != 0 {
		t.Fatalf("h2's roots: %+v", r)
	}
	if err := e.svc.schedulePass(ctx); err != nil {
		t.Fatal(err)
	}
	if ib, _ = e.svc.GetInstanceBackup(ctx, "p", "ib"); ib.Status != api.VolumeCreating {
		t.Fatalf("failed while its container lives: %+v", ib)
	}
	delete(e.inst, "c1")
	if r := roots("h1"); len(r) != 0 {
		t.Fatalf("h1 asked for the root of a gone container: %+v", r)
	}
	if err := e.svc.schedulePass(ctx); err != nil {
		t.Fatal(err)
	}
	if ib, _ = e.svc.GetInstanceBackup(ctx, "p", "ib"); ib.Status != api.VolumeError || !strings.Contains(ib.Error, "went before its host sent its root disk") {
		t.Fatalf("after its container went: %+v", ib)
	}
}
