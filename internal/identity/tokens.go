package identity

import (
	"context"
	"crypto/subtle"
	"errors"
	"slices"
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
	// Lineage lists the tokens this one was made with, the nearest last:
	// a token is valid only while all of them are.
	Lineage []string `json:"lineage,omitempty"`
	// Generation is the user's token generation when it was issued; a
	// password change moves the user on, ending the older tokens.
	Generation int64 `json:"generation,omitempty"`
}

// TokenPrefix starts every token secret, so leaked tokens are easy to find
// with secret scanners.
const TokenPrefix = "kumo_"

// maxLineage bounds how deep tokens made with tokens may nest (each level
// costs a read on every request made with the token).
const maxLineage = 8

func tokenKey(id string) string { return tokensPrefix + id }

func tokenURL(id string) string { return "/v1/tokens/" + id }

func (r tokenRecord) api() api.Token {
	t := r.Token
	t.Secret = ""
	return t
}

// checkTTL turns an asked-for lifetime into one the server allows.
func (svc *Service) checkTTL(ttl time.Duration) (time.Duration, error) {
	switch {
	case ttl < 0:
		return 0, errs.Invalid("ttl_seconds", "ttl_seconds must not be negative")
	case ttl == 0:
		return svc.opts.TokenTTL, nil
	case ttl > svc.opts.MaxTokenTTL:
		return 0, errs.Invalid("ttl_seconds", "ttl_seconds is more than the server allows (%d)", int64(svc.opts.MaxTokenTTL.Seconds()))
	}
	return ttl, nil
}

// IssueToken creates a token for user. The returned token carries its
// secret ("kumo_<id>_<secret>"); the store keeps only a hash.
func (svc *Service) IssueToken(ctx context.Context, user, description string, ttl time.Duration) (api.Token, error) {
	u, urev, err := svc.getUserRecord(ctx, user)
	if err != nil {
		return api.Token{}, err
	}
	return svc.issue(ctx, u, urev, nil, description, ttl)
}

// IssueChildToken makes a token with the token parentID (its user's): the
// child expires no later than its parent and dies with it.
func (svc *Service) IssueChildToken(ctx context.Context, parentID, description string, ttl time.Duration) (api.Token, error) {
	var parent tokenRecord
	if _, err := store.GetJSON(ctx, svc.s, tokenKey(parentID), &parent); err != nil {
		if isNotFound(err) {
			return api.Token{}, errs.Unauthorized("token %s is no longer valid; log in again", parentID)
		}
		return api.Token{}, err
	}
	if len(parent.Lineage) >= maxLineage {
		return api.Token{}, errs.Invalid("username", "token %s was itself made from %d generations of tokens; log in with a password to make more", parentID, len(parent.Lineage))
	}
	u, urev, err := svc.getUserRecord(ctx, parent.User)
	if err != nil {
		return api.Token{}, err
	}
	return svc.issue(ctx, u, urev, &parent, description, ttl)
}

// issue writes a token for u (made with parent, if any) in a transaction
// that requires the user record unchanged since it was read: a token can
// then never be issued to a user deleted, re-created or moved on to a new
// token generation meanwhile.
func (svc *Service) issue(ctx context.Context, u userRecord, urev int64, parent *tokenRecord, description string, ttl time.Duration) (api.Token, error) {
	if err := validate.Text("description", description, 256); err != nil {
		return api.Token{}, err
	}
	ttl, err := svc.checkTTL(ttl)
	if err != nil {
		return api.Token{}, err
	}
	id := secretpkg.Hex(8)
	secret := secretpkg.Hex(24)
	t := now()
	rec := tokenRecord{
		Token:      api.Token{ID: id, User: u.Name, UserID: u.ID, Description: description, CreatedAt: t, ExpiresAt: t.Add(ttl)},
		SecretHash: secretpkg.Hash(secret),
		Generation: u.TokenGeneration,
	}
	if parent != nil {
		rec.Parent = parent.ID
		rec.Lineage = append(append([]string(nil), parent.Lineage...), parent.ID)
		if rec.ExpiresAt.After(parent.ExpiresAt) {
			rec.ExpiresAt = parent.ExpiresAt
		}
	}
	_, err = svc.s.Txn(ctx, []store.Cond{store.Absent(tokenKey(id)), store.At(userKey(u.Name), urev)}, []store.Op{
		store.PutJSON(tokenKey(id), rec),
		events.Op(ctx, "token", events.Created, "", tokenURL(id), rec.api()),
	})
	if errors.Is(err, store.ErrConflict) {
		return api.Token{}, errs.Conflict("user %q changed while the token was made; try again", u.Name)
	}
	if err != nil {
		return api.Token{}, err
	}
	out := rec.api()
	out.Secret = TokenPrefix + id + "_" + secret
	return out, nil
}

