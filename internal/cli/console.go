package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/kumocloud/kumo/api"
	"github.com/kumocloud/kumo/client"
)

// The escapes that leave a console: "~." at the start of a line (as ssh
// has it) or Ctrl-].
const (
	escTilde = '~'
	escCtrlB = 0x1d // Ctrl-]
)

func (a *app) consoleCmd() *cobra.Command {
	var kind, listen string
	cmd := &cobra.Command{
		Use:   "console NAME [--kind shell|serial | --kind vnc --listen ADDR]",
		Short: "Attach to a RUNNING instance's console: a container's shell, a VM's serial line (~. or Ctrl-] detaches)",
		Long: "Attach this terminal to an instance's console over the API's WebSocket console protocol: a container's\n" +
			"shell on a terminal of its own (its size follows this terminal's), or a VM's serial console. '~.' at\n" +
			"the start of a line, or Ctrl-], detaches. A shell's exit status is the command's.\n" +
			"With input from a pipe, the input is typed into the console; at its end a shell gets Ctrl-D\n" +
			"(end of input) and a serial console is left once it has been quiet for a second.\n" +
			"--kind vnc --listen ADDR bridges a VM's display to a local VNC viewer instead (each viewer\n" +
			"connection is a console of its own; the display has no password of its own, so only loopback\n" +
			"addresses are taken).",
		Example: "  kumo instance console c1\n  echo 'uname -a; exit' | kumo instance console c1\n  kumo instance console vm1 --kind serial\n  kumo instance console vm1 --kind vnc --listen 127.0.0.1:5901 & vncviewer 127.0.0.1:5901",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if (kind == api.ConsoleVNC) != (listen != "") {
				return usagef("--kind vnc and --listen go together: a VM's display is for a VNC viewer, not this terminal")
			}
			c, project, err := a.clientAndProject(cmd)
			if err != nil {
				return err
			}
			if kind == api.ConsoleVNC {
				return a.vncBridge(cmd.Context(), c, project, args[0], listen)
			}
			if kind == "" {
				in, err := c.Instance(cmd.Context(), project, args[0])
				if err != nil {
					return err
				}
				if kinds := api.ConsoleKinds[in.Type]; len(kinds) > 0 {
					kind = kinds[0]
				}
			}
			con, err := c.InstanceConsole(cmd.Context(), project, args[0], kind)
			if err != nil {
				return err
			}
			defer con.Close()
			return a.attach(cmd.Context(), con, kind == api.ConsoleShell)
		},
	}
	cmd.Flags().StringVar(&kind, "kind", "", "shell (containers), serial or vnc (VMs); default: the instance's")
	cmd.Flags().StringVar(&listen, "listen", "", "with --kind vnc: a loopback address (127.0.0.1:5901; port 0 picks one) where a VNC viewer connects, until Ctrl-C")
	return cmd
}

