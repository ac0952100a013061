package identity

import (
	"context"
	"crypto/subtle"
	"errors"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/kumocloud/kumo/api"
	"github.com/kumocloud/kumo/internal/errs"
	"github.com/kumocloud/kumo/internal/events"
	secretpkg "github.com/kumocloud/kumo/internal/secret"
	"github.com/kumocloud/kumo/internal/store"
	"github.com/kumocloud/kumo/internal/validate"
)

// tokenRecord is what is stored: never the secret, only its SHA-256.
type tokenRecord struct {
	api.Token
	SecretHash string `json:"secret_hash"`
}

// TokenPrefix starts every token secret, so leaked tokens are easy to find
// with secret scanners.
const TokenPrefix = "kumo_"

func tokenKey(id string) string { return tokensPrefix + id }

func tokenURL(id string) string { return "/v1/tokens/" + id }

func (r tokenRecord) api() api.Token {
	t := r.Token
	t.Secret = ""
	return t
}

// IssueToken creates a token for user. The returned token carries its
// secret ("kumo_<id>_<secret>"); the store keeps only a hash.
func (svc *Service) IssueToken(ctx context.Context, user, description string, ttl time.Duration) (api.Token, error) {
	if err := validate.Text("description", description, 256); err != nil {
		return api.Token{}, err
	}
	switch {
	case ttl < 0:
		return api.Token{}, errs.Invalid("ttl_seconds", "ttl_seconds must not be negative")
	case ttl == 0:
		ttl = svc.opts.TokenTTL
	case ttl > svc.opts.MaxTokenTTL:
		return api.Token{}, errs.Invalid("ttl_seconds", "ttl_seconds is more than the server allows (%d)", int64(svc.opts.MaxTokenTTL.Seconds()))
	}
	id := secretpkg.Hex(8)
	secret := secretpkg.Hex(24)
	t := now()
	rec := tokenRecord{
		Token:      api.Token{ID: id, User: user, Description: description, CreatedAt: t, ExpiresAt: t.Add(ttl)},
		SecretHash: secretpkg.Hash(secret),
	}
	_, err := svc.s.Txn(ctx, []store.Cond{store.Absent(tokenKey(id))}, []store.Op{
		store.PutJSON(tokenKey(id), rec),
		events.Op(ctx, "token", events.Created, "", tokenURL(id), rec.api()),
	})
	if err != nil {
		return api.Token{}, err
	}
	out := rec.api()
	out.Secret = TokenPrefix + id + "_" + secret
	return out, nil
}

// Login checks a user name and password and issues a token. Failed attempts
// are counted per user name and per client address; too many in the window
// are refused with a too_many_requests error before any password check.
func (svc *Service) Login(ctx context.Context, username, password, client, description string, ttl time.Duration) (api.Token, error) {
	if username == "" {
		return api.Token{}, errs.Invalid("username", "username is required")
	}
	if wait := svc.limiter.blocked(username, client); wait > 0 {
		return api.Token{}, errs.TooMany("too many failed logins; try again in %d s", int(wait.Seconds())+1)
	}
	rec, _, err := svc.getUserRecord(ctx, username)
	if err != nil && !errors.Is(err, errs.ErrNotFound) {
		return api.Token{}, err
	}
	hash := rec.PasswordHash
	if hash == "" {
		// Spend the same time on unknown users as on wrong passwords.
		hash = dummyHash(svc.opts.BcryptCost)
	}
	if bcrypt.CompareHashAndPassword([]byte(hash), []byte(password)) != nil || rec.PasswordHash == "" {
		svc.limiter.fail(username, client)
		return api.Token{}, errs.Unauthorized("wrong user name or password")
	}
	svc.limiter.reset(username)
	return svc.IssueToken(ctx, username, description, ttl)
}

var (
	dummyOnce sync.Once
	dummy     string
)

func dummyHash(cost int) string {
	dummyOnce.Do(func() {
		h, _ := bcrypt.GenerateFromPassword([]byte("no such user"), cost)
		dummy = string(h)
	})
	return dummy
}

