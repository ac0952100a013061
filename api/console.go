package api

// The console protocol: GET /v1/projects/{project}/instances/{name}/console
// upgraded to a WebSocket (RFC 6455). Binary messages carry the console's
// bytes both ways (a terminal's bytes for shell and serial, RFB for vnc);
// text messages carry one ConsoleMessage each. docs/rest-api.md says it
// in full.

// Console kinds (?kind=).
const (
	// ConsoleShell: a shell in a container, on a terminal (pty) of its own.
	ConsoleShell = "shell"
	// ConsoleSerial: a VM's serial console (ttyS0).
	ConsoleSerial = "serial"
	// ConsoleVNC: a VM's display, as RFB (the VNC protocol noVNC speaks).
	ConsoleVNC = "vnc"
)

// ConsoleKinds are the console kinds of each instance type, the default
// (no ?kind=) first.
var ConsoleKinds = map[string][]string{
	TypeContainer: {ConsoleShell},
	TypeVM:        {ConsoleSerial, ConsoleVNC},
}

// Console control message types.
const (
	// ConsoleResize (client to server): the terminal's size in characters.
	ConsoleResize = "resize"
	// ConsoleExit (server to client): the shell exited with Code; the
	// server then closes the WebSocket normally (1000).
	ConsoleExit = "exit"
	// ConsoleError (server to client): the console could not go on
	// (Message says why); the server then closes the WebSocket (1011).
	ConsoleError = "error"
)

// MaxConsoleSize bounds a resize's cols and rows.
const MaxConsoleSize = 1000

// ConsoleMessage is one text message of the console protocol:
// {"type":"resize","cols":N,"rows":N}, {"type":"exit","code":N} or
// {"type":"error","message":"..."}.
type ConsoleMessage struct {
	Type    string `json:"type"`
	Cols    int    `json:"cols,omitempty"`
	Rows    int    `json:"rows,omitempty"`
	Code    *int   `json:"code,omitempty"`
	Message string `json:"message,omitempty"`
}
