package volumes

import (
	"context"
	"errors"
	"testing"

	"github.com/kumocloud/kumo/api"
	"github.com/kumocloud/kumo/internal/errs"
	"github.com/kumocloud/kumo/internal/quota"
)

// plant writes a boot plan as compute does, in one transaction.
func (e *env) plant(t *testing.T, name string, req api.InstancesPost) BootPlan {
	t.Helper()
	ctx := context.Background()
	p, err := e.svc.PlanBoot(ctx, "p", BootInstance{ID: "id-" + name, Name: name, Type: api.TypeVM}, req)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := quota.Reserve(ctx, e.st, "p", p.Counts, p.Conds, p.Ops); err != nil {
		t.Fatal(err)
	}
	return p
}

// A new root volume has no host until its instance is placed; its
// instance's host makes it and it stays there; it is deleted (quota back)
// when the instance goes, unless kept.
func TestRootVolumeLifecycle(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, unlimited())
	p := e.plant(t, "vm9", api.InstancesPost{Image: "disk", RootVolumeSizeGiB: 3})
	if p.Volume != "vm9-root" || p.Host != "" || !p.Local || p.Counts.Volumes != 1 || p.Counts.VolumeGiB != 3 {
		t.Fatalf("plan %+v", p)
	}
	view := func(host string) []api.AgentVolume {
		v, err := e.svc.AgentView(ctx, map[string]bool{host: true}, e.inst)
		if err != nil {
			t.Fatal(err)
		}
		return v.Items
	}
	e.inst["vm9"] = api.Instance{Meta: api.Meta{ID: "id-vm9", Name: "vm9"}, Type: api.TypeVM, State: api.StatePending}
	if vs := view("h1"); len(vs) != 0 {
		t.Fatalf("h1 handles a root volume whose instance is not placed: %+v", vs)
	}
	e.inst["vm9"] = api.Instance{Meta: api.Meta{ID: "id-vm9", Name: "vm9"}, Type: api.TypeVM, State: api.StateProlog, Host: "h2"}
	if vs := view("h1"); len(vs) != 0 {
		t.Fatalf("h1 handles vm9's root volume: %+v", vs)
	}
	vs := view("h2")
	if len(vs) != 1 || vs[0].Attach == nil || vs[0].Attach.Device != api.BootDevice || vs[0].ImageSHA256 != "abc" || vs[0].SizeGiB != 3 {
		t.Fatalf("h2's view: %+v", vs)
	}
	report := func(host string, rep api.VolumeReport) {
		t.Helper()
		if err := e.svc.Report(ctx, map[string]bool{host: true}, e.inst, []api.VolumeReport{rep}); err != nil {
			t.Fatal(err)
		}
	}
	report("h2", api.VolumeReport{ID: p.ID, Status: "ready", SizeGiB: 3, AttachedTo: "id-vm9"})
	v, _ := e.svc.Get(ctx, "p", "vm9-root")
	if v.Host != "h2" || v.Status != api.VolumeInUse || !v.Attachment.Attached || !v.DeleteOnTerminate {
		t.Fatalf("made: %+v", v)
	}
	if _, err := e.svc.Detach(ctx, "p", "vm9-root"); kindOf(err) != errs.KindConflict {
		t.Fatalf("detach of a root disk: %v", err)
	}
	// The instance is terminated: its host lets go, the volume goes.
	delete(e.inst, "vm9")
	report("h2", api.VolumeReport{ID: p.ID, Status: "ready", SizeGiB: 3})
	if v, _ = e.svc.Get(ctx, "p", "vm9-root"); v.Status != api.VolumeDeleting || v.Attachment != nil {
		t.Fatalf("after terminate: %+v", v)
	}
	report("h2", api.VolumeReport{ID: p.ID, Status: "gone"})
	if _, err := e.svc.Get(ctx, "p", "vm9-root"); kindOf(err) != errs.KindNotFound {
		t.Fatalf("vm9-root still there: %v", err)
	}
	if q, _, _ := quota.Get(ctx, e.st, "p"); q.Usage.Volumes != 0 || q.Usage.VolumeGiB != 0 {
		t.Fatalf("usage %+v", q.Usage)
	}

	// Kept: detached and available after terminate, and it boots another.
	p = e.plant(t, "vm8", api.InstancesPost{Image: "disk", RootVolumeSizeGiB: 2, KeepRootVolume: true})
	e.inst["vm8"] = api.Instance{Meta: api.Meta{ID: "id-vm8", Name: "vm8"}, Type: api.TypeVM, State: api.StateRunning, Host: "h1"}
	report("h1", api.VolumeReport{ID: p.ID, Status: "ready", SizeGiB: 2, AttachedTo: "id-vm8"})
	delete(e.inst, "vm8")
	report("h1", api.VolumeReport{ID: p.ID, Status: "ready", SizeGiB: 2})
	if v, _ = e.svc.Get(ctx, "p", "vm8-root"); v.Status != api.VolumeAvailable || v.Attachment != nil || v.Host != "h1" {
		t.Fatalf("kept: %+v", v)
	}
	p = e.plant(t, "vm7", api.InstancesPost{BootVolume: "vm8-root"})
	if p.Host != "h1" || p.Image != "p/disk" || p.Counts.Volumes != 0 {
		t.Fatalf("boot from the kept volume: %+v", p)
	}

	// A root volume never made, its instance gone before placement, is
	// swept by the server's loop.
	p = e.plant(t, "vm6", api.InstancesPost{Image: "disk", RootVolumeSizeGiB: 2, KeepRootVolume: true})
	e.inst["vm6"] = api.Instance{Meta: api.Meta{ID: "id-vm6", Name: "vm6"}, Type: api.TypeVM, State: api.StatePending}
	if err := e.svc.schedulePass(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.Get(ctx, "p", "vm6-root"); err != nil {
		t.Fatalf("swept while its instance waits: %v", err)
	}
	delete(e.inst, "vm6")
	if err := e.svc.schedulePass(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.Get(ctx, "p", "vm6-root"); kindOf(err) != errs.KindNotFound {
		t.Fatalf("vm6-root not swept: %v", err)
	}
}

// Bad boot volume requests are refused naming the field.
func TestPlanBootRefuses(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, unlimited())
	e.svc.images.(fakeImages)["kernel-disk"] = api.Image{Meta: api.Meta{Name: "kernel-disk"}, Project: "p", Kind: api.KindVMKernel, Format: "tar.gz", Status: api.ImageActive, VirtualSize: 2 << 30}
	if _, err := e.svc.Create(ctx, "p", api.VolumesPost{Name: "files", SizeGiB: 1, Format: api.VolumeExt4}, false); err != nil {
		t.Fatal(err)
	}
	vm := BootInstance{ID: "id-x", Name: "x", Type: api.TypeVM}
	for _, tc := range []struct {
		what  string
		in    BootInstance
		req   api.InstancesPost
		field string
	}{
		{"a container", BootInstance{ID: "id-c", Name: "c", Type: api.TypeContainer}, api.InstancesPost{Image: "rootfs", RootVolumeSizeGiB: 1}, "root_volume_size_gib"},
		{"too small for the image", vm, api.InstancesPost{Image: "disk", RootVolumeSizeGiB: 1}, "root_volume_size_gib"},
		{"too small for a kernel image's disk", vm, api.InstancesPost{Image: "kernel-disk", RootVolumeSizeGiB: 1}, "root_volume_size_gib"},
		{"a rootfs image", vm, api.InstancesPost{Image: "rootfs", RootVolumeSizeGiB: 4}, "image"},
		{"an ext4 volume", vm, api.InstancesPost{BootVolume: "files"}, "boot_volume"},
		{"no such volume", vm, api.InstancesPost{BootVolume: "nope"}, "boot_volume"},
		{"a size out of range", vm, api.InstancesPost{Image: "disk", RootVolumeSizeGiB: -1}, "root_volume_size_gib"},
	} {
		_, err := e.svc.PlanBoot(ctx, "p", tc.in, tc.req)
		var ee *errs.Error
		if !errors.As(err, &ee) || ee.Field != tc.field {
			t.Errorf("%s: %v, want an error naming %s", tc.what, err, tc.field)
		}
	}
}

