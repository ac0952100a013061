package container

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/kumocloud/kumo/internal/driver"
	"github.com/kumocloud/kumo/internal/driver/drivertest"
)

// TestConsoleShell: the console is a shell on a real terminal - stty
// reports the size the user's terminal took, each resize reaches it - and
// the shell's exit status is the console's; a user who leaves ends the
// shell inside the container too.
func TestConsoleShell(t *testing.T) {
	sum, fetch := tiny(t)
	d := newDriver(t, t.TempDir(), fetch)
	ctx := context.Background()
	s := spec("c-console", sum, 64, "")
	if err := d.Prepare(ctx, s); err != nil {
		t.Fatal(err)
	}
	defer d.Cleanup(ctx, s.ID, false)
	if err := d.Start(ctx, s); err != nil {
		t.Fatal(err)
	}
	defer d.Stop(ctx, s.ID, true)

	term := drivertest.NewTerm()
	type result struct {
		code int
		err  error
	}
	done := make(chan result, 1)
	go func() { code, err := d.Console(ctx, s.ID, "shell", term); done <- result{code, err} }()
	term.Resize(100, 30)
	term.Type("tty; stty size\n")
	at := term.WaitFor(t, 0, "/dev/pts/")
	at = term.WaitFor(t, at, "30 100")
	term.Resize(132, 43)
	term.Type("stty size\n")
	term.WaitFor(t, at, "43 132")
	term.Type("exit 7\n")
	select {
	case r := <-done:
		if r.err != nil || r.code != 7 {
			t.Fatalf("the shell exited 7; the console says %d, %v", r.code, r.err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the console did not end when the shell exited")
	}

	// A user who leaves: the shell inside ends as well.
	term = drivertest.NewTerm()
	go func() { code, err := d.Console(ctx, s.ID, "", term); done <- result{code, err} }()
	term.Type("echo $((6*7)); sleep 1000\n")
	term.WaitFor(t, 0, "42")
	term.Hangup()
	select {
	case r := <-done:
		if r.err != nil || r.code != driver.NoExit {
			t.Fatalf("a user who left: %d, %v; want NoExit, no error", r.code, r.err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the console did not end when its user left")
	}
	waitFor(t, "the shell and its sleep gone from the container", func() bool {
		out, code := run(t, d, s.ID, "ps")
		return code == 0 && !strings.Contains(out, "sleep 1000")
	})
	if _, err := d.Console(ctx, s.ID, "vnc", drivertest.NewTerm()); err == nil {
		t.Error("a container's vnc console was not refused")
	}
}
