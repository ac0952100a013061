package driver

import (
	"context"
	"errors"
	"io"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/kumocloud/kumo/api"
)

// fake runs one kind of instance on host "h"; it records what it has.
type fake struct {
	kind     string
	caps     Capability
	have     map[string]bool
	statuses int
	execs    int
	down     bool
}

func (f *fake) Name() string               { return f.kind }
func (f *fake) Capabilities() Capabilities { return Same(f.caps, f.kind) }
func (f *fake) Sync() error                { return nil }
func (f *fake) Exec(context.Context, string, []string, io.Writer) (int, error) {
	f.execs++
	return 0, nil
}
func (f *fake) HostUp(string) bool { return !f.down }
func (f *fake) Hosts(context.Context) ([]api.HostSpec, error) {
	return []api.HostSpec{{Name: "h", Kinds: []string{f.kind}, Capacity: api.Size{VCPUs: 2, MemoryMiB: 1024}, Attributes: map[string]string{"ARCH": "x86_64", f.kind: "yes"}}}, nil
}
func (f *fake) Prepare(_ context.Context, s Spec) error  { f.have[s.ID] = true; return nil }
func (f *fake) Start(context.Context, Spec) error        { return nil }
func (f *fake) Stop(context.Context, string, bool) error { return nil }
func (f *fake) Suspend(context.Context, string) error    { return nil }
func (f *fake) Resume(context.Context, string) error     { return nil }
func (f *fake) Reboot(context.Context, string) error     { return nil }
func (f *fake) Save(context.Context, string) error       { return nil }
func (f *fake) Cleanup(_ context.Context, id string, _ bool) error {
	delete(f.have, id)
	return nil
}
func (f *fake) Status(_ context.Context, id string) (Status, error) {
	f.statuses++
	if !f.have[id] {
		return Status{}, ErrNotFound
	}
	return Status{ID: id, State: Prepared}, nil
}
func (f *fake) Recover(context.Context) ([]Status, error) { return nil, nil }
func (f *fake) Has(id string) bool                        { return f.have[id] }

func TestCombine(t *testing.T) {
	ctx := context.Background()
	ct, vm := &fake{kind: api.TypeContainer, caps: CapExec | CapNetworks, have: map[string]bool{}}, &fake{kind: api.TypeVM, caps: CapNetworks, have: map[string]bool{}}
	d := Combine(ct, vm)
	hs, err := d.Hosts(ctx)
	if err != nil || len(hs) != 1 || len(hs[0].Kinds) != 2 || hs[0].Capacity.MemoryMiB != 1024 || hs[0].Attributes["vm"] != "yes" || hs[0].Attributes["container"] != "yes" {
		t.Fatalf("one machine should be one host with both kinds, capacity once: %+v %v", hs, err)
	}
	if err := d.Prepare(ctx, Spec{ID: "v", Type: api.TypeVM}); err != nil || !vm.have["v"] || ct.have["v"] {
		t.Fatalf("a VM went to the wrong driver: %v", err)
	}
	if err := d.Prepare(ctx, Spec{ID: "c", Type: api.TypeContainer}); err != nil || !ct.have["c"] {
		t.Fatalf("a container went to the wrong driver: %v", err)
	}
	if err := d.Prepare(ctx, Spec{ID: "x", Type: "unikernel"}); err == nil {
		t.Fatal("a kind no driver runs was accepted")
	}
	if st, err := d.Status(ctx, "v"); err != nil || st.ID != "v" || ct.statuses != 0 {
		t.Fatalf("Status(v) = %+v %v; the container driver was asked %d times (Has should answer)", st, err, ct.statuses)
	}
	if err := d.Stop(ctx, "gone", false); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Stop of an unknown instance: %v", err)
	}
	// Capabilities per type: each driver's own for the type it runs.
	if caps := d.Capabilities(); len(caps) != 2 || caps[api.TypeContainer] != CapExec|CapNetworks || caps[api.TypeVM] != CapNetworks {
		t.Fatalf("Capabilities = %v", caps)
	}
	// Exec is offered (a container can), and goes to the driver of the
	// instance: the VM's says it cannot, though it has an Exec method.
	ex, err := Feature[Execer](d)
	if err != nil {
		t.Fatalf("Feature[Execer] of container+vm: %v", err)
	}
	if _, err := ex.Exec(ctx, "v", []string{"true"}, io.Discard); err == nil || err.Error() != "the vm driver cannot run commands inside an instance (VMs have no guest agent: use the console)" || vm.execs != 0 {
		t.Fatalf("Exec on a driver without it: %v (%d calls)", err, vm.execs)
	}
	if _, err := ex.Exec(ctx, "c", []string{"true"}, io.Discard); err != nil || ct.execs != 1 {
		t.Fatalf("Exec in a container: %v (%d calls)", err, ct.execs)
	}
	// Nothing declares a snapshot or hosts that go down.
	if _, err := Feature[Snapshotter](d); err == nil || err.Error() != "the container,vm driver cannot snapshot disks" {
		t.Fatalf("Feature[Snapshotter]: %v", err)
	}
	if _, err := Feature[HostHealth](d); err == nil {
		t.Fatal("Feature[HostHealth] though no driver loses hosts")
	}
	if err := d.Cleanup(ctx, "v", false); err != nil || vm.have["v"] {
		t.Fatalf("Cleanup: %v", err)
	}
}

// TestFeature: a feature is handed out only when declared, whatever
// methods the driver has.
func TestFeature(t *testing.T) {
	f := &fake{kind: api.TypeContainer, have: map[string]bool{}}
	if _, err := Feature[Execer](f); err == nil || !strings.Contains(err.Error(), "the container driver cannot run commands inside an instance") {
		t.Fatalf("an undeclared exec: %v", err)
	}
	f.caps = CapExec | CapHostHealth
	if _, err := Feature[Execer](f); err != nil {
		t.Fatalf("a declared exec: %v", err)
	}
	if _, err := Feature[Consoler](Driver(&fake{kind: "x", caps: CapConsole})); err == nil || !strings.Contains(err.Error(), "declares console but does not implement it") {
		t.Fatalf("a declared console without the method: %v", err)
	}
	// Hosts lost: a combined host is down when a driver that can lose
	// hosts says so.
	vm := &fake{kind: api.TypeVM, have: map[string]bool{}}
	d := Combine(f, vm)
	if hh, err := Feature[HostHealth](d); err != nil || !hh.HostUp("h") {
		t.Fatalf("HostUp of a host up: %v", err)
	}
	f.down = true
	if hh, _ := Feature[HostHealth](d); hh.HostUp("h") {
		t.Fatal("a host down is up")
	}
	if got := (CapExec | CapSnapshot).String(); got != "exec,snapshot" {
		t.Errorf("String = %q", got)
	}
}

func TestAttribute(t *testing.T) {
	long := strings.Repeat("é", 200) // 400 bytes
	if got := Attribute("probe failed: \x1b[31mno ready line\x07 " + long); len(got) > 255 || strings.ContainsAny(got, "\x1b\x07") || !strings.HasPrefix(got, "probe failed: [31mno ready line ") || !utf8.ValidString(got) {
		t.Fatalf("Attribute = %q (%d bytes)", got, len(got))
	}
}
