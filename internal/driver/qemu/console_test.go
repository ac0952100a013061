package qemu

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/kumocloud/kumo/internal/driver"
	"github.com/kumocloud/kumo/internal/driver/drivertest"
)

// TestConsoles: two viewers share the serial console (both see the
// output, either may type; one leaving does not end the other's), the
// console log keeps everything, and the display speaks RFB from its unix
// socket: banner, security None, a frame with something on it.
func TestConsoles(t *testing.T) {
	sum, fetch := tinyVM(t)
	d := newDriver(t, t.TempDir(), fetch)
	t.Cleanup(func() { assertNoLeftovers(t, d) })
	ctx := context.Background()
	s := spec("vm-console", sum, 128, "")
	if err := d.Prepare(ctx, s); err != nil {
		t.Fatal(err)
	}
	defer d.Cleanup(ctx, s.ID, false)
	if err := d.Start(ctx, s); err != nil {
		t.Fatal(err)
	}
	defer d.Stop(ctx, s.ID, true)
	waitFor(t, "ready", func() bool { st, _ := d.Status(ctx, s.ID); return st.Ready })

	a, b := drivertest.NewTerm(), drivertest.NewTerm()
	ended := make(chan error, 2)
	for _, term := range []*drivertest.Term{a, b} {
		go func() { _, err := d.Console(ctx, s.ID, "serial", term); ended <- err }()
	}
	// Both are attached once each sees what the other types.
	a.Type("\necho from-$((40+2))\n")
	b.WaitFor(t, 0, "from-42")
	atB := a.WaitFor(t, 0, "from-42")
	b.Type("\necho and-$((1+1))\n")
	a.WaitFor(t, atB, "and-2")
	a.Hangup()
	select {
	case err := <-ended:
		if err != nil {
			t.Fatalf("a viewer who left: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the console did not end when its viewer left")
	}
	at := len(b.Output())
	b.Type("\necho still-$((2+1))\n")
	b.WaitFor(t, at, "still-3")
	b.Hangup()
	<-ended
	if log, _ := d.Logs(ctx, s.ID, 200); !strings.Contains(string(log), "from-42") || !strings.Contains(string(log), "still-3") {
		t.Errorf("the console log misses what was typed on the console: %s", log)
	}

	viewer, agentEnd := net.Pipe()
	defer viewer.Close()
	go func() {
		_, err := d.Console(ctx, s.ID, "vnc", pipeTerm{agentEnd})
		agentEnd.Close()
		ended <- err
	}()
	viewer.SetDeadline(time.Now().Add(60 * time.Second))
	f, err := drivertest.RFBFrame(viewer)
	if err != nil {
		t.Fatal(err)
	}
	if f.Width < 320 || f.Height < 200 || f.Lit() == 0 {
		t.Fatalf("display %dx%d %q with %d lit pixels, want a VGA screen with something on it", f.Width, f.Height, f.Name, f.Lit())
	}
	viewer.Close()
	if err := <-ended; err != nil {
		t.Fatalf("the display's viewer left: %v", err)
	}
}

// pipeTerm is a net.Conn as a driver.Terminal that never resizes.
type pipeTerm struct{ net.Conn }

func (pipeTerm) Resizes() <-chan driver.WinSize { return nil }
