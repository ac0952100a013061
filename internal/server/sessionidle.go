package server

import (
	"sync"
	"time"
)

// DefaultSessionIdle ends a browser session after an hour without a
// request, as Horizon's SESSION_TIMEOUT does.
const DefaultSessionIdle = time.Hour

// idleSessions remembers when each browser session last made a request.
// The clocks live in memory: a server restart starts them again (a
// session idle across a restart gets one more idle period). Entries go
// once their token has expired anyway.
type idleSessions struct {
	idle, keep time.Duration

	mu        sync.Mutex
	last      map[string]time.Time // token id -> last request
	lastPrune time.Time
}

func newIdleSessions(idle, tokenTTL time.Duration) *idleSessions {
	return &idleSessions{idle: idle, keep: tokenTTL + idle, last: map[string]time.Time{}}
}

// touch records a request of session id at now; false when the session
// had been idle too long (it stays refused: the caller revokes it).
func (s *idleSessions) touch(id string, now time.Time) bool {
	if s == nil || s.idle <= 0 {
		return true
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if now.Sub(s.lastPrune) > time.Minute {
		s.lastPrune = now
		for k, t := range s.last {
			if now.Sub(t) > s.keep {
				delete(s.last, k)
			}
		}
	}
	if t, ok := s.last[id]; ok && now.Sub(t) > s.idle {
		return false
	}
	s.last[id] = now
	return true
}
