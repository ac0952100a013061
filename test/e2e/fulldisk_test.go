package e2e

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kumocloud/kumo/api"
	"github.com/kumocloud/kumo/client"
)

// freeBytes is the free space where dir is.
func freeBytes(t *testing.T, dir string) int64 {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		t.Fatal(err)
	}
	return int64(st.Bavail) * int64(st.Bsize)
}

// fill writes a file in dir until leave bytes are free.
func fill(t *testing.T, dir string, leave int64) string {
	p := filepath.Join(dir, "filler")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	chunk := make([]byte, 1<<20)
	for freeBytes(t, dir) > leave+int64(len(chunk)) {
		if _, err := f.Write(chunk); err != nil {
			break
		}
	}
	return p
}

// TestFullDisk: a server whose data dir's disk fills up answers writes
// with 507 saying why, serves reads, says so on /readyz and in its log,
// and writes again once space is freed; started on a full disk it says
// why it cannot.
func TestFullDisk(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("mounting a tmpfs needs root; CI runs as root")
	}
	mnt := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=320m", "tmpfs", mnt).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a tmpfs here: %v %s", err, out)
	}
	t.Cleanup(func() { syscall.Unmount(mnt, syscall.MNT_DETACH) })
	s := &server{t: t, dir: filepath.Join(mnt, "data"), addr: freeAddr(t), extraArgs: []string{"--min-free-space-mib", "64", "--log-level", "warn"}}
	s.socket = filepath.Join(t.TempDir(), "kumo.sock")
	s.start()
	t.Cleanup(s.stop)
	ctx := context.Background()
	c := client.Socket(s.socket)
	if _, err := c.CreateProject(ctx, api.ProjectsPost{Name: "before"}); err != nil {
		t.Fatal(err)
	}

	filler := fill(t, mnt, 32<<20)
	// The server looks at the free space at most every 200 ms.
	eventually(t, 10*time.Second, "/readyz to say the disk is full", func() (bool, string) {
		code, body := readyz(t, s.socket)
		return code == 503 && strings.Contains(body, "disk is full"), body
	})
	_, err := c.CreateProject(ctx, api.ProjectsPost{Name: "during"})
	if client.StatusOf(err) != 507 || !strings.Contains(err.Error(), "MiB free") {
		t.Fatalf("a write on a full disk: %v (want 507 saying what is free)", err)
	}
	if _, err := c.Project(ctx, "before"); err != nil {
		t.Fatalf("a read on a full disk: %v", err)
	}
	if !strings.Contains(s.out.String(), "disk is full") {
		t.Errorf("the log does not say the disk is full:\n%s", s.out.String())
	}

	os.Remove(filler)
	eventually(t, 10*time.Second, "writes again once space is freed", func() (bool, string) {
		_, err := c.CreateProject(ctx, api.ProjectsPost{Name: "after"})
		return err == nil, fmt.Sprint(err)
	})

	// Started on a full disk, it serves reads and says why it refuses
	// writes - or, if its store cannot even open, exits saying why.
	s.stop()
	filler = fill(t, mnt, 16<<20)
	defer os.Remove(filler)
	out := &lockedBuffer{}
	cmd := exec.Command(kumoBin, "server", "--data-dir", s.dir, "--listen", freeAddr(t), "--socket", s.socket, "--min-free-space-mib", "64")
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer func() {
		cmd.Process.Signal(syscall.SIGTERM)
		<-exited
	}()
	eventually(t, 90*time.Second, "the server started on a full disk says why", func() (bool, string) {
		select {
		case err := <-exited:
			exited <- err
			return strings.Contains(strings.ToLower(out.String()), "space"), out.String()
		default:
		}
		code, body := readyz(t, s.socket)
		return code == 503 && strings.Contains(body, "disk is full"), body
	})
}

// readyz asks a server's /readyz through its socket ("" if it does not
// answer).
func readyz(t *testing.T, socket string) (int, string) {
	hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", socket)
	}}}
	r, err := hc.Get("http://kumo/readyz")
	if err != nil {
		return 0, ""
	}
	defer r.Body.Close()
	b, _ := io.ReadAll(r.Body)
	return r.StatusCode, string(b)
}
