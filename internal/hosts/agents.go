package hosts

import (
	"context"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/kumocloud/kumo/api"
	"github.com/kumocloud/kumo/internal/errs"
	"github.com/kumocloud/kumo/internal/events"
	secretpkg "github.com/kumocloud/kumo/internal/secret"
	"github.com/kumocloud/kumo/internal/store"
	"github.com/kumocloud/kumo/internal/validate"
)

// Ownership. A host belongs to the agent identity that created it: the
// agent's id (hostRecord.Agent), proved by its credential, never its name,
// which any agent may choose. An agent may register hosts that do not
// exist yet or that are already its own; a host of another agent is
// refused, whatever the names, until a cloud admin deletes it (Delete).
// The agent record lists the agent's hosts, kept equal to the hosts that
// name it by writing both in the same transactions (compare-and-swap on
// the agent record too), so an authenticated agent's host set is one read.

// Join registers an agent and its hosts with a valid join token and returns
// the agent's credential (once). A join retried with the same credential
// secret is the same agent and finishes what the first attempt began.
func (svc *Service) Join(ctx context.Context, req api.AgentsPost) (api.Agent, error) {
	_, id, secret, err := ParseJoinToken(req.JoinToken)
	if err != nil {
		return api.Agent{}, err
	}
	var jt joinRecord
	if _, err := store.GetJSON(ctx, svc.s, joinPrefix+id, &jt); err != nil || subtle.ConstantTimeCompare([]byte(secretpkg.Hash(secret)), []byte(jt.SecretHash)) != 1 {
		return api.Agent{}, errs.Unauthorized("join token not recognised")
	}
	if time.Now().After(jt.ExpiresAt) {
		return api.Agent{}, errs.Unauthorized("join token expired at %s; ask an admin for a new one", jt.ExpiresAt.Format(time.RFC3339))
	}
	if err := validate.Name("name", req.Name); err != nil {
		return api.Agent{}, err
	}
	// One driver, or several combined on one host ("container,qemu").
	for _, d := range strings.Split(req.Driver, ",") {
		if err := validate.Name("driver", d); err != nil {
			return api.Agent{}, err
		}
	}
	if err := validateSpecs(req.Hosts); err != nil {
		return api.Agent{}, err
	}
	aid, asecret := secretpkg.Hex(8), secretpkg.Hex(24)
	if req.CredentialSecret != "" {
		if _, err := hex.DecodeString(req.CredentialSecret); err != nil || len(req.CredentialSecret) < 32 || len(req.CredentialSecret) > 128 {
			return api.Agent{}, errs.Invalid("credential_secret", "credential_secret must be 32 to 128 hex digits")
		}
		// The id follows from the secret, so only its holder can be this
		// agent again.
		asecret = strings.ToLower(req.CredentialSecret)
		aid = secretpkg.Hash("kumo-agent:" + asecret)[:16]
	}
	rec := agentRecord{Agent: api.Agent{ID: aid, Name: req.Name, Driver: req.Driver, CreatedAt: now()}, SecretHash: secretpkg.Hash(asecret)}
	rec, err = svc.register(ctx, rec, req.Hosts, true)
	if err != nil {
		return api.Agent{}, err
	}
	out := rec.Agent
	out.Credential = CredentialPrefix + aid + "_" + asecret
	return out, nil
}

// PutAgentHosts re-registers an agent's hosts (capacity and attributes may
// have changed since it joined). The agent keeps the hosts it had; it may
// add hosts that do not exist yet, never another agent's.
func (svc *Service) PutAgentHosts(ctx context.Context, agentID string, specs []api.HostSpec) (api.Agent, error) {
	if err := validateSpecs(specs); err != nil {
		return api.Agent{}, err
	}
	var rec agentRecord
	if _, err := store.GetJSON(ctx, svc.s, agentsPrefix+agentID, &rec); err != nil {
		return api.Agent{}, errs.NotFound("agent %q not found", agentID)
	}
	rec, err := svc.register(ctx, rec, specs, false)
	return rec.Agent, err
}

// register writes the hosts of specs for the agent of rec (an agent joining,
// or re-registering), retrying when the store changed underneath.
func (svc *Service) register(ctx context.Context, rec agentRecord, specs []api.HostSpec, joining bool) (agentRecord, error) {
	for attempt := 0; attempt < 10; attempt++ {
		out, err := svc.registerOnce(ctx, rec, specs, joining)
		if !errors.Is(err, store.ErrConflict) {
			if err == nil {
				svc.Heartbeat(out.Hosts, api.Heartbeat{})
			}
			return out, err
		}
	}
	return rec, errs.Conflict("hosts changed while registering; try again")
}

