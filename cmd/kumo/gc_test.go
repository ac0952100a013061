package main

import (
	"math"
	"runtime/debug"
	"testing"

	"github.com/spf13/cobra"
)

// TestTuneGC: --heap-limit sets GOGC 200 under a soft limit, 0 leaves Go's
// defaults, a bad value is refused naming the flag.
func TestTuneGC(t *testing.T) {
	t.Setenv("GOGC", "")
	t.Setenv("GOMEMLIMIT", "")
	restore := func() {
		debug.SetGCPercent(100)
		debug.SetMemoryLimit(math.MaxInt64)
	}
	defer restore()
	for _, c := range []struct {
		flag      string
		wantPct   int
		wantLimit int64
		wantErr   bool
	}{
		{"1GiB", 200, 1 << 30, false},
		{"1536MiB", 200, 1536 << 20, false},
		{"2GiB", 200, 2 << 30, false},
		{"0", 100, math.MaxInt64, false},
		{"lots", 100, math.MaxInt64, true},
	} {
		restore()
		err := tuneGC(c.flag)
		if (err != nil) != c.wantErr {
			t.Fatalf("%s: error %v", c.flag, err)
		}
		pct := debug.SetGCPercent(100)
		limit := debug.SetMemoryLimit(-1)
		if pct != c.wantPct || limit != c.wantLimit {
			t.Errorf("--heap-limit %s: GOGC %d, limit %d; want %d, %d", c.flag, pct, limit, c.wantPct, c.wantLimit)
		}
	}
}

// TestHeapLimitDefault: the server's heap is held at 1 GiB unless told
// otherwise (with the mapped store, under 2 GiB of RSS at 100,000
// instances: docs/SPECIFICATION.md).
func TestHeapLimitDefault(t *testing.T) {
	root := &cobra.Command{Use: "kumo"}
	serverCommand(root)
	cmd, _, err := root.Find([]string{"server"})
	if err != nil {
		t.Fatal(err)
	}
	if def := cmd.Flags().Lookup("heap-limit").DefValue; def != "1GiB" {
		t.Fatalf("--heap-limit defaults to %s, want 1GiB", def)
	}
}
