package agent

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kumocloud/kumo/api"
	"github.com/kumocloud/kumo/internal/driver"
	"github.com/kumocloud/kumo/internal/driver/sim"
)

// watchedSim is a sim driver whose guests in slow have not said they are
// ready and those in crashed have crashed; it counts its listings and
// the Status calls for each instance.
type watchedSim struct {
	*sim.Driver
	mu      sync.Mutex
	slow    map[string]bool
	crashed map[string]bool
	lists   int
	asked   map[string]int
}

func newWatchedSim(t *testing.T, ids ...string) *watchedSim {
	return &watchedSim{Driver: runningSim(t, ids...), slow: map[string]bool{}, crashed: map[string]bool{}, asked: map[string]int{}}
}

func (w *watchedSim) seen(st driver.Status) driver.Status {
	if w.slow[st.ID] {
		st.Ready = false
	}
	if w.crashed[st.ID] {
		st.State, st.Ready, st.Reason = driver.Crashed, false, "QEMU died (simulated)"
	}
	return st
}

func (w *watchedSim) Status(ctx context.Context, id string) (driver.Status, error) {
	st, err := w.Driver.Status(ctx, id)
	w.mu.Lock()
	defer w.mu.Unlock()
	w.asked[id]++
	return w.seen(st), err
}

func (w *watchedSim) Recover(ctx context.Context) ([]driver.Status, error) {
	sts, err := w.Driver.Recover(ctx)
	w.mu.Lock()
	defer w.mu.Unlock()
	w.lists++
	for i := range sts {
		sts[i] = w.seen(sts[i])
	}
	return sts, err
}

// set changes the watched driver under its lock.
func (w *watchedSim) set(f func(w *watchedSim)) {
	w.mu.Lock()
	defer w.mu.Unlock()
	f(w)
}

// counts are its listings and the Status calls for ids.
func (w *watchedSim) counts(ids ...string) (lists int, asked []int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, id := range ids {
		asked = append(asked, w.asked[id])
	}
	return w.lists, asked
}

// quietPorts is a port wiring with nothing to wire.
type quietPorts struct{}

func (quietPorts) wire(context.Context, api.Assignment) error       { return nil }
func (quietPorts) unwire(context.Context, api.Assignment)           {}
func (quietPorts) track(api.Assignment)                             {}
func (quietPorts) forget(string)                                    {}
func (quietPorts) spec(s driver.Spec, _ api.Assignment) driver.Spec { return s }

// monitored is an instance job over w whose monitor runs (and nothing
// else): full checks every hour - after the first - and quick checks
// every 5 ms; it counts readiness news. The ids are dispatched RUNNING
// and their workers done before the monitor starts.
func monitored(t *testing.T, w *watchedSim, ids []string) (in *instances, news *atomic.Int64, ctx context.Context) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	news = &atomic.Int64{}
	in = newInstances(nil, w, quietPorts{}, 4, time.Hour, instanceNews{readiness: func() { news.Add(1) }, reconciled: func() {}}, nil, slog.New(slog.NewTextHandler(io.Discard, nil)))
	in.checkEvery, in.bootCheckEvery = time.Hour, 5*time.Millisecond
	for _, id := range ids {
		in.dispatch(ctx, api.Assignment{ID: id, Host: "w-0000", State: api.StateRunning, Revision: 1})
	}
	waitUntil(t, "the workers to be done", func() bool { in.mu.Lock(); defer in.mu.Unlock(); return len(in.work) == 0 })
	go in.monitor(ctx)
	return in, news, ctx
}

func sum(ns []int) (s int) {
	for _, n := range ns {
		s += n
	}
	return s
}

