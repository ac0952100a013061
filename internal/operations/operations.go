// Package operations runs long work started by API requests that answer
// 202 Accepted, and keeps its record (status, progress, error) in the store
// so clients can poll or wait for it, and so work cut short by a crash or a
// restart is picked up again (Resume) instead of being lost.
//
// Handlers must therefore be idempotent: running one twice to completion
// must have the effect of running it once.
package operations

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/kumocloud/kumo/api"
	"github.com/kumocloud/kumo/internal/errs"
	"github.com/kumocloud/kumo/internal/events"
	"github.com/kumocloud/kumo/internal/reqctx"
	"github.com/kumocloud/kumo/internal/store"
)

const prefix = "/operations/"

func key(id string) string { return prefix + id }

type record struct {
	api.Operation
	Args map[string]string `json:"args,omitempty"`
}

// Op is what a handler sees of its operation.
type Op struct {
	ID      string
	Project string
	Args    map[string]string
	m       *Manager
	last    int
}

// Progress records how far the work is (0-100).
func (o *Op) Progress(ctx context.Context, pct int) {
	pct = min(max(pct, 0), 99)
	if pct == o.last {
		return
	}
	o.last = pct
	o.m.update(ctx, o.ID, func(r *record) { r.Progress = pct })
}

// Handler does the work of one kind of operation.
type Handler func(ctx context.Context, op *Op) error

// Manager starts, runs, resumes and reports operations.
type Manager struct {
	s        store.Store
	log      *slog.Logger
	mu       sync.Mutex
	handlers map[string]Handler
	running  map[string]bool
	wg       sync.WaitGroup
	base     context.Context
	stop     context.CancelFunc
}

// New returns a manager on s.
func New(s store.Store, log *slog.Logger) *Manager {
	ctx, cancel := context.WithCancel(context.Background())
	return &Manager{s: s, log: log, handlers: map[string]Handler{}, running: map[string]bool{}, base: ctx, stop: cancel}
}

// Register sets the handler of a kind of operation.
func (m *Manager) Register(kind string, h Handler) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.handlers[kind] = h
}

// Start records a new operation and runs its handler in the background.
func (m *Manager) Start(ctx context.Context, project, kind, description, resource string, args map[string]string) (api.Operation, error) {
	m.mu.Lock()
	_, ok := m.handlers[kind]
	m.mu.Unlock()
	if !ok {
		return api.Operation{}, fmt.Errorf("operations: no handler for kind %q", kind)
	}
	t := time.Now().UTC()
	id, err := uuid.NewV7()
	if err != nil {
		return api.Operation{}, err
	}
	rec := record{Operation: api.Operation{
		ID: id.String(), Project: project, Kind: kind, Description: description, Status: api.OpRunning,
		Resource: resource, Actor: reqctx.Actor(ctx), CreatedAt: t, UpdatedAt: t,
	}, Args: args}
	_, err = m.s.Txn(ctx, []store.Cond{store.Absent(key(rec.ID))}, []store.Op{
		store.PutJSON(key(rec.ID), rec),
		events.Op(ctx, "operation", events.Created, project, "/v1/operations/"+rec.ID, rec.Operation),
	})
	if err != nil {
		return api.Operation{}, err
	}
	m.run(rec)
	return rec.Operation, nil
}

func (m *Manager) run(rec record) {
	m.mu.Lock()
	h := m.handlers[rec.Kind]
	if m.running[rec.ID] || h == nil || m.base.Err() != nil {
		m.mu.Unlock()
		return
	}
	m.running[rec.ID] = true
	m.wg.Add(1)
	m.mu.Unlock()
	go func() {
		defer m.wg.Done()
		defer func() {
			m.mu.Lock()
			delete(m.running, rec.ID)
			m.mu.Unlock()
		}()
		ctx := reqctx.WithActor(m.base, rec.Actor)
		log := m.log.With("operation", rec.ID, "kind", rec.Kind)
		ctx = reqctx.WithLogger(ctx, log)
		op := &Op{ID: rec.ID, Project: rec.Project, Args: rec.Args, m: m}
		err := h(ctx, op)
		if m.base.Err() != nil {
			// Shutting down: leave it running; Resume finishes it.
			log.Info("operation interrupted by shutdown; it resumes at next start")
			return
		}
		m.update(ctx, rec.ID, func(r *record) {
			if err != nil {
				r.Status, r.Error = api.OpFailed, err.Error()
			} else {
				r.Status, r.Progress = api.OpSucceeded, 100
			}
		})
		if err != nil {
			log.Warn("operation failed", "err", err)
		} else {
			log.Info("operation succeeded")
		}
	}()
}

