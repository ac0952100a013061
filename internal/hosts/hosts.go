// Package hosts owns the compute hosts, the agents that bring them, join
// tokens, and host liveness.
//
// Liveness is not stored: heartbeats only touch memory in the server that
// receives them, so 10,000 hosts beating cost no store writes at all (as
// Nomad's TTL timers and Kubernetes' node leases keep heartbeats cheap).
// Only a change of a host's state (ONLINE <-> OFFLINE) is written. After a
// server start every host gets a full grace period before it can be
// declared offline. Keys: /hosts/{name}, /agents/{id}, /jointokens/{id}.
package hosts

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kumocloud/kumo/api"
	"github.com/kumocloud/kumo/internal/errs"
	"github.com/kumocloud/kumo/internal/events"
	secretpkg "github.com/kumocloud/kumo/internal/secret"
	"github.com/kumocloud/kumo/internal/store"
	"github.com/kumocloud/kumo/internal/validate"
)

const (
	hostsPrefix  = "/hosts/"
	agentsPrefix = "/agents/"
	joinPrefix   = "/jointokens/"
	// JoinPrefix starts every join token.
	JoinPrefix = "kumo-join."
	// CredentialPrefix starts every agent credential.
	CredentialPrefix = "kumoa_"
)

// DefaultRatios are the allocation ratios of a new host, as the course
// material teaches.
var DefaultRatios = api.Ratios{CPU: 16, Memory: 1.5, Disk: 1}

type hostRecord struct {
	api.Host
}

type agentRecord struct {
	api.Agent
	SecretHash string `json:"secret_hash"`
}

type joinRecord struct {
	api.JoinToken
	SecretHash string `json:"secret_hash"`
}

// Service is the host registry.
type Service struct {
	s       store.Store
	caFP    string
	grace   time.Duration
	started time.Time
	// stopping: this server is shutting down (see Stopping).
	stopping atomic.Bool

	mu         sync.Mutex
	lastSeen   map[string]time.Time     // host -> last heartbeat
	reconciled map[string]api.Heartbeat // host -> its agent's last reconcile and network sync, as it said
	// principals keeps each agent's principal with the revision of the
	// record it was made from (see Authenticate).
	principals map[string]principalAt
}

// New returns the registry. caFP is put in join tokens; grace is how long a
// host may stay silent before it is OFFLINE.
func New(s store.Store, caFP string, grace time.Duration) *Service {
	if grace <= 0 {
		grace = 15 * time.Second
	}
	return &Service{s: s, caFP: caFP, grace: grace, started: time.Now(), lastSeen: map[string]time.Time{}, reconciled: map[string]api.Heartbeat{}, principals: map[string]principalAt{}}
}

// Grace is how long a host may be silent.
func (svc *Service) Grace() time.Duration { return svc.grace }

func now() time.Time { return time.Now().UTC().Truncate(time.Millisecond) }

// CreateJoinToken makes a token agents join with. It carries the server
// CA's fingerprint, so an agent given only the URL and the token can verify
// the server (as k3s's tokens do).
func (svc *Service) CreateJoinToken(ctx context.Context, req api.JoinTokensPost) (api.JoinToken, error) {
	ttl := time.Duration(req.TTLSeconds) * time.Second
	switch {
	case req.TTLSeconds < 0:
		return api.JoinToken{}, errs.Invalid("ttl_seconds", "ttl_seconds must not be negative")
	case ttl == 0:
		ttl = 24 * time.Hour
	case ttl > 365*24*time.Hour:
		return api.JoinToken{}, errs.Invalid("ttl_seconds", "ttl_seconds is over a year")
	}
	if err := validate.Text("description", req.Description, 256); err != nil {
		return api.JoinToken{}, err
	}
	id, secret := secretpkg.Hex(6), secretpkg.Hex(20)
	t := now()
	rec := joinRecord{JoinToken: api.JoinToken{ID: id, Description: req.Description, CreatedAt: t, ExpiresAt: t.Add(ttl)}, SecretHash: secretpkg.Hash(secret)}
	if _, err := svc.s.Txn(ctx, []store.Cond{store.Absent(joinPrefix + id)}, []store.Op{
		store.PutJSON(joinPrefix+id, rec),
		events.Op(ctx, "jointoken", events.Created, "", "/v1/join-tokens/"+id, rec.JoinToken),
	}); err != nil {
		return api.JoinToken{}, err
	}
	out := rec.JoinToken
	out.Token = JoinPrefix + svc.caFP + "." + id + "." + secret
	return out, nil
}

