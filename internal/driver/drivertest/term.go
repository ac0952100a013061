package drivertest

import (
	"bytes"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kumocloud/kumo/internal/driver"
)

// Term is a user's terminal for testing consoles (a driver.Terminal):
// Type sends input, Resize a size, Hangup leaves; what the console
// printed is kept for WaitFor.
type Term struct {
	in      *io.PipeReader
	typing  *io.PipeWriter
	resizes chan driver.WinSize
	mu      sync.Mutex
	out     bytes.Buffer
}

// NewTerm is a terminal whose user has typed nothing yet.
func NewTerm() *Term {
	r, w := io.Pipe()
	return &Term{in: r, typing: w, resizes: make(chan driver.WinSize, 8)}
}

func (t *Term) Read(p []byte) (int, error) { return t.in.Read(p) }

func (t *Term) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.out.Write(p)
}

// Resizes implements driver.Terminal.
func (t *Term) Resizes() <-chan driver.WinSize { return t.resizes }

// Type sends s as the user's input (it waits until the console reads it).
func (t *Term) Type(s string) { t.typing.Write([]byte(s)) }

// Resize sends a size.
func (t *Term) Resize(cols, rows uint16) { t.resizes <- driver.WinSize{Cols: cols, Rows: rows} }

// Hangup is the user leaving: the console's input ends.
func (t *Term) Hangup() { t.typing.Close() }

// Output is what the console printed so far.
func (t *Term) Output() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.out.String()
}

// WaitFor waits (up to 60 s: guests are slow under TCG) until the output
// after offset holds want, and returns the offset past it.
func (t *Term) WaitFor(tb testing.TB, offset int, want string) int {
	tb.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		out := t.Output()
		if i := strings.Index(out[min(offset, len(out)):], want); i >= 0 {
			return min(offset, len(out)) + i + len(want)
		}
		if time.Now().After(deadline) {
			tb.Fatalf("console output has no %q within 60 s; it printed: %q", want, out[min(offset, len(out)):])
		}
		time.Sleep(20 * time.Millisecond)
	}
}