// registerOnce writes the hosts in chunks (etcd limits operations per
// transaction), each host conditioned on being absent or the agent's own,
// and every chunk on the agent record as read first (absent, for a first
// join): a host is never written for an agent deleted meanwhile. The last
// chunk writes the agent record. A crash between chunks leaves hosts
// owned by the agent's id: its retry (same id) carries on. Admin settings
// of existing hosts (enabled, draining, labels, ratios) stay.
func (svc *Service) registerOnce(ctx context.Context, rec agentRecord, specs []api.HostSpec, joining bool) (agentRecord, error) {
	names := make([]string, len(specs))
	for i, s := range specs {
		names[i] = s.Name
	}
	cur, agentCond, err := svc.agentToWrite(ctx, rec, names, joining)
	if err != nil {
		return rec, err
	}
	const chunk = 50
	for i := 0; i < len(specs); i += chunk {
		conds := []store.Cond{agentCond}
		var ops []store.Op
		for _, spec := range specs[i:min(i+chunk, len(specs))] {
			var h hostRecord
			rev, err := store.GetJSON(ctx, svc.s, hostsPrefix+spec.Name, &h)
			switch {
			case errors.Is(err, store.ErrNotFound):
				t := now()
				h = hostRecord{api.Host{Meta: api.Meta{ID: secretpkg.Hex(8), Name: spec.Name, CreatedAt: t}, Enabled: true, Ratios: DefaultRatios, State: api.HostOnline}}
				conds = append(conds, store.Absent(hostsPrefix+spec.Name))
				ops = append(ops, events.Op(ctx, "host", events.Created, "", "/v1/hosts/"+spec.Name, nil))
			case err != nil:
				return rec, err
			case h.Agent != cur.ID:
				return rec, svc.ownedElsewhere(ctx, h)
			default:
				conds = append(conds, store.At(hostsPrefix+spec.Name, rev))
			}
			h.Agent, h.Driver = cur.ID, cur.Driver
			h.Address, h.Kinds, h.Capacity, h.Attributes = spec.Address, spec.Kinds, spec.Capacity, spec.Attributes
			h.FenceGraceSeconds = spec.FenceGraceSeconds
			h.Capabilities = spec.Capabilities
			h.UpdatedAt = now()
			ops = append(ops, store.PutJSON(hostsPrefix+spec.Name, h))
		}
		if i+chunk >= len(specs) {
			ops = append(ops, store.PutJSON(agentsPrefix+cur.ID, cur))
			if agentCond.Revision == 0 {
				ops = append(ops, events.Op(ctx, "agent", events.Created, "", "/v1/agents/"+cur.ID, cur.Agent))
			}
		}
		if _, err := svc.s.Txn(ctx, conds, ops); err != nil {
			return rec, err
		}
	}
	return cur, nil
}

// agentToWrite reads the agent record and returns it as it will be
// written (its hosts: those it still owns, plus names), and the condition
// every chunk puts on it.
func (svc *Service) agentToWrite(ctx context.Context, rec agentRecord, names []string, joining bool) (agentRecord, store.Cond, error) {
	var cur agentRecord
	arev, err := store.GetJSON(ctx, svc.s, agentsPrefix+rec.ID, &cur)
	switch {
	case errors.Is(err, store.ErrNotFound) && joining:
		rec.Hosts = names
		return rec, store.Absent(agentsPrefix + rec.ID), nil
	case errors.Is(err, store.ErrNotFound):
		// Its last host was deleted since it authenticated.
		return rec, store.Cond{}, errs.Unauthorized("agent %s is no longer registered (a cloud admin deleted its hosts); join again", rec.ID)
	case err != nil:
		return rec, store.Cond{}, err
	case subtle.ConstantTimeCompare([]byte(cur.SecretHash), []byte(rec.SecretHash)) != 1:
		return rec, store.Cond{}, errs.Conflict("agent id %s is taken; join again", rec.ID)
	}
	if joining {
		cur.Name, cur.Driver = rec.Name, rec.Driver
	}
	// Hosts it had and does not bring now stay its own (they go OFFLINE
	// unless it brings them again) - unless they are no longer its, which
	// a record written before ownership was checked may still claim.
	var kept []string
	for _, n := range cur.Hosts {
		if slices.Contains(names, n) {
			continue
		}
		var h hostRecord
		if _, err := store.GetJSON(ctx, svc.s, hostsPrefix+n, &h); err == nil && h.Agent == cur.ID {
			kept = append(kept, n)
		} else if err != nil && !errors.Is(err, store.ErrNotFound) {
			return rec, store.Cond{}, err
		}
	}
	cur.Hosts = append(kept, names...)
	return cur, store.At(agentsPrefix+cur.ID, arev), nil
}