// ParseJoinToken splits a join token into the CA fingerprint, id and secret.
func ParseJoinToken(tok string) (fp, id, secret string, err error) {
	rest, ok := strings.CutPrefix(tok, JoinPrefix)
	parts := strings.Split(rest, ".")
	if !ok || len(parts) != 3 || len(parts[0]) != 64 {
		return "", "", "", errs.Invalid("join_token", "malformed join token: expected %s<ca-fingerprint>.<id>.<secret>", JoinPrefix)
	}
	return parts[0], parts[1], parts[2], nil
}

// ListJoinTokens lists join tokens (without secrets).
func (svc *Service) ListJoinTokens(ctx context.Context) ([]api.JoinToken, error) {
	items, err := store.ListJSON[joinRecord](ctx, svc.s, joinPrefix)
	out := []api.JoinToken{}
	for _, it := range items {
		out = append(out, it.Value.JoinToken)
	}
	return out, err
}

// DeleteJoinToken revokes a join token (agents that joined stay).
func (svc *Service) DeleteJoinToken(ctx context.Context, id string) error {
	err := svc.s.Delete(ctx, joinPrefix+id, 0)
	if errors.Is(err, store.ErrNotFound) {
		return errs.NotFound("join token %q not found", id)
	}
	return err
}

func validateSpecs(specs []api.HostSpec) error {
	if len(specs) == 0 {
		return errs.Invalid("hosts", "an agent must bring at least one host")
	}
	seen := map[string]bool{}
	for i, h := range specs {
		f := fmt.Sprintf("hosts[%d]", i)
		if err := validate.Name(f+".name", h.Name); err != nil {
			return err
		}
		if seen[h.Name] {
			return errs.Invalid(f+".name", "host %q twice", h.Name)
		}
		seen[h.Name] = true
		if len(h.Kinds) == 0 {
			return errs.Invalid(f+".kinds", "host %q offers no driver kind", h.Name)
		}
		for _, k := range h.Kinds {
			if k != api.TypeVM && k != api.TypeContainer {
				return errs.Invalid(f+".kinds", "kind %q: use vm or container", k)
			}
		}
		if h.FenceGraceSeconds < 0 || h.FenceGraceSeconds > 86400 {
			return errs.Invalid(f+".fence_grace_seconds", "host %q: fence_grace_seconds must be between 0 and 86400", h.Name)
		}
		if err := validateCapabilities(f+".capabilities", h); err != nil {
			return err
		}
		if h.Capacity.VCPUs < 1 || h.Capacity.MemoryMiB < 1 || h.Capacity.DiskGiB < 0 {
			return errs.Invalid(f+".capacity", "host %q: capacity must have vcpus and memory", h.Name)
		}
		// An agent is no more trusted than a tenant: what it says of its
		// hosts is shown to admins and read by requirement expressions.
		if err := validate.Labels(f+".attributes", h.Attributes); err != nil {
			return err
		}
		if err := validate.Text(f+".address", h.Address, 255); err != nil {
			return err
		}
	}
	return nil
}

// Heartbeat marks hosts alive now, and keeps when their agent last
// reconciled its driver with a complete assignment list and synced the
// host's network, as hb says. Memory only.
func (svc *Service) Heartbeat(hosts []string, hb api.Heartbeat) {
	t := time.Now()
	svc.mu.Lock()
	for _, h := range hosts {
		svc.lastSeen[h] = t
		if !hb.ReconciledAt.IsZero() || !hb.NetworkSyncedAt.IsZero() {
			svc.reconciled[h] = api.Heartbeat{ReconciledAt: hb.ReconciledAt, NetworkSyncedAt: hb.NetworkSyncedAt}
		}
	}
	svc.mu.Unlock()
}

// liveness fills what memory knows of a host: its last heartbeat and its
// agent's last reconcile.
func (svc *Service) liveness(h *api.Host) {
	_, h.LastSeen = svc.Alive(h.Name)
	svc.mu.Lock()
	hb := svc.reconciled[h.Name]
	svc.mu.Unlock()
	h.ReconciledAt, h.NetworkSyncedAt = hb.ReconciledAt, hb.NetworkSyncedAt
}

// Alive reports whether a host beat within the grace period (a server that
// just started gives every host a full grace period first).
func (svc *Service) Alive(host string) (bool, time.Time) {
	svc.mu.Lock()
	seen, ok := svc.lastSeen[host]
	svc.mu.Unlock()
	return svc.alive(seen, ok, time.Now()), seen
}

func (svc *Service) alive(seen time.Time, ok bool, now time.Time) bool {
	since := seen
	if !ok || seen.Before(svc.started) {
		since = svc.started
	}
	return svc.stopping.Load() || now.Sub(since) < svc.grace
}

