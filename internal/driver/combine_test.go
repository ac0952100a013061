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
	have     map[string]bool
	statuses int
}

func (f *fake) Name() string { return f.kind }
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
	ct, vm := &fake{kind: api.TypeContainer, have: map[string]bool{}}, &fake{kind: api.TypeVM, have: map[string]bool{}}
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
	if _, err := d.(Execer).Exec(ctx, "v", []string{"true"}, io.Discard); err == nil || err.Error() != "the vm driver cannot run commands inside an instance (VMs have no guest agent: use the console)" {
		t.Fatalf("Exec on a driver without it: %v", err)
	}
	if err := d.Cleanup(ctx, "v", false); err != nil || vm.have["v"] {
		t.Fatalf("Cleanup: %v", err)
	}
}

func TestAttribute(t *testing.T) {
	long := strings.Repeat("é", 200) // 400 bytes
	if got := Attribute("probe failed: \x1b[31mno ready line\x07 " + long); len(got) > 255 || strings.ContainsAny(got, "\x1b\x07") || !strings.HasPrefix(got, "probe failed: [31mno ready line ") || !utf8.ValidString(got) {
		t.Fatalf("Attribute = %q (%d bytes)", got, len(got))
	}
}
