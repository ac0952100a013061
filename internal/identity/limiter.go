package identity

import (
	"net/netip"
	"sync"
	"time"
)

// loginLimiter budgets password checks per (user name, client address)
// and per client address. An attempt is reserved before its bcrypt check
// and counted as long as it is in flight, so concurrent guesses can never
// run more checks than the budget; a failed attempt then stays counted
// for the window. Nothing is counted per user name alone: failures from
// one address never lock the user out from another (an attacker could
// otherwise lock anyone out by guessing).
type loginLimiter struct {
	mu      sync.Mutex
	perPair int // per (user, address)
	perAddr int // per address, over every user name
	window  time.Duration
	fails   map[string][]time.Time // key -> failures within the window
	flying  map[string]int         // key -> attempts being checked now
}

func newLoginLimiter(perPair, perAddr int, window time.Duration) *loginLimiter {
	if perPair <= 0 {
		perPair = 5
	}
	if perAddr <= 0 {
		perAddr = 4 * perPair
	}
	if window <= 0 {
		window = time.Minute
	}
	return &loginLimiter{perPair: perPair, perAddr: perAddr, window: window, fails: map[string][]time.Time{}, flying: map[string]int{}}
}

// addrKey is the unit an address is counted in: an IPv4 address, or the
// /64 of an IPv6 one (one machine usually holds a whole /64).
func addrKey(client string) string {
	a, err := netip.ParseAddr(client)
	if err != nil {
		return client
	}
	a = a.Unmap()
	if a.Is6() {
		p, _ := a.Prefix(64)
		return p.String()
	}
	return a.String()
}

// recent drops failures older than the window and returns the rest.
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

// sweep forgets every key without a recent failure once the map is big,
// so guesses at many names cannot grow it without bound.
func (l *loginLimiter) sweep(t time.Time) {
	if len(l.fails) < 10000 {
		return
	}
	for k := range l.fails {
		l.recent(k, t)
	}
}

// reserve takes one attempt from the budgets of user at client. It returns
// how long to wait (0: go ahead, and call done with the outcome once the
// password is checked).
func (l *loginLimiter) reserve(user, client string) (done func(failed bool), wait time.Duration) {
	addr := "a:" + addrKey(client)
	pair := "p:" + user + "\x00" + addrKey(client)
	l.mu.Lock()
	defer l.mu.Unlock()
	t := time.Now()
	l.sweep(t)
	for _, k := range []struct {
		key    string
		budget int
	}{{pair, l.perPair}, {addr, l.perAddr}} {
		f := l.recent(k.key, t)
		if len(f)+l.flying[k.key] < k.budget {
			continue
		}
		w := time.Second // only attempts in flight fill it: they end soon
		if len(f) >= k.budget {
			w = l.window - t.Sub(f[len(f)-k.budget])
		}
		wait = max(wait, w)
	}
	if wait > 0 {
		return nil, wait
	}
	l.flying[pair]++
	l.flying[addr]++
	return func(failed bool) {
		l.mu.Lock()
		defer l.mu.Unlock()
		t := time.Now()
		for _, k := range []string{pair, addr} {
			if l.flying[k]--; l.flying[k] <= 0 {
				delete(l.flying, k)
			}
			if failed {
				l.fails[k] = append(l.recent(k, t), t)
			}
		}
		if !failed {
			// The right password from here clears this pair's count; the
			// address keeps its failures at other names.
			delete(l.fails, pair)
		}
	}, 0
}