// Login checks a user name and password and issues a token. Each attempt
// is reserved in the login budgets of (user name, client address) and of
// the address before the password is checked, so concurrent guesses run
// no more checks than the budget; over budget is a too_many_requests
// error, with no check at all.
func (svc *Service) Login(ctx context.Context, username, password, client, description string, ttl time.Duration) (api.Token, error) {
	if username == "" {
		return api.Token{}, errs.Invalid("username", "username is required")
	}
	rec, rev, err := svc.checkUserPassword(ctx, username, password, client)
	if err != nil {
		return api.Token{}, err
	}
	return svc.issue(ctx, rec, rev, nil, description, ttl)
}

// checkUserPassword checks a password within the login budgets (see
// Login). Unknown users and wrong passwords are the same error.
func (svc *Service) checkUserPassword(ctx context.Context, username, password, client string) (userRecord, int64, error) {
	done, wait := svc.limiter.reserve(username, client)
	if wait > 0 {
		return userRecord{}, 0, errs.TooMany("too many failed logins from your address; try again in %d s", int(wait.Seconds())+1)
	}
	failed := true
	defer func() { done(failed) }()
	rec, rev, err := svc.getUserRecord(ctx, username)
	if err != nil && !errors.Is(err, errs.ErrNotFound) {
		failed = false // the store failed, not the caller
		return rec, 0, err
	}
	hash := rec.PasswordHash
	if hash == "" {
		// Spend the same time on unknown users as on wrong passwords.
		hash = dummyHash(svc.opts.BcryptCost)
	}
	if svc.checkPassword([]byte(hash), []byte(password)) != nil || rec.PasswordHash == "" {
		return rec, 0, errs.Unauthorized("wrong user name or password")
	}
	failed = false
	return rec, rev, nil
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

// Authenticate turns a bearer token into a principal. Unknown, expired
// and revoked tokens, tokens of deleted users (a later user of the same
// name included), tokens a password change ended and tokens made with a
// token that is no longer valid are all "unauthorized".
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
	u, _, err := svc.getUserRecord(ctx, rec.User)
	if err != nil && !errors.Is(err, errs.ErrNotFound) {
		return nil, err
	}
	if err := svc.tokenValid(ctx, rec, u, err == nil, time.Now()); err != nil {
		return nil, err
	}
	p := &Principal{User: u.Name, UserID: u.ID, CloudAdmin: u.CloudAdmin, Roles: map[string]string{}, Via: "token", TokenID: id, DefaultProject: u.DefaultProject}
	for _, b := range u.Roles {
		p.Roles[b.Project] = b.Role
	}
	if p.DefaultProject == "" && len(u.Roles) == 1 {
		p.DefaultProject = u.Roles[0].Project
	}
	return p, nil
}

// ownedBy reports whether the token was issued to this user record, not
// to an earlier user of the same name. Tokens from before user ids were
// recorded are judged by time: they cannot predate their user.
func (r tokenRecord) ownedBy(u userRecord) bool {
	if r.UserID != "" {
		return r.UserID == u.ID
	}
	return !r.CreatedAt.Before(u.CreatedAt)
}

// tokenValid says why a token (of user u, if userFound) no longer works,
// or nil. Its ancestors are read: each must be valid too.
func (svc *Service) tokenValid(ctx context.Context, rec tokenRecord, u userRecord, userFound bool, t time.Time) error {
	switch {
	case rec.Revoked:
		return errs.Unauthorized("token %s was revoked; log in again", rec.ID)
	case t.After(rec.ExpiresAt):
		return errs.Unauthorized("token %s expired at %s; log in again", rec.ID, rec.ExpiresAt.Format(time.RFC3339))
	case !userFound || !rec.ownedBy(u):
		return errs.Unauthorized("the user of this token no longer exists")
	case rec.Generation != u.TokenGeneration:
		return errs.Unauthorized("token %s was ended by a change of %s's password; log in again", rec.ID, u.Name)
	}
	for i := len(rec.Lineage) - 1; i >= 0; i-- {
		var anc tokenRecord
		_, err := store.GetJSON(ctx, svc.s, tokenKey(rec.Lineage[i]), &anc)
		if err != nil && !isNotFound(err) {
			return err
		}
		if err != nil || anc.Revoked || t.After(anc.ExpiresAt) || !anc.ownedBy(u) {
			return errs.Unauthorized("token %s was made with token %s, which is no longer valid; log in again", rec.ID, rec.Lineage[i])
		}
	}
	return nil
}

