package server

import (
	"errors"
	"fmt"
	"testing"

	"github.com/kumocloud/kumo/internal/errs"
)

// TestConsoleLimits: at most maxConsolesPerInstance consoles on one
// instance and maxConsolesPerUser for one user, each refused with 429,
// and a console closed gives its place back (once, however often it is
// released).
func TestConsoleLimits(t *testing.T) {
	var l consoleLimits
	var rel []func()
	for i := 0; i < maxConsolesPerInstance; i++ {
		r, err := l.acquire("i1", "alice")
		if err != nil {
			t.Fatalf("console %d: %v", i, err)
		}
		rel = append(rel, r)
	}
	if _, err := l.acquire("i1", "bob"); !errors.Is(err, errs.ErrTooMany) {
		t.Fatalf("one console over the instance's limit: %v", err)
	}
	rel[0]()
	rel[0]()
	if r, err := l.acquire("i1", "bob"); err != nil {
		t.Fatalf("after one closed: %v", err)
	} else {
		r()
	}
	if _, err := l.acquire("i1", "bob"); err != nil {
		t.Fatalf("a second release gave back a place twice? %v", err)
	}
	if _, err := l.acquire("i1", "carol"); !errors.Is(err, errs.ErrTooMany) {
		t.Fatalf("a double release counted twice: %v", err)
	}
	// Per user, across instances.
	n := maxConsolesPerInstance - 1
	for i := 0; n < maxConsolesPerUser; i++ {
		if _, err := l.acquire(fmt.Sprint("j", i), "alice"); err != nil {
			t.Fatalf("alice's console %d: %v", n, err)
		}
		n++
	}
	if _, err := l.acquire("k", "alice"); !errors.Is(err, errs.ErrTooMany) {
		t.Fatalf("one console over the user's limit: %v", err)
	}
}
