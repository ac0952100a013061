package etcdstore

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"
)

func TestServerLock(t *testing.T) {
	ctx := context.Background()
	e, err := OpenEmbedded(ctx, EmbedOptions{Dir: t.TempDir(), NoFsync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	endpoint := e.etcd.Clients[0].Addr().String()
	open := func() *Store {
		s, err := OpenRemote(ctx, []string{endpoint}, "/cloud/")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}
	host, _ := os.Hostname()
	first := Holder{PID: os.Getpid(), Host: host, DataDir: "/a"}
	release, _, err := open().Lock(ctx, first, 5)
	if err != nil {
		t.Fatal(err)
	}
	// A second server on the same store is refused, told who holds it.
	_, _, err = open().Lock(ctx, Holder{PID: os.Getpid(), Host: "other", DataDir: "/b"}, 5)
	if !errors.Is(err, ErrLocked) || !strings.Contains(err.Error(), first.String()) {
		t.Fatalf("second lock: %v", err)
	}
	release()
	// Released: the next one gets it.
	release2, _, err := open().Lock(ctx, Holder{PID: os.Getpid(), Host: "other", DataDir: "/b"}, 5)
	if err != nil {
		t.Fatalf("after release: %v", err)
	}
	release2()
	// A holder on this machine whose process is gone (killed: its lease
	// has not expired yet) is taken over at once.
	dead := exec.Command("true")
	dead.Run()
	if _, _, err := open().Lock(ctx, Holder{PID: dead.Process.Pid, Host: host, DataDir: "/a"}, 60); err != nil {
		t.Fatal(err)
	}
	if _, _, err := open().Lock(ctx, Holder{PID: os.Getpid(), Host: host, DataDir: "/a"}, 5); err != nil {
		t.Fatalf("a dead holder's lock was not taken over: %v", err)
	}
}