// attach joins this process's terminal (or pipes) to an open console
// until the console ends or the user detaches.
func (a *app) attach(ctx context.Context, con *client.Console, shell bool) error {
	in, isTerm := a.stdin.(*os.File)
	isTerm = isTerm && term.IsTerminal(int(in.Fd()))
	var lastOutput sync.Mutex // held while output is written; guards last
	last := time.Now()
	detached := make(chan struct{})
	if isTerm {
		old, err := term.MakeRaw(int(in.Fd()))
		if err != nil {
			return err
		}
		defer term.Restore(int(in.Fd()), old)
		fmt.Fprint(a.stderr, "Attached: ~. or Ctrl-] detaches.\r\n")
		resize := func() {
			if w, h, err := term.GetSize(int(in.Fd())); err == nil {
				con.Resize(w, h)
			}
		}
		resize()
		winch := make(chan os.Signal, 1)
		signal.Notify(winch, syscall.SIGWINCH)
		defer signal.Stop(winch)
		go func() {
			for range winch {
				resize()
			}
		}()
		go func() {
			esc := &escaper{w: con, atStart: true}
			if _, err := io.Copy(esc, a.stdin); errors.Is(err, errDetach) {
				close(detached)
				con.Close()
			}
		}()
	} else {
		go func() {
			io.Copy(con, a.stdin)
			// The input ended: a shell reads end-of-input (Ctrl-D at the
			// start of a line) and exits; a serial line is left once
			// quiet.
			if shell {
				con.Write([]byte{4})
				return
			}
			for {
				time.Sleep(100 * time.Millisecond)
				lastOutput.Lock()
				quiet := time.Since(last) > time.Second
				lastOutput.Unlock()
				if quiet {
					con.Close()
					return
				}
			}
		}()
	}
	_, err := io.Copy(writerFunc(func(p []byte) (int, error) {
		lastOutput.Lock()
		defer lastOutput.Unlock()
		last = time.Now()
		return a.stdout.Write(p)
	}), con)
	select {
	case <-detached:
		fmt.Fprint(a.stderr, "\r\nDetached.\r\n")
		return nil
	default:
	}
	if code, ok := con.ExitCode(); ok && code != 0 {
		return exitCode(code)
	}
	if err != nil && ctx.Err() == nil {
		if isTerm {
			fmt.Fprint(a.stderr, "\r\n")
		}
		return err
	}
	return nil
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

// errDetach is the user's escape.
var errDetach = errors.New("detached")

// escaper passes typed input on, watching for the escapes: Ctrl-]
// anywhere, "~." at the start of a line ("~~" there sends one "~"; a "~"
// and anything else is sent as typed).
type escaper struct {
	w       io.Writer
	atStart bool // the last byte ended a line (or nothing was typed yet)
	tilde   bool // a "~" at the start of a line is held
}

func (e *escaper) Write(p []byte) (int, error) {
	out := make([]byte, 0, len(p)+1)
	for _, b := range p {
		switch {
		case b == escCtrlB:
			return len(p), e.detach(out)
		case e.tilde:
			e.tilde = false
			if b == '.' {
				return len(p), e.detach(out)
			}
			if b != escTilde {
				out = append(out, escTilde)
			}
			out = append(out, b)
		case e.atStart && b == escTilde:
			e.tilde = true
		default:
			out = append(out, b)
		}
		e.atStart = b == '\r' || b == '\n'
	}
	if len(out) > 0 {
		if _, err := e.w.Write(out); err != nil {
			return 0, err
		}
	}
	return len(p), nil
}

// detach sends what was typed before the escape.
func (e *escaper) detach(out []byte) error {
	if len(out) > 0 {
		e.w.Write(out)
	}
	return errDetach
}

// vncBridge serves a VM's display to local VNC viewers: each connection
// to addr (loopback only) is joined to a console of kind vnc.
func (a *app) vncBridge(ctx context.Context, c *client.Client, project, name, addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return usagef("--listen %q: want HOST:PORT", addr)
	}
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return usagef("--listen %q: only loopback addresses (the display has no password of its own)", addr)
	}
	// Refused before listening: an instance that is not there, or no VM.
	probe, err := c.InstanceConsole(ctx, project, name, api.ConsoleVNC)
	if err != nil {
		return err
	}
	probe.Close()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	defer ln.Close()
	context.AfterFunc(ctx, func() { ln.Close() })
	fmt.Fprintf(a.stdout, "VNC display of %s at %s (Ctrl-C ends)\n", name, ln.Addr())
	for {
		conn, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		go func() {
			defer conn.Close()
			con, err := c.InstanceConsole(ctx, project, name, api.ConsoleVNC)
			if err != nil {
				fmt.Fprintln(a.stderr, "Error: "+oneLine(err.Error()))
				return
			}
			defer con.Close()
			done := make(chan struct{}, 2)
			go func() { io.Copy(con, conn); done <- struct{}{} }()
			go func() { io.Copy(conn, con); done <- struct{}{} }()
			<-done
		}()
	}
}
