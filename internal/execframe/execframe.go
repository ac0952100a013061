// Package execframe is how an agent streams a command's run to the
// server: frames of output as the command writes it, then one frame with
// its exit code (or an error). Nothing is held whole on either side: the
// server passes output on as it comes, so a command may print gigabytes
// through bounded buffers, and a slow reader slows the command (its pipe
// fills) instead of growing memory.
//
// A frame is a kind byte, a big-endian uint32 length, and that many bytes.
package execframe

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strconv"
)

// Frame kinds.
const (
	Output byte = 'o' // bytes the command wrote (stdout and stderr together)
	Exit   byte = 'x' // its exit code, in decimal; the last frame
	Error  byte = 'e' // why it could not run; the last frame
)

// MaxFrame bounds one frame: larger writes are split.
const MaxFrame = 64 << 10

// Writer writes a command's output as frames; Exit or Fail ends it.
type Writer struct {
	w   io.Writer
	err error
}

// NewWriter writes frames to w.
func NewWriter(w io.Writer) *Writer { return &Writer{w: w} }

func (fw *Writer) frame(kind byte, p []byte) error {
	if fw.err != nil {
		return fw.err
	}
	var head [5]byte
	head[0] = kind
	binary.BigEndian.PutUint32(head[1:], uint32(len(p)))
	if _, err := fw.w.Write(head[:]); err != nil {
		fw.err = err
		return err
	}
	if _, err := fw.w.Write(p); err != nil {
		fw.err = err
	}
	return fw.err
}

// Write sends output (it implements io.Writer for the command's pipes).
func (fw *Writer) Write(p []byte) (int, error) {
	n := 0
	for len(p) > 0 {
		chunk := p[:min(len(p), MaxFrame)]
		if err := fw.frame(Output, chunk); err != nil {
			return n, err
		}
		n += len(chunk)
		p = p[len(chunk):]
	}
	return n, nil
}

// Exit ends the stream with the command's exit code.
func (fw *Writer) Exit(code int) error { return fw.frame(Exit, []byte(strconv.Itoa(code))) }

// Fail ends the stream with why the command could not run.
func (fw *Writer) Fail(err error) error { return fw.frame(Error, []byte(err.Error())) }

// Reader reads frames.
type Reader struct{ r *bufio.Reader }

// NewReader reads frames from r.
func NewReader(r io.Reader) *Reader { return &Reader{r: bufio.NewReader(r)} }

// ErrEnded says the stream ended without an exit code (the agent went
// away).
var ErrEnded = errors.New("the command's host broke the stream off before it ended")

// Next returns the next frame. Output frames' bytes are valid until the
// next call.
func (fr *Reader) Next(buf []byte) (kind byte, p []byte, err error) {
	var head [5]byte
	if _, err := io.ReadFull(fr.r, head[:]); err != nil {
		return 0, nil, ErrEnded
	}
	n := binary.BigEndian.Uint32(head[1:])
	if n > MaxFrame {
		return 0, nil, fmt.Errorf("exec stream: a frame of %d bytes (at most %d)", n, MaxFrame)
	}
	if cap(buf) < int(n) {
		buf = make([]byte, n)
	}
	buf = buf[:n]
	if _, err := io.ReadFull(fr.r, buf); err != nil {
		return 0, nil, ErrEnded
	}
	switch head[0] {
	case Output, Exit, Error:
		return head[0], buf, nil
	}
	return 0, nil, fmt.Errorf("exec stream: unknown frame kind %q", head[0])
}

// Copy passes output frames to out until the stream ends, and returns
// the exit code. An Error frame is returned as an error (a *RunError).
func (fr *Reader) Copy(out io.Writer) (int, error) {
	buf := make([]byte, MaxFrame)
	for {
		kind, p, err := fr.Next(buf)
		if err != nil {
			return 0, err
		}
		switch kind {
		case Output:
			if _, err := out.Write(p); err != nil {
				return 0, err
			}
		case Exit:
			code, err := strconv.Atoi(string(p))
			if err != nil {
				return 0, fmt.Errorf("exec stream: exit code %q", p)
			}
			return code, nil
		case Error:
			return 0, &RunError{Msg: string(p)}
		}
	}
}

// RunError is why the host could not run the command.
type RunError struct{ Msg string }

func (e *RunError) Error() string { return e.Msg }

// Capped is a writer that keeps the first Max bytes written to it and
// counts the rest.
type Capped struct {
	Max       int
	Buf       []byte
	Truncated bool
}

func (c *Capped) Write(p []byte) (int, error) {
	room := c.Max - len(c.Buf)
	if len(p) > room {
		c.Truncated = true
		c.Buf = append(c.Buf, p[:max(room, 0)]...)
		return len(p), nil
	}
	c.Buf = append(c.Buf, p...)
	return len(p), nil
}