// A vm-kernel image carrying its own disk gives its root volume that
// disk: the agent is told the image's bytes and that they are a vm-kernel
// tarball (it takes disk.qcow2 out of it).
func TestRootVolumeFromKernelImageDisk(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, unlimited())
	e.svc.images.(fakeImages)["kernel-disk"] = api.Image{Meta: api.Meta{Name: "kernel-disk"}, Project: "p", Kind: api.KindVMKernel, Format: "tar.gz", SHA256: "def", Status: api.ImageActive, VirtualSize: 2 << 30}
	p := e.plant(t, "deb", api.InstancesPost{Image: "kernel-disk", RootVolumeSizeGiB: 2})
	if p.Volume != "deb-root" || p.Image != "p/kernel-disk" || p.Counts.VolumeGiB != 2 {
		t.Fatalf("plan %+v", p)
	}
	e.inst["deb"] = api.Instance{Meta: api.Meta{ID: "id-deb", Name: "deb"}, Type: api.TypeVM, State: api.StateProlog, Host: "h1"}
	v, err := e.svc.AgentView(ctx, map[string]bool{"h1": true}, e.inst)
	if err != nil {
		t.Fatal(err)
	}
	if len(v.Items) != 1 || v.Items[0].ImageSHA256 != "def" || v.Items[0].ImageFormat != "tar.gz" || v.Items[0].SizeGiB != 2 {
		t.Fatalf("h1's view: %+v", v.Items)
	}
}
