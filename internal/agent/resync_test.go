package agent

import (
	"testing"
	"time"
)

// TestResyncIsJittered: each resync period is within a quarter of the
// configured one either way, and agents drawing different numbers get
// periods that differ (so agents started together drift apart).
func TestResyncIsJittered(t *testing.T) {
	d := 30 * time.Second
	for _, c := range []struct {
		r    float64
		want time.Duration
	}{{0, 22500 * time.Millisecond}, {0.5, 30 * time.Second}, {0.999999, 37499970 * time.Microsecond}} {
		if got := jittered(d, c.r); got.Round(time.Millisecond) != c.want.Round(time.Millisecond) {
			t.Errorf("jittered(%s, %v) = %s, want %s", d, c.r, got, c.want)
		}
	}
}