// AliveEach is Alive for many hosts at one moment, under one lock: a
// scheduler round asks it of every host (10,000 locks and clock reads a
// round, contended by heartbeats, were half of building its snapshot).
func (svc *Service) AliveEach(hosts []string) []bool {
	out := make([]bool, len(hosts))
	now := time.Now()
	svc.mu.Lock()
	defer svc.mu.Unlock()
	for i, h := range hosts {
		seen, ok := svc.lastSeen[h]
		out[i] = svc.alive(seen, ok, now)
	}
	return out
}

// Stopping tells the registry that this server is shutting down: its
// listeners are closed, so it hears no heartbeats while it drains its
// requests (up to 10 s), and a silence it cannot hear is no evidence that
// a host is lost. From now on every host counts as alive here; the next
// server gives every host a full grace from its own start. (Without it, a
// server stopped with SIGTERM marked hosts OFFLINE and their instances
// UNKNOWN on its way out: 7 of 10,000 in a 100,000-instance run.)
func (svc *Service) Stopping() { svc.stopping.Store(true) }

// List returns host records by name, at most limit (0: all) after the
// name after, and the name to pass as after for the next page ("" at the
// end).
func (svc *Service) List(ctx context.Context, after string, limit int) ([]api.Host, string, error) {
	return store.Paginate(ctx, svc.s, hostsPrefix, after, limit, func(kv store.KV) (api.Host, bool, error) {
		var h hostRecord
		if err := store.Decode(kv, &h); err != nil {
			return api.Host{}, false, err
		}
		h.Revision = kv.Revision
		svc.liveness(&h.Host)
		return h.Host, true, nil
	})
}

// Get returns one host.
func (svc *Service) Get(ctx context.Context, name string) (api.Host, error) {
	var h hostRecord
	rev, err := store.GetJSON(ctx, svc.s, hostsPrefix+name, &h)
	if errors.Is(err, store.ErrNotFound) {
		return api.Host{}, errs.NotFound("host %q not found", name)
	}
	h.Revision = rev
	svc.liveness(&h.Host)
	return h.Host, err
}

// Patch changes admin settings of a host.
func (svc *Service) Patch(ctx context.Context, name string, p api.HostPatch) (api.Host, error) {
	if err := validate.Labels("labels", p.Labels); err != nil {
		return api.Host{}, err
	}
	if r := p.Ratios; r != nil && (r.CPU <= 0 || r.Memory <= 0 || r.Disk <= 0 || r.CPU > 1000 || r.Memory > 100 || r.Disk > 100) {
		return api.Host{}, errs.Invalid("ratios", "ratios must be > 0 (cpu up to 1000, memory and disk up to 100)")
	}
	return svc.update(ctx, name, func(h *hostRecord) {
		if p.Enabled != nil {
			h.Enabled = *p.Enabled
		}
		if p.Draining != nil {
			h.Draining = *p.Draining
		}
		if p.Labels != nil {
			h.Labels = p.Labels
		}
		if p.Ratios != nil {
			h.Ratios = *p.Ratios
		}
	})
}

// SetState writes a host's ONLINE/OFFLINE state.
func (svc *Service) SetState(ctx context.Context, name, state string) (api.Host, error) {
	return svc.update(ctx, name, func(h *hostRecord) { h.State = state })
}

// StateChange is the write that moves a host, as it was read (at
// h.Revision), to state: the condition and the operations, for a
// transaction that changes the host's instances in the same decision (the
// node controller: a host goes OFFLINE together with its instances going
// UNKNOWN).
func StateChange(ctx context.Context, h api.Host, state string) (store.Cond, []store.Op) {
	cond := store.At(hostsPrefix+h.Name, h.Revision)
	h.State, h.UpdatedAt, h.Revision = state, now(), 0
	h.LastSeen, h.ReconciledAt, h.NetworkSyncedAt = time.Time{}, time.Time{}, time.Time{} // memory, not the record
	return cond, []store.Op{store.PutJSON(hostsPrefix+h.Name, hostRecord{h}), events.Op(ctx, "host", events.Updated, "", "/v1/hosts/"+h.Name, h)}
}

func (svc *Service) update(ctx context.Context, name string, fn func(*hostRecord)) (api.Host, error) {
	h, rev, err := store.UpdateJSON(ctx, svc.s, hostsPrefix+name, func(h *hostRecord) error {
		fn(h)
		h.UpdatedAt = now()
		return nil
	}, func(h *hostRecord) []store.Op {
		return []store.Op{events.Op(ctx, "host", events.Updated, "", "/v1/hosts/"+name, h.Host)}
	})
	if errors.Is(err, store.ErrNotFound) {
		return api.Host{}, errs.NotFound("host %q not found", name)
	}
	h.Revision = rev
	return h.Host, err
}

// Prefix is the key prefix of hosts (the compute cache follows it).
const Prefix = hostsPrefix
