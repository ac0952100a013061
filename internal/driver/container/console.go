package container

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"path/filepath"
	"sync"
	"time"

	"github.com/creack/pty"

	"github.com/kumocloud/kumo/api"
	"github.com/kumocloud/kumo/internal/driver"
)

// Console implements driver.Consoler: a shell in the container on a
// terminal of its own. runc exec --tty runs /bin/sh on a pty runc makes
// from the container's devpts; runc's own stdio is the slave of a pty
// held here, so runc passes the bytes between the two and copies each
// size set on this pty to the container's (it resizes on SIGWINCH, which
// the kernel sends it as the slave's session leader). runc exits with the
// shell's status: that is the exit code. (runc's --console-socket would
// hand over the container's pty directly, but only to a detached exec,
// whose exit status nobody can then wait for.)
//
// A user who leaves hangs the terminal up: runc gets SIGHUP and passes it
// on to the shell.
func (d *Driver) Console(ctx context.Context, id, kind string, t driver.Terminal) (int, error) {
	if kind != "" && kind != api.ConsoleShell {
		return driver.NoExit, fmt.Errorf("%w: a container's console is its shell, not %q", driver.ErrState, kind)
	}
	if _, err := d.readMeta(id); err != nil {
		return driver.NoExit, err
	}
	if st := d.state(ctx, id); st != "running" {
		return driver.NoExit, fmt.Errorf("%w: container is %s", driver.ErrState, orStopped(st))
	}
	cmd := exec.Command(d.runc, "--root", filepath.Join(d.root, "runc"), "exec", "--tty",
		"--env", "TERM=xterm-256color", "--env", "PS1=# ", id, "/bin/sh")
	ptmx, err := pty.StartWithSize(cmd, &pty.Winsize{Cols: 80, Rows: 24})
	if err != nil {
		return driver.NoExit, fmt.Errorf("runc exec: %w", err)
	}
	defer ptmx.Close()
	// Input typed ahead waits for the shell's first words: runc sets the
	// container's terminal size only after the shell has started, and a
	// command read before that would see no size.
	output, spoke := make(chan struct{}), make(chan struct{})
	go func() {
		// Until the slave has no holder left (EIO) or the user is gone.
		io.Copy(t, &firstRead{r: ptmx, done: spoke})
		close(output)
	}()
	userGone := make(chan struct{})
	go func() {
		defer close(userGone)
		buf := make([]byte, 32<<10)
		for {
			n, err := t.Read(buf)
			if n > 0 {
				select {
				case <-spoke:
				case <-output:
				case <-time.After(10 * time.Second):
				}
				if _, werr := ptmx.Write(buf[:n]); werr != nil {
					return
				}
			}
			if err != nil {
				return
			}
		}
	}()
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	hangUp := func() {
		ptmx.Close()
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill() // runc ignored the hang-up
			<-exited
		}
	}
	for {
		select {
		case sz := <-t.Resizes():
			pty.Setsize(ptmx, &pty.Winsize{Cols: sz.Cols, Rows: sz.Rows})
		case <-userGone:
			select {
			case err := <-exited: // it ended first (its input broke with it)
				return exitStatus(err)
			default:
			}
			hangUp()
			return driver.NoExit, nil
		case <-ctx.Done():
			hangUp()
			return driver.NoExit, ctx.Err()
		case err := <-exited:
			// The shell's last words come before its exit status.
			select {
			case <-output:
			case <-time.After(5 * time.Second):
			}
			return exitStatus(err)
		}
	}
}

// exitStatus is runc exec's exit status (the shell's) from its Wait.
func exitStatus(err error) (int, error) {
	var ee *exec.ExitError
	if errors.As(err, &ee) && ee.ExitCode() >= 0 {
		return ee.ExitCode(), nil
	}
	if err != nil {
		return driver.NoExit, fmt.Errorf("runc exec: %w", err)
	}
	return 0, nil
}

// firstRead closes done once a read returned something.
type firstRead struct {
	r    io.Reader
	done chan struct{}
	once sync.Once
}

func (f *firstRead) Read(p []byte) (int, error) {
	n, err := f.r.Read(p)
	if n > 0 {
		f.once.Do(func() { close(f.done) })
	}
	return n, err
}
