package compute

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/kumocloud/kumo/api"
	"github.com/kumocloud/kumo/internal/errs"
	"github.com/kumocloud/kumo/internal/scheduler"
)

// recordingMover records the moves it is asked for.
type recordingMover struct{ moves []string }

func (m *recordingMover) Migrate(_ context.Context, project, name, host string) error {
	m.moves = append(m.moves, project+"/"+name+"->"+host)
	return nil
}

// Consolidation plans from the live instances; applying it without a
// mover is a conflict that moves nothing, and with one it asks the mover
// for each move of the plan.
func TestConsolidationThroughTheMover(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	env := newHAEnv(t, ctx, 10)
	svc := New(env.ms, env.hs, scheduler.Striping, slog.New(slog.DiscardHandler), Deps{Clock: env.now})
	go svc.cache.run(ctx, env.ms, svc.log)
	svc.Ready(ctx)
	for _, n := range []string{"a", "b"} {
		if _, err := svc.Create(ctx, "p", api.InstancesPost{Name: n, Type: "vm", Flavor: "small", Image: "img"}); err != nil {
			t.Fatal(err)
		}
	}
	env.hs.Heartbeat([]string{"h1", "h2"}, api.Heartbeat{})
	env.sync(svc)
	if n, _, _ := svc.scheduleOnce(ctx); n != 2 {
		t.Fatalf("placed %d", n)
	}
	env.sync(svc)
	plan, err := svc.Consolidation(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// Both PROLOG: nothing can move yet.
	if len(plan.Moves) != 0 || len(plan.Kept) != 2 || !strings.Contains(plan.Kept[0].Reason, "it is PROLOG") {
		t.Fatalf("plan with instances in PROLOG: %+v", plan)
	}
	env.run(svc, "a", "b")
	plan, err = svc.Consolidation(ctx)
	if err != nil || plan.HostsInUse != 2 || plan.HostsAfter != 1 || len(plan.Moves) != 1 {
		t.Fatalf("plan: %+v %v", plan, err)
	}
	if _, err := svc.Consolidate(ctx); !errors.Is(err, errs.ErrConflict) || !strings.Contains(err.Error(), "migration") {
		t.Fatalf("apply without a mover: %v", err)
	}
	m := &recordingMover{}
	svc.SetMover(m)
	applied, err := svc.Consolidate(ctx)
	mv := plan.Moves[0]
	if err != nil || !applied.Applied || len(m.moves) != 1 || m.moves[0] != mv.Project+"/"+mv.Instance+"->"+mv.To {
		t.Fatalf("apply: %+v %v, mover asked %v", applied, err, m.moves)
	}
}
