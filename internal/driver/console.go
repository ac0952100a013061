package driver

import (
	"context"
	"io"
)

// Consoler is the optional feature of CapConsole: join a user's terminal
// to a console of an instance until either side ends. kind is one of
// api.ConsoleKinds for the instance's type ("" is the type's default: a
// container's shell, a VM's serial console). Console returns the exit
// code of a shell that exited, or NoExit when the console ended otherwise
// (the user left, the VM stopped, a serial or VNC console has no exit).
type Consoler interface {
	Console(ctx context.Context, id, kind string, t Terminal) (int, error)
}

// NoExit is Console's answer when no process exited.
const NoExit = -1

// Terminal is the user's end of a console: its bytes both ways (a shell's
// input and output, a serial line, or RFB for VNC) - Read ends with io.EOF
// when the user leaves - and the sizes the user's terminal takes.
type Terminal interface {
	io.ReadWriter
	// Resizes delivers each size the user's terminal takes, the latest
	// kept when nobody reads (only shells use them).
	Resizes() <-chan WinSize
}

// WinSize is a terminal's size in characters.
type WinSize struct{ Cols, Rows uint16 }
