package cli

import (
	"encoding/json"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kumocloud/kumo/api"
	"github.com/kumocloud/kumo/client"
)

// TestBenchAsksTheFewUnsettledOneByOne: when the events did not bring an
// acknowledged instance's end (a stream cut with a server that died),
// the bench asks for each of the few left rather than listing the whole
// project, and takes RUNNING and FAILED from the answers - RUNNING with
// no time, so it counts but adds no latency it did not see.
func TestBenchAsksTheFewUnsettledOneByOne(t *testing.T) {
	states := map[string]api.State{"b-0": api.StateRunning, "b-1": api.StateFailed, "b-2": api.StateBoot}
	var lists, gets atomic.Int32
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/projects/p/instances", func(w http.ResponseWriter, r *http.Request) {
		lists.Add(1)
		json.NewEncoder(w).Encode(api.List[api.Instance]{Items: []api.Instance{}})
	})
	mux.HandleFunc("GET /v1/projects/p/instances/{name}", func(w http.ResponseWriter, r *http.Request) {
		gets.Add(1)
		st, ok := states[r.PathValue("name")]
		if !ok {
			http.Error(w, `{"error":"not found"}`, http.StatusNotFound)
			return
		}
		json.NewEncoder(w).Encode(api.Instance{Meta: api.Meta{Name: r.PathValue("name")}, State: st})
	})
	sock := filepath.Join(t.TempDir(), "kumo.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: mux}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })

	b := &bench{c: client.Socket(sock), project: "p", prefix: "b-", n: 3,
		created: map[string]time.Time{}, running: map[string]time.Time{}, failed: map[string]bool{}, acked: map[string]bool{}, changed: make(chan struct{}, 1)}
	for name := range states {
		b.acked[name] = true
		b.created[name] = time.Now()
	}
	few, more := b.unsettled(200)
	if more || len(few) != 3 {
		t.Fatalf("unsettled: %v (more: %v), want the 3", few, more)
	}
	b.fromGets(t.Context(), few)
	if gets.Load() != 3 || lists.Load() != 0 {
		t.Fatalf("%d gets and %d lists, want 3 gets and no list", gets.Load(), lists.Load())
	}
	if at, ok := b.running["b-0"]; !ok || !at.IsZero() || !b.failed["b-1"] || b.allSettled() {
		t.Fatalf("running %v, failed %v, settled %v: want b-0 running (no time), b-1 failed, b-2 still booting", b.running, b.failed, b.allSettled())
	}
	if left, _ := b.unsettled(200); strings.Join(left, ",") != "b-2" {
		t.Fatalf("left unsettled: %v, want b-2", left)
	}
	if some, more := b.unsettled(0); len(some) != 0 || !more {
		t.Fatalf("unsettled(0): %v, %v: want none and more", some, more)
	}
}
