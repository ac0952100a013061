package compute

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"strings"
	"testing"

	"github.com/kumocloud/kumo/api"
	"github.com/kumocloud/kumo/internal/errs"
	"github.com/kumocloud/kumo/internal/flavor"
	"github.com/kumocloud/kumo/internal/hosts"
	"github.com/kumocloud/kumo/internal/quota"
	"github.com/kumocloud/kumo/internal/store"
	"github.com/kumocloud/kumo/internal/store/memstore"
)

// docs/states.md shows exactly the action table.
func TestStatesDocMatchesTable(t *testing.T) {
	b, err := os.ReadFile("../../docs/states.md")
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)
	i, j := strings.Index(doc, "<!-- actions:begin -->\n"), strings.Index(doc, "<!-- actions:end -->")
	if i < 0 || j < 0 {
		t.Fatal("docs/states.md lacks the actions markers")
	}
	if got := doc[i+len("<!-- actions:begin -->\n") : j]; got != StatesDoc() {
		t.Fatalf("docs/states.md is out of date; the table is:\n%s", StatesDoc())
	}
}

func TestAgentTable(t *testing.T) {
	tests := []struct {
		from, action, to string
		ok               bool
	}{
		{api.StateProlog, "", api.StateBoot, true},
		{api.StateBoot, "", api.StateRunning, true},
		{api.StateShutdown, ActTerminate, api.StateEpilog, true},
		{api.StateShutdown, ActPoweroff, api.StatePoweroff, true},
		{api.StateShutdown, ActPoweroff, api.StateEpilog, false},
		{api.StateEpilog, ActTerminate, api.StateDone, true},
		{api.StateRunning, "", api.StateDone, false},
		{api.StatePending, "", api.StateRunning, false},
		{api.StateBoot, "", api.StateFailed, true},
		{api.StateDone, "", api.StateFailed, false},
	}
	for _, tc := range tests {
		if got := agentMayReport(tc.from, tc.action, tc.to); got != tc.ok {
			t.Errorf("%s -(%s)-> %s: %v, want %v", tc.from, tc.action, tc.to, got, tc.ok)
		}
	}
}

func newService(t *testing.T) (*Service, store.Store) {
	s := memstore.New()
	ctx := context.Background()
	if _, err := s.Txn(ctx, nil, append(flavor.SeedOps(ctx), quota.InitOp("p", api.ResourceCounts{Instances: 2, VCPUs: -1, MemoryMiB: -1, DiskGiB: -1}))); err != nil {
		t.Fatal(err)
	}
	return New(s, hosts.New(s, strings.Repeat("a", 64), 0), "", slog.New(slog.DiscardHandler)), s
}

