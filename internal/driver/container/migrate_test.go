package container

import (
	"bytes"
	"context"
	"encoding/binary"
	"io"
	"strings"
	"testing"
)

// TestColdMigration: a container's files - one written, one of the image
// deleted (a whiteout) - move with it to another driver (another host's
// state dir) and are there when it starts again; only the disk's data
// travels, not its size. A stream reaching past its disk is refused and
// leaves nothing behind.
func TestColdMigration(t *testing.T) {
	sum, fetch := tiny(t)
	src := newDriver(t, t.TempDir(), fetch)
	dst := newDriver(t, t.TempDir(), fetch)
	t.Cleanup(func() { assertNoLeftovers(t, src); assertNoLeftovers(t, dst) })
	ctx := context.Background()
	s := spec("c-move", sum, 64, "")
	s.Size.DiskGiB = 2
	if err := src.Prepare(ctx, s); err != nil {
		t.Fatal(err)
	}
	if err := src.Start(ctx, s); err != nil {
		t.Fatal(err)
	}
	run := func(d *Driver, cmd string) string {
		t.Helper()
		var out strings.Builder
		code, err := d.Exec(ctx, s.ID, []string{"/bin/sh", "-c", cmd}, &out)
		if err != nil || code != 0 {
			t.Fatalf("%s: exit %d, %v: %s", cmd, code, err, out.String())
		}
		return out.String()
	}
	run(src, "echo kept-across-hosts > /root/note && rm /bin/ls && sync")
	if _, err := src.SendCold(ctx, s.ID, io.Discard); err == nil {
		t.Fatal("a running container was sent cold")
	}
	if err := src.Stop(ctx, s.ID, false); err != nil {
		t.Fatal(err)
	}
	pr, pw := io.Pipe()
	sent := make(chan int64, 1)
	go func() {
		n, err := src.SendCold(ctx, s.ID, pw)
		pw.CloseWithError(err)
		sent <- n
	}()
	if err := dst.ReceiveCold(ctx, s, pr); err != nil {
		t.Fatal(err)
	}
	if n := <-sent; n <= 0 || n > 256<<20 {
		t.Errorf("sent %d bytes for a 2 GiB disk holding a few files: the holes travelled", n)
	}
	if err := src.Cleanup(ctx, s.ID, false); err != nil {
		t.Fatal(err)
	}
	if err := dst.Start(ctx, s); err != nil {
		t.Fatal(err)
	}
	if got := run(dst, "cat /root/note; test -e /bin/ls && echo ls-is-back || echo ls-still-gone"); got != "kept-across-hosts\nls-still-gone\n" {
		t.Fatalf("after the move: %q", got)
	}
	dst.Stop(ctx, s.ID, true)
	if err := dst.Cleanup(ctx, s.ID, false); err != nil {
		t.Fatal(err)
	}

	// A stream whose extent reaches past its disk.
	var b bytes.Buffer
	b.WriteString(migrationHeader + `{"saved":false,"disk_size":1048576}` + "\n")
	var hdr [16]byte
	binary.BigEndian.PutUint64(hdr[:8], 1<<20)
	binary.BigEndian.PutUint64(hdr[8:], 4096)
	b.Write(hdr[:])
	b.Write(make([]byte, 4096))
	h := spec("c-hostile", sum, 64, "")
	if err := dst.ReceiveCold(ctx, h, &b); err == nil || !strings.Contains(err.Error(), "outside") {
		t.Fatalf("a stream past its disk: %v", err)
	}
	if dst.Has(h.ID) {
		t.Fatal("a refused stream left the container behind")
	}
}
