package compute

import (
	"context"
	"fmt"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/kumocloud/kumo/api"
	"github.com/kumocloud/kumo/internal/hosts"
	"github.com/kumocloud/kumo/internal/store"
)

// TestLongPollSeesOnlyItsHostsChanges: an agent's long poll is answered
// with a change on its own hosts, keeps waiting through changes on other
// agents' hosts, and still gets its changes after the log of changes was
// trimmed past what it had, or started afresh with a listing.
func TestLongPollSeesOnlyItsHostsChanges(t *testing.T) {
	defer func(n int) { maxHostLog = n }(maxHostLog)
	maxHostLog = 8
	ctx := context.Background()
	svc := &Service{cache: newCache()}
	close(svc.cache.ready)
	v := &instanceView{cacheView{c: svc.cache, listed: new(sync.WaitGroup)}}
	v.listed.Add(1)
	rev := int64(0)
	put := func(name, host string) {
		rev++
		r := record{Instance: api.Instance{Meta: api.Meta{ID: name, Name: name}, Project: "p", State: api.StateRunning, Host: host}}
		v.Apply(store.WatchEvent{Type: store.EventPut, KV: store.KV{Key: instancesPrefix + "p/" + name, Value: store.MustJSON(r), Revision: rev}, RevisionEnd: true})
	}
	mine := &hosts.AgentPrincipal{Name: "a1", Hosts: map[string]bool{"h1": true}}
	poll := func(since int64) []string {
		res, err := svc.Assignments(ctx, mine, since, 50*time.Millisecond)
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, a := range res.Items {
			names = append(names, a.Name)
		}
		return names
	}
	put("x", "h1")
	since := rev
	for i := range 3 {
		put(fmt.Sprint("other-", i), "h2")
	}
	if got := poll(since); len(got) != 0 {
		t.Fatalf("changes on another agent's host answered the poll: %v", got)
	}
	put("y", "h1")
	if got := poll(since); len(got) != 1 || got[0] != "y" {
		t.Fatalf("after y on h1: %v", got)
	}
	// Enough changes elsewhere to trim z's change out of the log.
	since = rev
	put("z", "h1")
	for i := range 20 {
		put(fmt.Sprint("more-", i), "h2")
	}
	if svc.cache.logFloor <= since+1 {
		t.Fatalf("the log was not trimmed past %d (floor %d)", since, svc.cache.logFloor)
	}
	if got := poll(since); len(got) != 1 || got[0] != "z" {
		t.Fatalf("after the log was trimmed: %v", got)
	}
	// A listing starts the log afresh.
	since = rev
	v.Replace([]store.KV{{Key: instancesPrefix + "p/z", Value: store.MustJSON(record{Instance: api.Instance{Meta: api.Meta{ID: "z2", Name: "z"}, Project: "p", State: api.StateRunning, Host: "h1"}}), Revision: rev + 1}}, rev+1)
	rev++
	if got := poll(since); len(got) != 1 || got[0] != "z" {
		t.Fatalf("after a listing: %v", got)
	}
}

// TestLongPollWokenMidTransactionMissesNothing: one transaction placing
// instances on two agents' hosts reaches the cache as one watch event per
// instance, all at one revision. A long poll woken by the first (another
// agent's host) must still see the second (its own) when it arrives; it
// once moved past the whole revision and slept until its deadline, and
// the agent, told that revision was read, never saw the instance until its
// next complete list (BOOT 8-22 s late at 100,000 instances).
func TestLongPollWokenMidTransactionMissesNothing(t *testing.T) {
	c := newCache()
	v := &instanceView{cacheView{c: c, listed: new(sync.WaitGroup)}}
	v.listed.Add(1)
	put := func(name, host string, rev int64, end bool) {
		r := record{Instance: api.Instance{Meta: api.Meta{ID: name, Name: name}, Project: "p", State: api.StateProlog, Host: host}}
		v.Apply(store.WatchEvent{Type: store.EventPut, KV: store.KV{Key: instancesPrefix + "p/" + name, Value: store.MustJSON(r), Revision: rev}, RevisionEnd: end})
	}
	mine := map[string]bool{"h1": true}
	put("old", "h1", 1, true)
	since := int64(1)
	seen := since
	look := func() []string {
		out, _ := c.assignmentsAfter(mine, since, &seen)
		var names []string
		for _, a := range out.Items {
			names = append(names, a.Name)
		}
		return names
	}
	if got := look(); len(got) != 0 {
		t.Fatalf("before the transaction: %v", got)
	}
	put("theirs", "h2", 2, false) // the poll wakes here...
	if got := look(); len(got) != 0 {
		t.Fatalf("another agent's change answered the poll: %v", got)
	}
	put("ours", "h1", 2, true) // ...and again here
	if got := look(); len(got) != 1 || got[0] != "ours" {
		t.Fatalf("the second change of one revision was not seen: %v (seen %d)", got, seen)
	}
}