// Authenticate turns a bearer token into a principal. Unknown, expired and
// revoked tokens and tokens of deleted users are all "unauthorized".
func (svc *Service) Authenticate(ctx context.Context, bearer string) (*Principal, error) {
	rest, ok := strings.CutPrefix(bearer, TokenPrefix)
	id, secret, ok2 := strings.Cut(rest, "_")
	if !ok || !ok2 || len(id) != 16 || secret == "" {
		return nil, errs.Unauthorized("malformed token: expected %s<id>_<secret>", TokenPrefix)
	}
	var rec tokenRecord
	_, err := store.GetJSON(ctx, svc.s, tokenKey(id), &rec)
	if isNotFound(err) {
		return nil, errs.Unauthorized("token not recognised; log in again")
	}
	if err != nil {
		return nil, err
	}
	if subtle.ConstantTimeCompare([]byte(secretpkg.Hash(secret)), []byte(rec.SecretHash)) != 1 {
		return nil, errs.Unauthorized("token not recognised; log in again")
	}
	if rec.Revoked {
		return nil, errs.Unauthorized("token %s was revoked; log in again", id)
	}
	if time.Now().After(rec.ExpiresAt) {
		return nil, errs.Unauthorized("token %s expired at %s; log in again", id, rec.ExpiresAt.Format(time.RFC3339))
	}
	u, _, err := svc.getUserRecord(ctx, rec.User)
	if errors.Is(err, errs.ErrNotFound) {
		return nil, errs.Unauthorized("the user of this token no longer exists")
	}
	if err != nil {
		return nil, err
	}
	p := &Principal{User: u.Name, CloudAdmin: u.CloudAdmin, Roles: map[string]string{}, Via: "token", TokenID: id, DefaultProject: u.DefaultProject}
	for _, b := range u.Roles {
		p.Roles[b.Project] = b.Role
	}
	if p.DefaultProject == "" && len(u.Roles) == 1 {
		p.DefaultProject = u.Roles[0].Project
	}
	return p, nil
}

// ListTokens lists the tokens of user ("" = everyone's).
func (svc *Service) ListTokens(ctx context.Context, user string) ([]api.Token, error) {
	kvs, err := store.ListAll(ctx, svc.s, tokensPrefix)
	if err != nil {
		return nil, err
	}
	out := []api.Token{}
	for _, kv := range kvs {
		var rec tokenRecord
		if err := unmarshal(kv, &rec); err != nil {
			return nil, err
		}
		if user == "" || rec.User == user {
			out = append(out, rec.api())
		}
	}
	return out, nil
}

// GetToken returns a token (without secret).
func (svc *Service) GetToken(ctx context.Context, id string) (api.Token, error) {
	var rec tokenRecord
	_, err := store.GetJSON(ctx, svc.s, tokenKey(id), &rec)
	if isNotFound(err) {
		return api.Token{}, errs.NotFound("token %q not found", id)
	}
	return rec.api(), err
}

// RevokeToken marks a token revoked; it fails authentication from then on.
func (svc *Service) RevokeToken(ctx context.Context, id string) (api.Token, error) {
	rec, _, err := store.UpdateJSON(ctx, svc.s, tokenKey(id), func(r *tokenRecord) error {
		r.Revoked = true
		return nil
	}, func(r *tokenRecord) []store.Op {
		return []store.Op{events.Op(ctx, "token", events.Deleted, "", tokenURL(id), r.api())}
	})
	if isNotFound(err) {
		return api.Token{}, errs.NotFound("token %q not found", id)
	}
	return rec.api(), err
}

// PruneTokens deletes tokens that expired before cutoff.
func (svc *Service) PruneTokens(ctx context.Context, cutoff time.Time) (int, error) {
	return store.PruneJSON(ctx, svc.s, tokensPrefix, func(r *tokenRecord) bool { return r.ExpiresAt.Before(cutoff) })
}

// loginLimiter counts failed logins per user name and per client address.
type loginLimiter struct {
	mu     sync.Mutex
	max    int
	window time.Duration
	fails  map[string][]time.Time
}

func newLoginLimiter(max int, window time.Duration) *loginLimiter {
	if max <= 0 {
		max = 5
	}
	if window <= 0 {
		window = time.Minute
	}
	return &loginLimiter{max: max, window: window, fails: map[string][]time.Time{}}
}

func (l *loginLimiter) recent(key string, t time.Time) []time.Time {
	kept := l.fails[key][:0]
	for _, f := range l.fails[key] {
		if t.Sub(f) < l.window {
			kept = append(kept, f)
		}
	}
	if len(kept) == 0 {
		delete(l.fails, key)
		return nil
	}
	l.fails[key] = kept
	return kept
}

// blocked returns how long the user or client must wait (0 = may try).
func (l *loginLimiter) blocked(user, client string) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	t := time.Now()
	var wait time.Duration
	for _, k := range []string{"u:" + user, "c:" + client} {
		if f := l.recent(k, t); len(f) >= l.max {
			wait = max(wait, l.window-t.Sub(f[len(f)-l.max]))
		}
	}
	return wait
}

func (l *loginLimiter) fail(user, client string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	t := time.Now()
	for _, k := range []string{"u:" + user, "c:" + client} {
		l.fails[k] = append(l.recent(k, t), t)
	}
}

func (l *loginLimiter) reset(user string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.fails, "u:"+user)
}
