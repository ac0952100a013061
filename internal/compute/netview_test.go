package compute

import (
	"context"
	"testing"
	"time"

	"github.com/kumocloud/kumo/api"
)

// TestPlacedNICsFollowALiveMigration: the ports agents' network views are
// made of follow a live migration event by event, and only the events
// that move a port wake the views' long polls. Starting it places the
// port on its target too (wired there before the guest runs); progress
// and "sent" change nothing of it and wake no one; the target's
// "received" (the commit, at activation) puts it on the target alone and
// wakes them, as soon as the cache has that one write.
func TestPlacedNICsFollowALiveMigration(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	live := []string{api.CapMigrate, api.CapLiveMigrate}
	env := newCapsEnv(t, ctx, map[string][]string{"h1": live, "h2": live, "h3": live})
	svc := env.service(time.Hour)
	env.placeOn(svc, "a", "h1")
	r, rev, _ := svc.get(ctx, "p", "a")
	r.NICs = []api.InstanceNIC{{Network: "app", Port: "a-eth0", PortID: "p1", MAC: "02:00:0a:00:00:05", IP: "10.0.0.5", VNI: 7, CIDR: "10.0.0.0/24"}}
	if _, err := svc.write(ctx, &r, rev); err != nil {
		t.Fatal(err)
	}
	env.sync(svc)
	placed := func() string {
		t.Helper()
		nics, _, _ := svc.PlacedNICs()
		if len(nics) != 1 {
			t.Fatalf("placed: %+v", nics)
		}
		return nics[0].Host + ">" + nics[0].Target
	}
	woken := func(ch <-chan struct{}) bool {
		select {
		case <-ch:
			return true
		default:
			return false
		}
	}
	if got := placed(); got != "h1>" {
		t.Fatalf("before: %s", got)
	}

	_, _, changed := svc.PlacedNICs()
	in, err := svc.Migrate(ctx, "p", "a", api.InstanceMigrate{Host: "h2", Mode: api.MigrateLive})
	if err != nil {
		t.Fatal(err)
	}
	env.sync(svc)
	if got := placed(); got != "h1>h2" || !woken(changed) {
		t.Fatalf("migrating: placed %s, polls woken %v", got, woken(changed))
	}
	report := func(host, event string, st *api.MigrationStats) {
		t.Helper()
		if _, err := svc.MigrationReport(ctx, env.agents[host], api.MigrationReport{Instance: in.ID, Migration: in.Migration.ID, Host: host, Event: event, Progress: 40, Stats: st}); err != nil {
			t.Fatalf("%s %s: %v", host, event, err)
		}
		env.sync(svc)
	}
	_, _, changed = svc.PlacedNICs()
	report("h1", api.MigrationProgress, &api.MigrationStats{Rounds: 1, Transferred: 1 << 20})
	report("h1", api.MigrationSent, &api.MigrationStats{Rounds: 2, DowntimeMS: 100})
	if got := placed(); got != "h1>h2" || woken(changed) {
		t.Fatalf("after progress and sent: placed %s, polls woken %v (they should wait)", got, woken(changed))
	}
	report("h2", api.MigrationReceived, nil)
	if got := placed(); got != "h2>" || !woken(changed) {
		t.Fatalf("after the commit: placed %s, polls woken %v", got, woken(changed))
	}
}