// effective returns the token as the API shows it: revoked when any
// reason ends it (its own revocation, a password change, an ancestor's
// end), judged from the users and tokens given.
func effective(rec tokenRecord, users map[string]userRecord, tokens map[string]tokenRecord) api.Token {
	out := rec.api()
	u, ok := users[rec.User]
	dead := rec.Revoked || !ok || !rec.ownedBy(u) || rec.Generation != u.TokenGeneration
	for _, a := range rec.Lineage {
		anc, ok := tokens[a]
		dead = dead || !ok || anc.Revoked
	}
	out.Revoked = dead
	return out
}

// allTokens reads every token and user.
func (svc *Service) allTokens(ctx context.Context) ([]tokenRecord, map[string]userRecord, map[string]tokenRecord, error) {
	kvs, err := store.ListAll(ctx, svc.s, tokensPrefix)
	if err != nil {
		return nil, nil, nil, err
	}
	recs := make([]tokenRecord, 0, len(kvs))
	byID := map[string]tokenRecord{}
	for _, kv := range kvs {
		var rec tokenRecord
		if err := unmarshal(kv, &rec); err != nil {
			return nil, nil, nil, err
		}
		recs = append(recs, rec)
		byID[rec.ID] = rec
	}
	ukvs, err := store.ListAll(ctx, svc.s, usersPrefix)
	if err != nil {
		return nil, nil, nil, err
	}
	users := map[string]userRecord{}
	for _, kv := range ukvs {
		var u userRecord
		if err := unmarshal(kv, &u); err != nil {
			return nil, nil, nil, err
		}
		users[u.Name] = u
	}
	return recs, users, byID, nil
}

// ListTokens lists the tokens of the user with id userID, or everyone's
// when all is set.
func (svc *Service) ListTokens(ctx context.Context, userID string, all bool) ([]api.Token, error) {
	recs, users, byID, err := svc.allTokens(ctx)
	if err != nil {
		return nil, err
	}
	out := []api.Token{}
	for _, rec := range recs {
		u, ok := users[rec.User]
		mine := userID != "" && (rec.UserID == userID || ok && u.ID == userID && rec.ownedBy(u))
		if all || mine {
			out = append(out, effective(rec, users, byID))
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
	if err != nil {
		return api.Token{}, err
	}
	u, _, uerr := svc.getUserRecord(ctx, rec.User)
	if uerr != nil && !errors.Is(uerr, errs.ErrNotFound) {
		return api.Token{}, uerr
	}
	out := rec.api()
	// Judged as at its creation, so that expiry (shown apart) does not
	// count as revocation.
	out.Revoked = svc.tokenValid(ctx, rec, u, uerr == nil, rec.CreatedAt) != nil
	return out, nil
}

// RevokeToken marks a token revoked, and every token made with it (at
// any depth): they fail authentication from then on. Authentication
// checks each token's ancestors too, so the descendants are dead the
// moment the parent is revoked, even if marking them is cut short.
func (svc *Service) RevokeToken(ctx context.Context, id string) (api.Token, error) {
	rec, err := svc.revokeOne(ctx, id)
	if err != nil {
		return api.Token{}, err
	}
	recs, _, _, err := svc.allTokens(ctx)
	if err != nil {
		return api.Token{}, err
	}
	for _, r := range recs {
		if !r.Revoked && slices.Contains(r.Lineage, id) {
			if _, err := svc.revokeOne(ctx, r.ID); err != nil && !errors.Is(err, errs.ErrNotFound) {
				return api.Token{}, err
			}
		}
	}
	return rec.api(), nil
}

func (svc *Service) revokeOne(ctx context.Context, id string) (tokenRecord, error) {
	rec, _, err := store.UpdateJSON(ctx, svc.s, tokenKey(id), func(r *tokenRecord) error {
		r.Revoked = true
		return nil
	}, func(r *tokenRecord) []store.Op {
		return []store.Op{events.Op(ctx, "token", events.Deleted, "", tokenURL(id), r.api())}
	})
	if isNotFound(err) {
		return rec, errs.NotFound("token %q not found", id)
	}
	return rec, err
}

// PruneTokens deletes tokens that expired before cutoff.
func (svc *Service) PruneTokens(ctx context.Context, cutoff time.Time) (int, error) {
	return store.PruneJSON(ctx, svc.s, tokensPrefix, func(r *tokenRecord) bool { return r.ExpiresAt.Before(cutoff) })
}
