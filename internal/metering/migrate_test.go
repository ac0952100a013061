package metering

import (
	"testing"
	"time"
)

// A migration bills as the state it left when that bills less: moving a
// STOPPED or POWEROFF instance bills storage (nothing runs, nothing is
// reserved), moving a RUNNING one live bills the flavor - through the
// migration's stage records (MIGRATE->MIGRATE) and for each migration of
// the instance on its own.
func TestMigrateBillsAsTheStateItLeft(t *testing.T) {
	const (
		hourCompute = 100_000 // the flavor's price an hour
		hourStorage = 1_000   // 10 GiB x 100 micro a GiB-hour
	)
	h := time.Hour
	for _, c := range []struct {
		name         string
		steps        []any
		cost, instMS int64
	}{
		{"stopped moves", []any{0 * h, "STOPPED", 1 * h, "MIGRATE", 90 * time.Minute, "MIGRATE", 2 * h, "STOPPED", 3 * h, "DONE"}, 3 * hourStorage, 0},
		{"poweroff moves", []any{0 * h, "POWEROFF", 1 * h, "MIGRATE", 2 * h, "POWEROFF", 3 * h, "DONE"}, 3 * hourStorage, 0},
		{"running moves live", []any{0 * h, "RUNNING", 1 * h, "MIGRATE", 90 * time.Minute, "MIGRATE", 2 * h, "RUNNING", 3 * h, "DONE"}, 3 * hourCompute, 3 * 3600},
		{"stopped then running moves", []any{0 * h, "STOPPED", 1 * h, "MIGRATE", 2 * h, "STOPPED", 3 * h, "RUNNING", 4 * h, "MIGRATE", 5 * h, "RUNNING", 6 * h, "DONE"},
			3*hourStorage + 3*hourCompute, 3 * 3600},
	} {
		in := inst("a", hist(c.steps...))
		r := Report([]Instance{in}, prices(hourCompute), rules, t0, t0.Add(24*h), t0.Add(24*h), ByNone)
		if r.Total.CostMicro != c.cost || r.Total.InstanceSeconds != c.instMS {
			t.Errorf("%s: cost %d, instance seconds %v; want %d, %d", c.name, r.Total.CostMicro, r.Total.InstanceSeconds, c.cost, c.instMS)
		}
	}
}
