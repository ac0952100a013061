package network

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"log/slog"
	"sync"

	"github.com/kumocloud/kumo/api"
	"github.com/kumocloud/kumo/internal/store"
)

// Agents long-poll their network view (GET /v1/agents/{id}/networks with
// ?version= and ?wait=): the server answers at once when the view differs
// from the version the agent has, else when something it is made of
// changes, else at the end of the wait - always with the whole view, so
// an agent that missed an answer misses nothing (level-triggered). What
// a view is made of: where instances' ports are and the hosts' addresses
// (the compute service's cache says when those change), and security
// groups, floating IPs and networks (watched here).

// viewPrefixes are the keys an agent's view reads from the store.
var viewPrefixes = []string{sgPrefix, fipPrefix, netPrefix}

// viewVersion is a digest of the whole view, its names counted by their
// own version (the names themselves are left out when unchanged).
func viewVersion(v api.AgentNetworks) string {
	nets := make([]api.AgentNetwork, len(v.Networks))
	for i, n := range v.Networks {
		n.Names = nil
		nets[i] = n
	}
	v.Networks, v.Version = nets, ""
	b, err := json.Marshal(v)
	if err != nil {
		return "" // never equal to an agent's version: it gets the view
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:12])
}

// changes is a channel closed (and replaced) at each change seen.
type changes struct {
	mu sync.Mutex
	ch chan struct{}
}

func (c *changes) wait() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ch == nil {
		c.ch = make(chan struct{})
	}
	return c.ch
}

func (c *changes) notify() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ch != nil {
		close(c.ch)
	}
	c.ch = make(chan struct{})
}

// Replace and Apply make changes a store.View of one prefix: any
// complete revision under it is a change.
func (c *changes) Replace([]store.KV, int64) { c.notify() }

func (c *changes) Apply(ev store.WatchEvent) {
	if ev.RevisionEnd {
		c.notify()
	}
}

// ViewChanged is closed at the next change of a security group, floating
// IP or network (once FollowViewChanges runs): take it before reading a
// view, then wait on it.
func (svc *Service) ViewChanged() <-chan struct{} { return svc.viewChanges.wait() }

// FollowViewChanges watches what agents' views read from the store, from
// now until ctx ends (a change by any server sharing the store counts).
func (svc *Service) FollowViewChanges(ctx context.Context, log *slog.Logger) {
	after, err := svc.s.Revision(ctx)
	if err != nil {
		after = 0 // list first: a Replace is a change too
	}
	for _, p := range viewPrefixes {
		go store.Follow(ctx, svc.s, p, after, &svc.viewChanges, log)
	}
}