func waitUntil(t *testing.T, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (in *instances) isReady(id string) bool {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.ready[id]
}

// TestMonitorQuickChecksAskOnlyBootingGuests: while guests boot among 40
// that are ready, the quick checks ask the driver of the booting ones
// only - never listing everything again - and still notice a guest
// getting ready, one stopping, crashing or vanishing, and a guest new
// since the listing.
func TestMonitorQuickChecksAskOnlyBootingGuests(t *testing.T) {
	var ready []string
	for i := 0; i < 40; i++ {
		ready = append(ready, "r"+string(rune('a'+i/26))+string(rune('a'+i%26)))
	}
	booting := []string{"b-ready", "b-stop", "b-crash", "b-gone", "b-slow"}
	w := newWatchedSim(t, append(append([]string{}, ready...), booting...)...)
	w.set(func(w *watchedSim) {
		for _, id := range booting {
			w.slow[id] = true
		}
	})
	in, news, ctx := monitored(t, w, append(append([]string{}, ready...), booting...))

	// Each booting guest asked a few times, or the monitor listing again.
	waitUntil(t, "quick checks of the booting guests", func() bool {
		lists, asked := w.counts(booting...)
		return lists > 1 || min(asked[0], asked[1], asked[2], asked[3], asked[4]) >= 3
	})
	if lists, asked := w.counts(ready...); lists != 1 || sum(asked) != 0 {
		t.Fatalf("while guests boot the driver listed %d times (want only the first check) and the ready guests were asked %v times", lists, asked)
	}
	if !in.isReady(ready[0]) || news.Load() == 0 {
		t.Fatalf("the ready guests were not noticed ready by the listing (ready %v, news %d)", in.isReady(ready[0]), news.Load())
	}

	// A booting guest getting ready is noticed and told.
	told := news.Load()
	w.set(func(w *watchedSim) { delete(w.slow, "b-ready") })
	waitUntil(t, "b-ready noticed ready", func() bool { return in.isReady("b-ready") && news.Load() > told })

	// Booting guests stopping, crashing, vanishing are reported as a
	// listing would have.
	w.Driver.Stop(ctx, "b-stop", true)
	w.set(func(w *watchedSim) { w.crashed["b-crash"] = true })
	w.Driver.Cleanup(ctx, "b-gone", false)
	got := map[string]api.InstanceReport{}
	for len(got) < 3 {
		select {
		case r := <-in.reps:
			got[r.ID] = r
		case <-time.After(time.Minute):
			t.Fatalf("reports so far %+v", got)
		}
	}
	if r := got["b-stop"]; r.To != api.StatePoweroff || !strings.Contains(r.Reason, "stopped by itself") {
		t.Errorf("b-stop: %+v", r)
	}
	if r := got["b-crash"]; r.To != api.StateFailed || r.Reason != "QEMU died (simulated)" {
		t.Errorf("b-crash: %+v", r)
	}
	if r := got["b-gone"]; r.To != api.StateFailed || !strings.Contains(r.Reason, "disappeared") {
		t.Errorf("b-gone: %+v", r)
	}

	// A guest that starts running now (b-slow still boots) is checked
	// by the quick checks too.
	s := driver.Spec{ID: "late", Project: "p", Name: "late", Type: api.TypeVM, Host: "w-0000", Size: api.Size{VCPUs: 1, MemoryMiB: 64}}
	if err := w.Driver.Prepare(ctx, s); err != nil {
		t.Fatal(err)
	}
	if err := w.Driver.Start(ctx, s); err != nil {
		t.Fatal(err)
	}
	told = news.Load()
	in.dispatch(ctx, api.Assignment{ID: "late", Host: "w-0000", State: api.StateRunning, Revision: 1})
	waitUntil(t, "late noticed ready, and told", func() bool { return in.isReady("late") && news.Load() > told })
	if lists, _ := w.counts(); lists != 1 {
		t.Fatalf("the driver listed %d times: quick checks listed", lists)
	}
	// The usage round told of it sees it ready: the listing kept from
	// before is not reused, however fresh it is asked to be.
	sts, err := in.statuses(ctx, time.Hour)
	found := false
	for _, st := range sts {
		found = found || st.ID == "late" && st.Ready
	}
	if err != nil || !found {
		t.Fatalf("statuses after late was seen ready: %v; %d statuses, none of late ready (the listing from before it ran)", err, len(sts))
	}
	in.mu.Lock()
	defer in.mu.Unlock()
	for _, id := range []string{"b-stop", "b-crash", "b-gone"} {
		if _, ok := in.running[id]; ok {
			t.Errorf("%s is still watched as running", id)
		}
	}
}

// TestMonitorListsWhenManyBoot: when more than a quarter of the running
// guests boot, a quick check is one listing rather than a Status call
// each, and the listing is kept for the heartbeats.
func TestMonitorListsWhenManyBoot(t *testing.T) {
	ids := []string{"a", "b", "c", "d", "e", "f", "g", "h"}
	w := newWatchedSim(t, ids...)
	w.set(func(w *watchedSim) { w.slow["a"], w.slow["b"], w.slow["c"] = true, true, true })
	in, _, ctx := monitored(t, w, ids)
	// The listing kept is replaced: one made after the second
	// listing's end is there once two more were made.
	var at time.Time
	n := 0
	waitUntil(t, "a second listing, or Status calls", func() bool {
		lists, asked := w.counts("a", "b", "c")
		in.mu.Lock()
		at, n = in.listedAt, lists
		in.mu.Unlock()
		return lists >= 2 || sum(asked) >= 10
	})
	waitUntil(t, "two more listings, or Status calls", func() bool {
		lists, asked := w.counts("a", "b", "c")
		return lists >= n+2 || sum(asked) >= 10
	})
	if lists, asked := w.counts(ids...); lists < 3 || sum(asked) != 0 {
		t.Fatalf("3 of 8 guests booting: %d listings, Status calls %v; want listings only", lists, asked)
	}
	sts, err := in.statuses(ctx, time.Hour)
	in.mu.Lock()
	last := in.listedAt
	in.mu.Unlock()
	if err != nil || len(sts) != len(ids) || !last.After(at) {
		t.Fatalf("the listing kept: %d statuses, %v; listed at %v, before %v", len(sts), err, last, at)
	}
}