// TestLongPollsMissNoChangeOfManyAgents: transactions spanning three
// agents' hosts are applied event by event while each agent long-polls
// concurrently, as a real agent does (since = the revision answered).
// Every placement must reach its agent by incremental polls alone - none
// waiting for a complete list - however the wakeups interleave.
func TestLongPollsMissNoChangeOfManyAgents(t *testing.T) {
	svc := &Service{cache: newCache()}
	close(svc.cache.ready)
	v := &instanceView{cacheView{c: svc.cache, listed: new(sync.WaitGroup)}}
	v.listed.Add(1)
	const agents, perTxn, txns = 3, 5, 400
	hostOf := func(agent, i int) string { return fmt.Sprintf("a%d-h%d", agent, i%4) }
	principals := make([]*hosts.AgentPrincipal, agents)
	for a := range principals {
		principals[a] = &hosts.AgentPrincipal{Name: fmt.Sprint("a", a), Hosts: map[string]bool{}}
		for i := range 4 {
			principals[a].Hosts[hostOf(a, i)] = true
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	// Revision 1, placing nothing, is applied before the agents poll
	// from it.
	v.Apply(store.WatchEvent{Type: store.EventPut, KV: store.KV{Key: instancesPrefix + "p/first", Value: store.MustJSON(record{Instance: api.Instance{Meta: api.Meta{ID: "first", Name: "first"}, Project: "p", State: api.StatePending}}), Revision: 1}, RevisionEnd: true})
	want := make([]int, agents)
	seen := make([]map[string]bool, agents)
	var wg sync.WaitGroup
	done := make(chan struct{})
	for a := range agents {
		seen[a] = map[string]bool{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Since revision 1, not 0 (a complete list): the agent
			// starts before the first placement, and every poll is
			// an incremental one.
			since := int64(1)
			for {
				res, err := svc.Assignments(ctx, principals[a], since, 200*time.Millisecond)
				if err != nil || ctx.Err() != nil {
					return
				}
				for _, as := range res.Items {
					seen[a][as.Name] = true
				}
				since = res.Revision
				select {
				case <-done:
					if len(seen[a]) == want[a] {
						return
					}
				default:
				}
			}
		}()
	}
	n := 0
	for txn := range txns {
		rev := int64(txn + 2)
		for i := range perTxn {
			a := (txn + i) % agents
			name := fmt.Sprint("i", n)
			n++
			want[a]++
			r := record{Instance: api.Instance{Meta: api.Meta{ID: name, Name: name}, Project: "p", State: api.StateProlog, Host: hostOf(a, n)}}
			v.Apply(store.WatchEvent{Type: store.EventPut, KV: store.KV{Key: instancesPrefix + "p/" + name, Value: store.MustJSON(r), Revision: rev}, RevisionEnd: i == perTxn-1})
			runtime.Gosched() // let woken polls look mid-transaction
		}
	}
	close(done)
	wg.Wait()
	for a := range agents {
		if len(seen[a]) != want[a] {
			t.Errorf("agent %d saw %d of its %d placements by long polls", a, len(seen[a]), want[a])
		}
	}
}
