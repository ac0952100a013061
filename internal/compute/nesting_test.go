package compute

import (
	"context"
	"testing"

	"github.com/kumocloud/kumo/api"
	"github.com/kumocloud/kumo/internal/flavor"
	"github.com/kumocloud/kumo/internal/store"
)

// TestNestingFromFlavor: a flavor's nesting goes with the instances made
// from it to their agents' assignments; other flavors' instances get none.
func TestNestingFromFlavor(t *testing.T) {
	svc, s := newService(t)
	ctx := context.Background()
	if _, err := flavor.Create(ctx, s, api.FlavorsPost{Name: "nest", VCPUs: 1, MemoryMiB: 64, Nesting: true}); err != nil {
		t.Fatal(err)
	}
	for _, fl := range []string{"nest", "small"} {
		if _, err := svc.Create(ctx, "p", api.InstancesPost{Name: "i-" + fl, Type: api.TypeContainer, Flavor: fl, Image: "x"}); err != nil {
			t.Fatal(err)
		}
		var r record
		if _, err := store.GetJSON(ctx, s, instanceKey("p", "i-"+fl), &r); err != nil {
			t.Fatal(err)
		}
		if got := assignment(&entry{rec: r}).Nesting; got != (fl == "nest") {
			t.Errorf("an instance of flavor %s: nesting %v in its assignment", fl, got)
		}
	}
}
