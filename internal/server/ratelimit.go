package server

import (
	"cmp"
	"math"
	"net/http"
	"strconv"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/kumocloud/kumo/internal/errs"
	"github.com/kumocloud/kumo/internal/identity"
)

// APIRate is how many requests a tenant may make: Rate per second on
// average, Burst at once. One bucket per project for the project's
// endpoints (/v1/projects/{project}/...: every member shares it, as
// OpenStack's per-project limits do) and one per user for the rest, so a
// tenant's script cannot crowd out the others. Cloud admins, the local
// socket and agents are not limited (the operator's tools and the cloud's
// own traffic). A zero Rate is no limit.
type APIRate struct {
	Rate  float64
	Burst int
}

// DefaultAPIRate is far above what a person or the CLI does, low enough
// that one tenant's loop leaves the server to the others.
var DefaultAPIRate = APIRate{Rate: 100, Burst: 500}

// rateLimits holds the buckets. Buckets idle long enough to be full again
// are dropped, so memory follows the active tenants.
type rateLimits struct {
	cfg APIRate

	mu        sync.Mutex
	buckets   map[string]*bucket
	lastPrune time.Time
}

type bucket struct {
	lim  *rate.Limiter
	used time.Time
}

func newRateLimits(cfg APIRate) *rateLimits {
	return &rateLimits{cfg: cfg, buckets: map[string]*bucket{}}
}

// limited reports whether a caller is subject to the limits.
func (l *rateLimits) limited(p *identity.Principal) bool {
	return l != nil && l.cfg.Rate > 0 && p != nil && !p.CloudAdmin && p.Via != "socket" && p.Via != "agent"
}

// take spends one request from key's bucket; when it is empty, it says
// how long until one is there again.
func (l *rateLimits) take(key string, now time.Time) (ok bool, retryAfter time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.Sub(l.lastPrune) > time.Minute {
		l.prune(now)
	}
	b := l.buckets[key]
	if b == nil {
		burst := max(l.cfg.Burst, 1)
		b = &bucket{lim: rate.NewLimiter(rate.Limit(l.cfg.Rate), burst)}
		l.buckets[key] = b
	}
	b.used = now
	r := b.lim.ReserveN(now, 1)
	if d := r.DelayFrom(now); d > 0 {
		r.CancelAt(now)
		return false, d
	}
	return true, 0
}

// prune drops buckets unused for longer than they take to fill.
func (l *rateLimits) prune(now time.Time) {
	l.lastPrune = now
	full := time.Duration(math.Ceil(float64(max(l.cfg.Burst, 1))/l.cfg.Rate*float64(time.Second))) + time.Second
	for k, b := range l.buckets {
		if now.Sub(b.used) > full {
			delete(l.buckets, k)
		}
	}
}

// rateLimit spends one of the caller's requests, or refuses with 429 and
// a Retry-After header saying when to come back.
func (s *Server) rateLimit(w http.ResponseWriter, r *http.Request, p *identity.Principal) error {
	if !s.rates.limited(p) {
		return nil
	}
	key, who := "u:"+cmp.Or(p.UserID, p.User), "user "+strconv.Quote(p.User)
	if project := r.PathValue("project"); project != "" {
		key, who = "p:"+project, "project "+strconv.Quote(project)
	}
	ok, wait := s.rates.take(key, time.Now())
	if ok {
		return nil
	}
	secs := int(math.Ceil(wait.Seconds()))
	w.Header().Set("Retry-After", strconv.Itoa(max(secs, 1)))
	return errs.TooMany("%s made more than %g requests a second (bursts of %d): retry in %s", who, s.rates.cfg.Rate, s.rates.cfg.Burst, wait.Round(time.Millisecond))
}
