package server

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"
)

// TestSecondServerOnADataDir: a second server on a data dir in use is
// refused at once, told which process holds it; once the first is gone,
// the data dir is free again.
func TestSecondServerOnADataDir(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	first, err := New(ctx, Config{DataDir: dir, UnsafeNoFsync: true})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := New(ctx, Config{DataDir: dir, UnsafeNoFsync: true})
		done <- err
	}()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("pid %d", os.Getpid())) {
			t.Fatalf("second server: %v", err)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("the second server hangs instead of refusing")
	}
	first.Close()
	again, err := New(ctx, Config{DataDir: dir, UnsafeNoFsync: true})
	if err != nil {
		t.Fatalf("after the first closed: %v", err)
	}
	again.Close()
}
