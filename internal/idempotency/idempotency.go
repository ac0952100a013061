// Package idempotency keeps what a create answered, so that a retry with
// the same Idempotency-Key gets the first answer instead of making a
// second object or a "name exists" for the object its own first attempt
// made.
//
// The server's middleware claims a key before the handler runs (a
// pending record) and keeps the answer after it. That alone leaves a
// window: a crash after the object's commit and before the answer is
// kept. So a create also completes the record inside the very transaction
// that makes the object (Done): once the object exists, so does the
// answer. Keys: /idempotency/<sha256 of user, method, path and key>.
package idempotency

import (
	"bytes"
	"context"
	"encoding/json"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/kumocloud/kumo/internal/store"
)

// Prefix is the key prefix this package owns.
const Prefix = "/idempotency/"

// Record is a claimed key: pending while its request runs, then the
// answer to replay.
type Record struct {
	Pending  bool   `json:"pending"`
	BodyHash string `json:"body_hash"`
	Status   int    `json:"status"`
	Body     []byte `json:"body,omitempty"` // exact bytes (base64 in JSON)
	Location string `json:"location,omitempty"`
	// FillRevision: the record was written in the object's own
	// transaction, before its revision was known; the answer's "revision"
	// is the record's own (the same transaction's).
	FillRevision bool      `json:"fill_revision,omitempty"`
	CreatedAt    time.Time `json:"created_at"`
	// Instance is the server process that took the request.
	Instance string `json:"instance,omitempty"`
}

// Claim is a request's hold on a key, carried in its context.
type Claim struct {
	Key       string // the record's store key
	BodyHash  string
	CreatedAt time.Time
	Instance  string
	// completed is set when Done made the completing write, so the
	// middleware need not write the answer again (a write that would
	// only fail its revision check, at the cost of a store round trip).
	completed *atomic.Bool
}

// Completed says whether a create under the claim in ctx added the
// record's completing write to its transaction (Done). A 201 answer after
// that means the transaction committed, and the record holds the answer.
func Completed(ctx context.Context) bool {
	c, ok := ctx.Value(claimKey{}).(Claim)
	return ok && c.completed != nil && c.completed.Load()
}

type claimKey struct{}

// WithClaim carries a claim to the services the request calls.
func WithClaim(ctx context.Context, c Claim) context.Context {
	c.completed = new(atomic.Bool)
	return context.WithValue(ctx, claimKey{}, c)
}

// Done returns the write that completes the request's record with obj,
// the object the create answers with (201), for the transaction that
// makes it; nothing when the request holds no key. Every service create
// reached by an endpoint marked idempotent adds it to its transaction.
func Done(ctx context.Context, obj any) []store.Op {
	c, ok := ctx.Value(claimKey{}).(Claim)
	if !ok {
		return nil
	}
	// Encoded as the API encodes answers, so the replay is byte for byte
	// the first answer, its revision aside.
	var body bytes.Buffer
	enc := json.NewEncoder(&body)
	enc.SetEscapeHTML(false)
	if enc.Encode(obj) != nil {
		return nil
	}
	if c.completed != nil {
		c.completed.Store(true)
	}
	return []store.Op{store.PutJSON(c.Key, Record{BodyHash: c.BodyHash, Status: 201, Body: body.Bytes(), FillRevision: true, CreatedAt: c.CreatedAt, Instance: c.Instance})}
}

// Answer is the body to replay for a record read at revision rev: the
// kept bytes, with the top-level "revision" set to rev when the record
// was written in the object's transaction.
func (r Record) Answer(rev int64) []byte {
	if !r.FillRevision {
		return r.Body
	}
	start, end, ok := topLevelValue(r.Body, "revision")
	if !ok {
		return r.Body
	}
	out := append([]byte(nil), r.Body[:start]...)
	out = strconv.AppendInt(out, rev, 10)
	return append(out, r.Body[end:]...)
}

// topLevelValue finds where the value of a top-level key of a JSON object
// starts and ends in b.
func topLevelValue(b []byte, key string) (int, int, bool) {
	dec := json.NewDecoder(bytes.NewReader(b))
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return 0, 0, false
	}
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return 0, 0, false
		}
		before := dec.InputOffset()
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return 0, 0, false
		}
		if t == key {
			after := int(dec.InputOffset())
			// The value is the last len(v) bytes before the offset (what
			// precedes it is the colon and white space).
			return after - len(v), after, int(before) <= after-len(v)
		}
	}
	return 0, 0, false
}
