package agent

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/kumocloud/kumo/api"
)

// viewCall is one request of the network job for its view.
type viewCall struct {
	version string
	wait    time.Duration
}

// heldView answers a long poll (wait > 0) only when its context ends,
// and any other request at once with version "now".
type heldView struct{ calls chan viewCall }

func (v *heldView) Networks(ctx context.Context, _, version string, wait time.Duration) (api.AgentNetworks, error) {
	v.calls <- viewCall{version, wait}
	if wait > 0 {
		<-ctx.Done()
		return api.AgentNetworks{}, ctx.Err()
	}
	return api.AgentNetworks{Version: "now"}, nil
}

// TestNetworkPollWaitsForAChangeOrAKick: the network job long-polls its
// view with the version it applied last, and a kick (an instance left
// the host) ends that wait with a view read at once.
func TestNetworkPollWaitsForAChangeOrAKick(t *testing.T) {
	v := &heldView{calls: make(chan viewCall, 4)}
	h := newHostNetwork(nil, "", false, v, nil, nil, nil, slog.New(slog.DiscardHandler))
	h.version = "applied"
	got := make(chan api.AgentNetworks, 1)
	go func() {
		view, err := h.poll(context.Background())
		if err != nil {
			t.Error(err)
		}
		got <- view
	}()
	// next is the job's next request (evidence; a generous bound).
	next := func() viewCall {
		t.Helper()
		select {
		case c := <-v.calls:
			return c
		case <-time.After(30 * time.Second):
			t.Fatal("the network job asked nothing more")
			return viewCall{}
		}
	}
	if c := next(); c != (viewCall{"applied", netEvery}) {
		t.Fatalf("the long poll asked %+v", c)
	}
	h.kickNow()
	if c := next(); c != (viewCall{"", 0}) {
		t.Fatalf("after a kick the job asked %+v", c)
	}
	if view := <-got; view.Version != "now" {
		t.Fatalf("the view after a kick: %+v", view)
	}
}
