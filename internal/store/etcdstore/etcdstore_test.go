package etcdstore

import (
	"context"
	"testing"

	"github.com/kumocloud/kumo/internal/store"
	"github.com/kumocloud/kumo/internal/store/storetest"
)

func TestConformanceEmbedded(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store {
		s, err := OpenEmbedded(context.Background(), EmbedOptions{Dir: t.TempDir(), NoFsync: true})
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}

// TestRemotePrefixed runs the suite through the remote client (with its key
// prefix) against an embedded etcd's client listener, as a user with an
// external etcd cluster would use it.
func TestConformanceRemote(t *testing.T) {
	e, err := OpenEmbedded(context.Background(), EmbedOptions{Dir: t.TempDir(), NoFsync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	endpoint := e.etcd.Clients[0].Addr().String()
	n := 0
	storetest.Run(t, func(t *testing.T) store.Store {
		n++
		s, err := OpenRemote(context.Background(), []string{endpoint}, "/suite"+string(rune('a'+n))+"/")
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}

// TestReopenKeepsData: what was written survives a restart of the embedded etcd.
func TestReopenKeepsData(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	s, err := OpenEmbedded(ctx, EmbedOptions{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	rev, _ := s.Create(ctx, "/keep", []byte("me"))
	s.Close()
	s, err = OpenEmbedded(ctx, EmbedOptions{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	kv, err := s.Get(ctx, "/keep")
	if err != nil || string(kv.Value) != "me" || kv.Revision != rev {
		t.Fatalf("after reopen: %+v %v", kv, err)
	}
}