// update applies fn to the record with CAS and emits an event.
func (m *Manager) update(ctx context.Context, id string, fn func(*record)) {
	_, _, err := store.UpdateJSON(ctx, m.s, key(id), func(r *record) error {
		fn(r)
		r.UpdatedAt = time.Now().UTC()
		return nil
	}, func(r *record) []store.Op {
		return []store.Op{events.Op(ctx, "operation", events.Updated, r.Project, "/v1/operations/"+id, r.Operation)}
	})
	if err != nil {
		m.log.Warn("operation update", "operation", id, "err", err)
	}
}

// Resume runs every operation the store says is unfinished: work that a
// crash or a shutdown cut short.
func (m *Manager) Resume(ctx context.Context) (int, error) {
	kvs, err := store.ListAll(ctx, m.s, prefix)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, kv := range kvs {
		var rec record
		if json.Unmarshal(kv.Value, &rec) != nil || rec.Done() {
			continue
		}
		m.log.Info("resuming operation", "operation", rec.ID, "kind", rec.Kind)
		m.run(rec)
		n++
	}
	return n, nil
}

// Get returns an operation.
func (m *Manager) Get(ctx context.Context, id string) (api.Operation, int64, error) {
	var rec record
	rev, err := store.GetJSON(ctx, m.s, key(id), &rec)
	if errors.Is(err, store.ErrNotFound) {
		return api.Operation{}, 0, errs.NotFound("operation %q not found", id)
	}
	return rec.Operation, rev, err
}

// Wait returns the operation once it has ended, or as it is when timeout
// passes or ctx ends.
func (m *Manager) Wait(ctx context.Context, id string, timeout time.Duration) (api.Operation, error) {
	op, rev, err := m.Get(ctx, id)
	if err != nil || op.Done() || timeout <= 0 {
		return op, err
	}
	wctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for ev := range m.s.Watch(wctx, key(id), rev+1) {
		if ev.Err != nil || ev.Type != store.EventPut || ev.KV.Key != key(id) {
			continue
		}
		var rec record
		if json.Unmarshal(ev.KV.Value, &rec) == nil {
			op = rec.Operation
			if op.Done() {
				return op, nil
			}
		}
	}
	// Timed out: report the latest state.
	if latest, _, err := m.Get(ctx, id); err == nil {
		op = latest
	}
	return op, nil
}

// List lists operations kept by keep, oldest first.
func (m *Manager) List(ctx context.Context, keep func(api.Operation) bool, after string, limit int) ([]api.Operation, string, error) {
	return store.Paginate(ctx, m.s, prefix, after, limit, func(kv store.KV) (api.Operation, bool, error) {
		var rec record
		if err := json.Unmarshal(kv.Value, &rec); err != nil {
			return api.Operation{}, false, err
		}
		return rec.Operation, keep(rec.Operation), nil
	})
}

// Prune deletes ended operations last updated before cutoff.
func (m *Manager) Prune(ctx context.Context, cutoff time.Time) (int, error) {
	return store.PruneJSON(ctx, m.s, prefix, func(r *record) bool { return r.Done() && r.UpdatedAt.Before(cutoff) })
}

// Shutdown stops running handlers (their operations stay unfinished in the
// store, to be resumed) and waits for them to return.
func (m *Manager) Shutdown() {
	m.stop()
	m.wg.Wait()
}
