package cli

import (
	"bytes"
	"errors"
	"testing"
)

// TestEscaper: Ctrl-] anywhere and "~." at the start of a line detach;
// what was typed before is sent; other tildes pass as typed.
func TestEscaper(t *testing.T) {
	for _, c := range []struct {
		typed  []string // writes, as a terminal delivers them
		sent   string
		detach bool
	}{
		{[]string{"ls\r"}, "ls\r", false},
		{[]string{"~."}, "", true}, // nothing typed yet: the start of a line
		{[]string{"ls\r~."}, "ls\r", true},
		{[]string{"ls\r~", "."}, "ls\r", true}, // split across reads
		{[]string{"echo a~.\r"}, "echo a~.\r", false},
		{[]string{"\r~~.\r"}, "\r~.\r", false}, // "~~" sends one "~"
		{[]string{"\r~x"}, "\r~x", false},
		{[]string{"vi\r", "abc\x1d"}, "vi\rabc", true},
		{[]string{"\n~."}, "\n", true},
	} {
		var out bytes.Buffer
		e := &escaper{w: &out, atStart: true}
		detached := false
		for _, w := range c.typed {
			if _, err := e.Write([]byte(w)); errors.Is(err, errDetach) {
				detached = true
				break
			}
		}
		if out.String() != c.sent || detached != c.detach {
			t.Errorf("typed %q: sent %q detached %v, want %q %v", c.typed, out.String(), detached, c.sent, c.detach)
		}
	}
}
