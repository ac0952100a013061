package cli

import (
	"context"
	"strings"
	"sync"
	"time"

	"github.com/kumocloud/kumo/api"
	"github.com/kumocloud/kumo/client"
)

// bench is one 'kumo bench provision' run: what it created and what became
// of it. It must tell the truth when the server dies under it: creates
// are retried with the same Idempotency-Key (so a retry answers the first
// attempt's result, never a second instance), the event stream is resumed
// from the last event seen, and the final counts come from listing what
// exists.
type bench struct {
	c       *client.Client
	project string
	prefix  string
	n       int
	changed chan struct{}

	mu             sync.Mutex
	created        map[string]time.Time // acknowledged creates: when they were sent
	acked          map[string]bool
	running        map[string]time.Time // zero time: seen RUNNING only in the list
	failed         map[string]bool
	lastEvent      int64
	createFailures int
	retries        int
	lost           int
}

// transient says whether a failed request may succeed if sent again: no
// answer at all, or a server error.
func transient(err error) bool {
	st := client.StatusOf(err)
	return st == 0 || st >= 500
}

// create creates an instance, sending the same request (same key) again
// while the server does not answer.
func (b *bench) create(ctx context.Context, name string, req api.InstancesPost) error {
	kctx := client.WithIdempotencyKey(ctx, name)
	t := time.Now()
	for attempt := 0; ; attempt++ {
		_, err := b.c.CreateInstance(kctx, b.project, req)
		b.mu.Lock()
		switch {
		case err == nil:
			b.created[name], b.acked[name] = t, true
		case transient(err) && ctx.Err() == nil:
			b.retries++
		default:
			b.createFailures++
			b.failed[name] = true
		}
		b.mu.Unlock()
		if err == nil || !transient(err) || ctx.Err() != nil {
			b.poke()
			return err
		}
		time.Sleep(time.Duration(min(attempt+1, 10)) * 100 * time.Millisecond)
	}
}

// follow records RUNNING and FAILED from the event stream, resuming it
// after the last event seen whenever it breaks.
func (b *bench) follow(ctx context.Context) {
	for ctx.Err() == nil {
		b.mu.Lock()
		since := b.lastEvent
		b.mu.Unlock()
		b.c.Events(ctx, client.EventQuery{Project: b.project, Types: []string{"instance"}, Since: since}, func(ev api.Event) error {
			name := ev.Resource[strings.LastIndex(ev.Resource, "/")+1:]
			b.mu.Lock()
			b.lastEvent = max(b.lastEvent, ev.ID)
			if strings.HasPrefix(name, b.prefix) {
				switch ev.Action {
				case "running":
					if t, ok := b.running[name]; !ok || t.IsZero() {
						b.running[name] = ev.Time
					}
				case "failed":
					b.failed[name] = true
				}
			}
			b.mu.Unlock()
			b.poke()
			return nil
		})
		sleep := time.NewTimer(200 * time.Millisecond)
		select {
		case <-ctx.Done():
		case <-sleep.C:
		}
		sleep.Stop()
	}
}

func (b *bench) poke() {
	select {
	case b.changed <- struct{}{}:
	default:
	}
}

func (b *bench) settled(name string) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	_, ok := b.running[name]
	return ok || b.failed[name]
}

// allSettled: every create was answered, and every instance made is
// RUNNING or FAILED.
func (b *bench) allSettled() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.acked)+b.createFailures < b.n {
		return false
	}
	for name := range b.acked {
		if _, ok := b.running[name]; !ok && !b.failed[name] {
			return false
		}
	}
	return true
}

// unsettled returns up to max acknowledged creates not yet seen RUNNING
// or FAILED, and whether there are more.
func (b *bench) unsettled(max int) ([]string, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []string
	for name := range b.acked {
		if _, ok := b.running[name]; !ok && !b.failed[name] {
			if len(out) == max {
				return out, true
			}
			out = append(out, name)
		}
	}
	return out, false
}

// fromGets asks the server for each of a few instances' states, as
// fromList does for all: near the end of a run the few unsettled are
// worth a request each, where listing a project of 100,000 instances was
// work enough to stall the server (and the run it measured) for seconds.
func (b *bench) fromGets(ctx context.Context, names []string) {
	for _, name := range names {
		in, err := b.c.Instance(ctx, b.project, name)
		if err != nil {
			continue
		}
		b.mu.Lock()
		switch in.State {
		case api.StateRunning:
			if _, ok := b.running[name]; !ok {
				b.running[name] = time.Time{}
			}
		case api.StateFailed:
			b.failed[name] = true
		}
		b.mu.Unlock()
	}
}

// fromList takes the states of what exists: RUNNING and FAILED the
// events did not bring (lost with a server that died), and acknowledged
// creates that are not there at all.
func (b *bench) fromList(ctx context.Context) error {
	ins, err := b.c.Instances(ctx, b.project, false, client.ListOptions{})
	if err != nil {
		return err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	exists := map[string]bool{}
	for _, in := range ins {
		if !strings.HasPrefix(in.Name, b.prefix) {
			continue
		}
		exists[in.Name] = true
		switch in.State {
		case api.StateRunning:
			if _, ok := b.running[in.Name]; !ok {
				b.running[in.Name] = time.Time{}
			}
		case api.StateFailed:
			b.failed[in.Name] = true
		}
	}
	b.lost = 0
	for name := range b.acked {
		if !exists[name] {
			b.lost++
		}
	}
	return nil
}
