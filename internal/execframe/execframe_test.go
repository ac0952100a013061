package execframe

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
)

func TestRoundTrip(t *testing.T) {
	var wire bytes.Buffer
	w := NewWriter(&wire)
	big := strings.Repeat("x", 3*MaxFrame+7)
	w.Write([]byte("hello "))
	w.Write([]byte(big))
	w.Exit(3)
	var out bytes.Buffer
	code, err := NewReader(&wire).Copy(&out)
	if err != nil || code != 3 || out.String() != "hello "+big {
		t.Fatalf("code %d err %v out %d bytes", code, err, out.Len())
	}
	wire.Reset()
	w = NewWriter(&wire)
	w.Write([]byte("partial"))
	w.Fail(errors.New("no such instance"))
	if _, err := NewReader(&wire).Copy(io.Discard); err == nil || err.Error() != "no such instance" {
		t.Fatalf("fail: %v", err)
	}
	// Cut short: no exit frame.
	wire.Reset()
	NewWriter(&wire).Write([]byte("abc"))
	if _, err := NewReader(&wire).Copy(io.Discard); !errors.Is(err, ErrEnded) {
		t.Fatalf("cut short: %v", err)
	}
	// A hostile length is refused without allocating it.
	if _, _, err := NewReader(bytes.NewReader([]byte{'o', 0xff, 0xff, 0xff, 0xff})).Next(nil); err == nil {
		t.Fatal("a 4 GiB frame was accepted")
	}
}

func TestCapped(t *testing.T) {
	c := &Capped{Max: 5}
	c.Write([]byte("abc"))
	c.Write([]byte("defgh"))
	if string(c.Buf) != "abcde" || !c.Truncated {
		t.Fatalf("%q %v", c.Buf, c.Truncated)
	}
}
