package compute

import (
	"maps"
	"slices"
	"sync"
	"testing"

	"github.com/kumocloud/kumo/api"
	"github.com/kumocloud/kumo/internal/store"
)

// TestPendingIndexFollowsState: the scheduler's index of PENDING
// instances holds exactly the instances a full scan finds PENDING,
// through creates, placements, deletes and a relist.
func TestPendingIndexFollowsState(t *testing.T) {
	c := newCache()
	var listed sync.WaitGroup
	listed.Add(1)
	v := &instanceView{cacheView{c: c, listed: &listed}}
	rev := int64(0)
	put := func(name string, state api.State) store.KV {
		rev++
		r := record{Instance: api.Instance{Meta: api.Meta{ID: "id-" + name, Name: name}, Project: "p", State: state}}
		return store.KV{Key: instanceKey("p", name), Value: store.MustJSON(r), Revision: rev}
	}
	check := func(want ...string) {
		t.Helper()
		var scan []string
		for k, e := range c.instances {
			if e.rec.State == api.StatePending {
				scan = append(scan, k)
			}
		}
		got := slices.Sorted(maps.Keys(c.pending))
		slices.Sort(scan)
		var keys []string
		for _, n := range want {
			keys = append(keys, instanceKey("p", n))
		}
		slices.Sort(keys)
		if !slices.Equal(got, scan) || !slices.Equal(got, keys) {
			t.Fatalf("pending index %v, full scan %v, want %v", got, scan, keys)
		}
	}
	v.Replace([]store.KV{put("a", api.StatePending), put("b", api.StateRunning)}, rev)
	check("a")
	for _, kv := range []store.KV{put("c", api.StatePending), put("d", api.StatePending)} {
		v.Apply(store.WatchEvent{Type: store.EventPut, KV: kv, RevisionEnd: true})
	}
	check("a", "c", "d")
	v.Apply(store.WatchEvent{Type: store.EventPut, KV: put("a", api.StateProlog), RevisionEnd: true})
	rev++
	v.Apply(store.WatchEvent{Type: store.EventDelete, KV: store.KV{Key: instanceKey("p", "c"), Revision: rev}, RevisionEnd: true})
	check("d")
	v.Replace([]store.KV{put("e", api.StatePending), put("d", api.StateRunning)}, rev)
	check("e")
}
