// Package identity owns users, projects, role bindings and API tokens (the
// Keystone part of kumo), and decides who may do what.
//
// Keys: /users/{name}, /projects/{name}, /tokens/{id}. A user's name may be
// reused after the user is deleted; its id never is, and tokens hold the
// id, so a token never outlives its user. Quota records are
// the quota package's; identity creates and removes them together with
// their project in one transaction.
package identity

import (
	"errors"
	"log/slog"
	"time"

	"github.com/google/uuid"
	"golang.org/x/crypto/bcrypt"

	"github.com/kumocloud/kumo/api"
	"github.com/kumocloud/kumo/internal/quota"
	"github.com/kumocloud/kumo/internal/store"
)

// Key prefixes this package owns.
const (
	usersPrefix    = "/users/"
	projectsPrefix = "/projects/"
	tokensPrefix   = "/tokens/"
)

// DefaultProject is created at first start; the local socket's default.
const DefaultProject = "default"

// AdminUser is the cloud admin created at first start.
const AdminUser = "admin"

// Options configures the service.
type Options struct {
	// BcryptCost for password hashes (tests lower it).
	BcryptCost int
	// TokenTTL is a new token's lifetime unless asked otherwise.
	TokenTTL time.Duration
	// MaxTokenTTL caps asked-for lifetimes.
	MaxTokenTTL time.Duration
	// DefaultQuota applies to new projects for limits not given.
	DefaultQuota api.ResourceCounts
	// LoginFailures within LoginWindow lock a user name out of password
	// logins from the client address they came from (and only from it)
	// until the window passes; LoginFailuresPerAddress lock an address out
	// whatever names it tries (default 4 x LoginFailures).
	LoginFailures           int
	LoginFailuresPerAddress int
	LoginWindow             time.Duration
}

// DefaultOptions are the production settings.
func DefaultOptions() Options {
	return Options{
		BcryptCost:              bcrypt.DefaultCost,
		TokenTTL:                7 * 24 * time.Hour,
		MaxTokenTTL:             365 * 24 * time.Hour,
		DefaultQuota:            quota.Defaults(),
		LoginFailures:           5,
		LoginFailuresPerAddress: 20,
		LoginWindow:             time.Minute,
	}
}

// Service is the identity service.
type Service struct {
	s       store.Store
	opts    Options
	limiter *loginLimiter
	log     *slog.Logger
	// checkPassword is bcrypt's comparison (tests count the calls).
	checkPassword func(hash, password []byte) error
}

// New returns the identity service on s.
func New(s store.Store, opts Options, log *slog.Logger) *Service {
	if opts.BcryptCost == 0 {
		opts.BcryptCost = bcrypt.DefaultCost
	}
	return &Service{s: s, opts: opts, limiter: newLoginLimiter(opts.LoginFailures, opts.LoginFailuresPerAddress, opts.LoginWindow), log: log,
		checkPassword: bcrypt.CompareHashAndPassword}
}

func isNotFound(err error) bool { return errors.Is(err, store.ErrNotFound) }

func now() time.Time { return time.Now().UTC().Truncate(time.Millisecond) }

func randUUID() string { return uuid.NewString() }
