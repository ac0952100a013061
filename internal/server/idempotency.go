package server

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"net/http"
	"time"

	"github.com/kumocloud/kumo/internal/errs"
	"github.com/kumocloud/kumo/internal/idempotency"
	"github.com/kumocloud/kumo/internal/server/response"
	"github.com/kumocloud/kumo/internal/store"
)

// Idempotency-Key: a create retried with the same key (by the same caller,
// on the same path, with the same body) returns the first result instead of
// creating twice, for idempotencyTTL. Records are in the store, so a retry
// after a server crash or on another server behaves the same; a create
// completes its record in its own transaction (idempotency.Done), so not
// even a crash right after the commit loses the answer.
const (
	idempotencyPrefix = idempotency.Prefix
	idempotencyTTL    = 24 * time.Hour
	// A pending record older than this belongs to a request that died
	// (server killed mid-request); a retry may take it over.
	idempotencyStale = time.Minute
	maxBody          = 1 << 20
)

type idemRecord = idempotency.Record

// captureWriter keeps a handler's response to store it and replay it.
type captureWriter struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (c *captureWriter) Header() http.Header { return c.header }
func (c *captureWriter) WriteHeader(s int) {
	if c.status == 0 {
		c.status = s
	}
}
func (c *captureWriter) Write(b []byte) (int, error) {
	if c.status == 0 {
		c.status = http.StatusOK
	}
	return c.body.Write(b)
}

func (s *Server) idempotent(w http.ResponseWriter, r *request, ep Endpoint) {
	ctx := r.Context()
	body, err := io.ReadAll(io.LimitReader(r.Body, maxBody+1))
	if err != nil {
		response.Error(errs.Invalid("body", "reading the request body: %v", err)).Render(w, r.Request)
		return
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	bh := sha256.Sum256(body)
	bodyHash := hex.EncodeToString(bh[:])
	// By user id, not name: a later user of a deleted user's name must
	// never be answered with the first one's replies.
	kh := sha256.Sum256([]byte(r.p.UserID + "\x00" + r.p.User + "\x00" + r.Method + "\x00" + r.URL.Path + "\x00" + r.Header.Get("Idempotency-Key")))
	key := idempotencyPrefix + hex.EncodeToString(kh[:])

	rec := idemRecord{Pending: true, BodyHash: bodyHash, CreatedAt: time.Now().UTC(), Instance: s.instance}
	// The record and its expiry index key go together (see
	// idempotency.Prune).
	rev, err := s.store.Txn(ctx, []store.Cond{store.Absent(key)}, idempotency.ClaimOps(key, rec))
	if errors.Is(err, store.ErrConflict) {
		var old idemRecord
		orev, gerr := store.GetJSON(ctx, s.store, key, &old)
		switch {
		case gerr != nil:
			response.Error(gerr).Render(w, r.Request)
			return
		case old.BodyHash != bodyHash:
			response.Error(errs.Conflict("this Idempotency-Key was used for a different request; use a new key")).Render(w, r.Request)
			return
		case !old.Pending:
			replay(w, old, orev)
			return
		case !s.staleIdempotency(old):
			response.Error(errs.Conflict("a request with this Idempotency-Key is still in progress; retry in a moment")).Render(w, r.Request)
			return
		}
		// A stale pending record: its request died; take it over.
		rev, err = s.store.Txn(ctx, []store.Cond{store.At(key, orev)}, idempotency.ClaimOps(key, rec))
	}
	if err != nil {
		response.Error(err).Render(w, r.Request)
		return
	}
	cw := &captureWriter{header: http.Header{}}
	claim := idempotency.Claim{Key: key, BodyHash: bodyHash, CreatedAt: rec.CreatedAt, Instance: s.instance}
	r.Request = r.Request.WithContext(idempotency.WithClaim(ctx, claim))
	ep.handler(s, r).Render(cw, r.Request)
	done := idemRecord{BodyHash: bodyHash, Status: cw.status, Body: cw.body.Bytes(), Location: cw.header.Get("Location"), CreatedAt: rec.CreatedAt}
	// Use a context that outlives a client hang-up: the work is done, its
	// result must be kept for the retry.
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	// A create that succeeded has completed the record in its own
	// transaction: the record is no longer at rev, and stays as it is
	// (no need to try: Done says it wrote it).
	switch {
	case cw.status == http.StatusCreated && idempotency.Completed(r.Context()):
	case cw.status >= 500:
		s.store.Delete(sctx, key, rev) // let a retry try again
	default:
		if _, err := s.store.Update(sctx, key, store.MustJSON(done), rev); err != nil && !errors.Is(err, store.ErrConflict) {
			s.log.Warn("saving idempotency record", "err", err)
		}
	}
	for k, v := range cw.header {
		w.Header()[k] = v
	}
	w.WriteHeader(cw.status)
	w.Write(cw.body.Bytes())
}

// staleIdempotency: a pending record belongs to a request that died. A
// server alone on its store (embedded etcd) knows that any other process's
// pending record is dead; servers sharing a store wait idempotencyStale.
func (s *Server) staleIdempotency(rec idemRecord) bool {
	if s.alone && rec.Instance != s.instance {
		return true
	}
	return time.Since(rec.CreatedAt) >= idempotencyStale
}

func replay(w http.ResponseWriter, rec idemRecord, rev int64) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Idempotent-Replayed", "true")
	if rec.Location != "" {
		w.Header().Set("Location", rec.Location)
	}
	w.WriteHeader(rec.Status)
	w.Write(rec.Answer(rev))
}

// pruneIdempotency deletes the records older than cutoff, reading only
// those (idempotency.Prune), not the day of live ones.
func pruneIdempotency(ctx context.Context, s store.Store, cutoff time.Time) (int, error) {
	return idempotency.Prune(ctx, s, cutoff)
}
