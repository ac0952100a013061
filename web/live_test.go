package web

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"
	"time"
)

// racingAPI is a fake API whose instance changes at the worst moment for
// a page: just after its list is answered and before its event stream is
// taken. Its stream works as the server's does: an event's ID is its
// revision*4096 plus its place; ?since or Last-Event-ID (the later)
// resumes after an ID; without either the stream starts at "now", when it
// is taken.
type racingAPI struct {
	mu     sync.Mutex
	log    []map[string]any // the events, in ID order
	listed chan struct{}    // closed once the list was answered and the change made
	sent   chan int         // how many events the stream sent before it idled
}

// eventsAfter is what GET /v1 says before anything below happened: the
// store is at revision 9.
const eventsAfter = 10*4096 - 1

func (f *racingAPI) event(rev, place int, name, state string) {
	obj := instance(0, state, time.Now())
	obj["name"] = name
	f.log = append(f.log, map[string]any{"id": rev*4096 + place, "type": "instance", "action": "updated", "project": "demo", "object": obj})
}

func (f *racingAPI) handler(app http.Handler) http.Handler {
	mux := http.NewServeMux()
	serveSession(mux, "demo", eventsAfter)
	mux.HandleFunc("GET /v1/projects/demo/instances", func(w http.ResponseWriter, r *http.Request) {
		// As of revision 11: web-1 booting, web-2 running.
		one, two := instance(1, "BOOT", time.Now()), instance(2, "RUNNING", time.Now())
		one["name"], one["revision"] = "web-1", 11
		two["name"], two["revision"] = "web-2", 11
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{"items": []any{one, two}})
		w.(http.Flusher).Flush()
		// Revision 12, after the list was read: web-1 runs.
		f.mu.Lock()
		f.event(12, 0, "web-1", "RUNNING")
		f.mu.Unlock()
		close(f.listed)
	})
	mux.HandleFunc("GET /v1/events", func(w http.ResponseWriter, r *http.Request) {
		// The stream is taken after the change: the race, every time.
		select {
		case <-f.listed:
		case <-r.Context().Done():
			return
		}
		f.mu.Lock()
		since := int64(f.log[len(f.log)-1]["id"].(int)) // "now": after the last event
		if given := max(resumeAt(r.URL.Query().Get("since")), resumeAt(r.Header.Get("Last-Event-ID"))); given >= 0 {
			since = given
		}
		var out []map[string]any
		for _, ev := range f.log {
			if int64(ev["id"].(int)) > since {
				out = append(out, ev)
			}
		}
		f.mu.Unlock()
		w.Header().Set("Content-Type", "text/event-stream")
		for _, ev := range out {
			b, _ := json.Marshal(ev)
			fmt.Fprintf(w, "id: %d\nevent: instance\ndata: %s\n\n", ev["id"], b)
		}
		w.(http.Flusher).Flush()
		select {
		case f.sent <- len(out):
		default:
		}
		<-r.Context().Done()
	})
	mux.Handle("/", app)
	return mux
}

// resumeAt reads an event ID to resume after; -1 for none.
func resumeAt(v string) int64 {
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return -1
	}
	return n
}

// TestInstanceListMissesNoChangeMadeWhileListing: an instance that changes
// after the page's list is read but before its event stream is taken
// still shows its new state, without a reload; the stream's replay of
// what the list already had leaves every row at its newest state. This is
// what failed in CI: a container's row stayed BOOT while it ran (the page
// opened its stream without since, and the server took it after the
// instance ran).
func TestInstanceListMissesNoChangeMadeWhileListing(t *testing.T) {
	app, err := New()
	if err != nil {
		t.Fatal(err)
	}
	f := &racingAPI{listed: make(chan struct{}), sent: make(chan int, 1)}
	// Before the list: web-2 created (revision 10), then booted and ran
	// while web-1 booted (revision 11, two events).
	f.event(10, 0, "web-2", "PROLOG")
	f.event(11, 0, "web-1", "BOOT")
	f.event(11, 1, "web-2", "RUNNING")
	srv := httptest.NewServer(f.handler(app))
	t.Cleanup(srv.Close)
	b := newHeadless(t) // closed first: its stream ends, then the server

	if err := b.navigate(srv.URL + "/p/demo/instances"); err != nil {
		t.Fatal(err)
	}
	var sent int
	select {
	case sent = <-f.sent:
	case <-time.After(time.Minute):
		t.Fatal("the page opened no event stream in a minute")
	}
	b.waitFor(fmt.Sprintf("the %d events the stream sent applied", sent), fmt.Sprintf("document.querySelector('#instances') && document.querySelector('#instances').dataset.applied === '%d'", sent))
	for name, want := range map[string]string{"web-1": "RUNNING", "web-2": "RUNNING"} {
		if got := b.eval(fmt.Sprintf(`document.querySelector('#instances tr[data-name="%s"]').dataset.state`, name)); got != want {
			t.Errorf("%s shows %s, want %s (the stream sent %d events)", name, got, want, sent)
		}
	}
}
