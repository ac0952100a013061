package server

import (
	"sync"

	"github.com/kumocloud/kumo/internal/errs"
)

// Console limits: each console is a process on the instance's host (a
// runc exec, outside the container's own limits until it joins it) and a
// relay here, so one member must not open hundreds (the review's 150 at
// once held ~870 MiB on the host).
const (
	maxConsolesPerInstance = 8
	maxConsolesPerUser     = 32
)

// consoleLimits counts the consoles open per instance and per user.
type consoleLimits struct {
	mu         sync.Mutex
	byInstance map[string]int
	byUser     map[string]int
}

// acquire takes a console for a user on an instance, or says which limit
// is reached; release gives it back.
func (l *consoleLimits) acquire(instanceID, user string) (release func(), err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.byInstance == nil {
		l.byInstance, l.byUser = map[string]int{}, map[string]int{}
	}
	if l.byInstance[instanceID] >= maxConsolesPerInstance {
		return nil, errs.TooMany("instance has %d consoles open, the most it may: close one first", maxConsolesPerInstance)
	}
	if l.byUser[user] >= maxConsolesPerUser {
		return nil, errs.TooMany("you have %d consoles open, the most one user may: close one first", maxConsolesPerUser)
	}
	l.byInstance[instanceID]++
	l.byUser[user]++
	var once sync.Once
	return func() {
		once.Do(func() {
			l.mu.Lock()
			defer l.mu.Unlock()
			if l.byInstance[instanceID]--; l.byInstance[instanceID] == 0 {
				delete(l.byInstance, instanceID)
			}
			if l.byUser[user]--; l.byUser[user] == 0 {
				delete(l.byUser, user)
			}
		})
	}, nil
}