// ownedElsewhere is the refusal of a host another agent owns, saying what
// the operator can do about it.
func (svc *Service) ownedElsewhere(ctx context.Context, h hostRecord) error {
	var other agentRecord
	who := fmt.Sprintf("agent %s", h.Agent)
	if _, err := store.GetJSON(ctx, svc.s, agentsPrefix+h.Agent, &other); err == nil {
		who = fmt.Sprintf("agent %q (id %s, joined %s)", other.Name, other.ID, other.CreatedAt.Format(time.RFC3339))
	} else if errors.Is(err, store.ErrNotFound) {
		who = fmt.Sprintf("agent %s, which never finished joining", h.Agent)
	}
	return errs.Conflict("host %q belongs to %s, and a host never passes to another agent; if that agent is gone for good, a cloud admin deletes the host ('kumo host delete %s') and this agent then brings it again", h.Name, who, h.Name)
}

// Delete removes a host, and takes it from its agent; an agent left
// without hosts is removed too, so its credential stops working. The
// caller checks that nothing lives on the host any more.
func (svc *Service) Delete(ctx context.Context, name string) error {
	for attempt := 0; attempt < 10; attempt++ {
		var h hostRecord
		hrev, err := store.GetJSON(ctx, svc.s, hostsPrefix+name, &h)
		if errors.Is(err, store.ErrNotFound) {
			return errs.NotFound("host %q not found", name)
		}
		if err != nil {
			return err
		}
		conds := []store.Cond{store.At(hostsPrefix+name, hrev)}
		ops := []store.Op{store.Del(hostsPrefix + name), events.Op(ctx, "host", events.Deleted, "", "/v1/hosts/"+name, nil)}
		var ag agentRecord
		arev, err := store.GetJSON(ctx, svc.s, agentsPrefix+h.Agent, &ag)
		switch {
		case err == nil:
			ag.Hosts = slices.DeleteFunc(ag.Hosts, func(n string) bool { return n == name })
			conds = append(conds, store.At(agentsPrefix+ag.ID, arev))
			if len(ag.Hosts) == 0 {
				ops = append(ops, store.Del(agentsPrefix+ag.ID), events.Op(ctx, "agent", events.Deleted, "", "/v1/agents/"+ag.ID, nil))
			} else {
				ops = append(ops, store.PutJSON(agentsPrefix+ag.ID, ag))
			}
		case !errors.Is(err, store.ErrNotFound):
			return err
		}
		_, err = svc.s.Txn(ctx, conds, ops)
		if errors.Is(err, store.ErrConflict) {
			continue
		}
		if err == nil {
			svc.mu.Lock()
			delete(svc.lastSeen, name)
			delete(svc.reconciled, name)
			svc.mu.Unlock()
		}
		return err
	}
	return errs.Conflict("host %q changed while being deleted; try again", name)
}

// AgentPrincipal is an authenticated agent. One is shared by the
// requests of an agent (see Authenticate): nobody may change it.
type AgentPrincipal struct {
	ID    string
	Name  string
	Hosts map[string]bool
}

// principalAt is an agent's principal and the revision and secret hash
// of the record it was made from.
type principalAt struct {
	rev        int64
	secretHash string
	p          *AgentPrincipal
}

// Authenticate checks an agent credential. Every request of an agent
// reads its record (a record deleted or changed is seen at once), but the
// principal - a set of up to thousands of hosts - is made again only when
// the record changed: decoding the record and building the set for each
// of the agents' requests (usage batches, long polls, reports) was a
// tenth of the server's CPU at 10,000 hosts.
func (svc *Service) Authenticate(ctx context.Context, cred string) (*AgentPrincipal, error) {
	rest, _ := strings.CutPrefix(cred, CredentialPrefix)
	id, secret, ok := strings.Cut(rest, "_")
	if !ok {
		return nil, errs.Unauthorized("malformed agent credential")
	}
	unknown := errs.Unauthorized("agent credential not recognised: the agent never joined, or a cloud admin deleted its hosts; remove the agent's state (agent.json) and join again with a join token")
	kv, err := svc.s.Get(ctx, agentsPrefix+id)
	if err != nil {
		if errors.Is(err, store.ErrNotFound) {
			svc.mu.Lock()
			delete(svc.principals, id)
			svc.mu.Unlock()
		}
		return nil, unknown
	}
	hash := []byte(secretpkg.Hash(secret))
	svc.mu.Lock()
	known, ok := svc.principals[id]
	svc.mu.Unlock()
	if !ok || known.rev != kv.Revision {
		var rec agentRecord
		if store.Decode(kv, &rec) != nil {
			return nil, unknown
		}
		known = principalAt{rev: kv.Revision, secretHash: rec.SecretHash, p: &AgentPrincipal{ID: rec.ID, Name: rec.Name, Hosts: make(map[string]bool, len(rec.Hosts))}}
		for _, h := range rec.Hosts {
			known.p.Hosts[h] = true
		}
		svc.mu.Lock()
		svc.principals[id] = known
		svc.mu.Unlock()
	}
	if subtle.ConstantTimeCompare(hash, []byte(known.secretHash)) != 1 {
		return nil, unknown
	}
	return known.p, nil
}