func TestCreateActionsAndQuota(t *testing.T) {
	svc, s := newService(t)
	ctx := context.Background()
	req := api.InstancesPost{Name: "a", Type: "vm", Flavor: "small", Image: "x"}
	in, err := svc.Create(ctx, "p", req)
	if err != nil || in.State != api.StatePending || in.Size.MemoryMiB != 2048 || strings.Join(in.Actions, ",") != "hold,terminate" {
		t.Fatalf("create: %+v %v", in, err)
	}
	if _, err := svc.Create(ctx, "p", req); !errors.Is(err, errs.ErrConflict) {
		t.Fatalf("same name: %v", err)
	}
	req.Name = "b"
	svc.Create(ctx, "p", req)
	req.Name = "c"
	if _, err := svc.Create(ctx, "p", req); !errors.Is(err, errs.ErrQuotaExceeded) {
		t.Fatalf("third instance with quota 2: %v", err)
	}
	for _, bad := range []api.InstancesPost{
		{Name: "d", Type: "vm", Flavor: "nope", Image: "x"},
		{Name: "d", Type: "vm", Flavor: "small", Image: "x", Requirements: "RACK ="},
		{Name: "D", Type: "vm", Flavor: "small", Image: "x"},
	} {
		if _, err := svc.Create(ctx, "p", bad); err == nil {
			t.Errorf("create %+v succeeded", bad)
		}
	}
	_, err = svc.Action(ctx, "p", "a", ActResume)
	if !errors.Is(err, errs.ErrConflict) || !strings.Contains(err.Error(), "it is PENDING; allowed now: hold, terminate") {
		t.Fatalf("resume of a PENDING instance: %v", err)
	}
	if in, err := svc.Action(ctx, "p", "a", ActHold); err != nil || in.State != api.StateHold {
		t.Fatalf("hold: %+v %v", in, err)
	}
	if in, err := svc.Action(ctx, "p", "a", ActTerminate); err != nil || in.State != api.StateDone {
		t.Fatalf("terminate: %+v %v", in, err)
	}
	// DONE: archived, quota released, the name free again, history kept.
	q, _, _ := quota.Get(ctx, s, "p")
	if q.Usage.Instances != 1 || q.Usage.MemoryMiB != 2048 {
		t.Fatalf("usage after terminate: %+v", q.Usage)
	}
	got, hist, err := svc.Get(ctx, "p", "a")
	if err != nil || got.State != api.StateDone || len(hist) != 3 || hist[2].Actor == "" {
		t.Fatalf("archived: %+v %v %v", got, hist, err)
	}
	if _, err := svc.Action(ctx, "p", "a", ActStart); !errors.Is(err, errs.ErrConflict) || !strings.Contains(err.Error(), "DONE") {
		t.Fatalf("action on a DONE instance: %v", err)
	}
	req.Name = "a"
	if _, err := svc.Create(ctx, "p", req); err != nil {
		t.Fatalf("reusing a DONE instance's name: %v", err)
	}
	if _, err := svc.Action(ctx, "p", "a", "explode"); !errors.Is(err, errs.ErrInvalid) {
		t.Fatalf("unknown action: %v", err)
	}
}

// An image's min flavor, kind and status are checked at create.
func TestImageChecksAtCreate(t *testing.T) {
	svc, _ := newService(t)
	ctx := context.Background()
	images := map[string]api.Image{
		"big":     {Meta: api.Meta{Name: "big"}, Project: "owner", Kind: api.KindContainerRootfs, Status: api.ImageActive, MinFlavor: "medium", SHA256: "abc"},
		"disk":    {Meta: api.Meta{Name: "disk"}, Kind: api.KindVMDisk, Status: api.ImageActive},
		"pending": {Meta: api.Meta{Name: "pending"}, Kind: api.KindContainerRootfs, Status: api.ImageQueued},
	}
	svc.ResolveImage = func(_ context.Context, _, ref string) (api.Image, error) {
		if img, ok := images[ref]; ok {
			return img, nil
		}
		if ref == "ambiguous" {
			return api.Image{}, errs.Conflict("image name %q is ambiguous", ref)
		}
		return api.Image{}, errs.NotFound("image %q not found", ref)
	}
	for _, tc := range []struct {
		req  api.InstancesPost
		want error
	}{
		{api.InstancesPost{Name: "a", Type: "container", Flavor: "small", Image: "big"}, errs.ErrInvalid},
		{api.InstancesPost{Name: "b", Type: "container", Flavor: "disk-less", Image: "big"}, errs.ErrNotFound},
		{api.InstancesPost{Name: "c", Type: "container", Flavor: "small", Image: "disk"}, errs.ErrInvalid},
		{api.InstancesPost{Name: "d", Type: "container", Flavor: "small", Image: "pending"}, errs.ErrConflict},
		{api.InstancesPost{Name: "f", Type: "container", Flavor: "small", Image: "ambiguous"}, errs.ErrConflict},
	} {
		if _, err := svc.Create(ctx, "p", tc.req); !errors.Is(err, tc.want) {
			t.Errorf("%+v: %v, want %v", tc.req, err, tc.want)
		}
	}
	in, err := svc.Create(ctx, "p", api.InstancesPost{Name: "e", Type: "container", Flavor: "large", Image: "big"})
	if err != nil || in.ImageSHA256 != "abc" || in.Image != "owner/big" {
		t.Fatalf("create from an image: %+v %v", in, err)
	}
}
