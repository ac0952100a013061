package compute

import (
	"maps"
	"slices"
	"sync"
	"testing"

	"github.com/kumocloud/kumo/api"
	"github.com/kumocloud/kumo/internal/store"
)

// TestCacheIndexesFollowRecords: the cache's indexes of PENDING, HA and
// migrating instances (what the scheduler and the HA and migration
// controllers look at instead of every instance) hold exactly what a full
// scan finds, through creates, changes, deletes and a relist.
func TestCacheIndexesFollowRecords(t *testing.T) {
	c := newCache()
	var listed sync.WaitGroup
	listed.Add(1)
	v := &instanceView{cacheView{c: c, listed: &listed}}
	rev := int64(0)
	type kind struct {
		pending, ha, migrating bool
	}
	put := func(name string, k kind) store.KV {
		rev++
		r := record{Instance: api.Instance{Meta: api.Meta{ID: "id-" + name, Name: name}, Project: "p", State: api.StateRunning, HA: k.ha}}
		if k.pending {
			r.State = api.StatePending
		}
		if k.migrating {
			r.Migration = &api.Migration{ID: "m-" + name, Phase: api.MigrationTransfer}
		}
		return store.KV{Key: instanceKey("p", name), Value: store.MustJSON(r), Revision: rev}
	}
	indexes := []struct {
		name  string
		index func() map[string]*entry
		in    func(*record) bool
	}{
		{"pending", func() map[string]*entry { return c.pending }, func(r *record) bool { return r.State == api.StatePending }},
		{"ha", func() map[string]*entry { return c.ha }, func(r *record) bool { return r.HA }},
		{"migrating", func() map[string]*entry { return c.migrating }, func(r *record) bool { return r.Migration != nil }},
	}
	check := func(want map[string][]string) {
		t.Helper()
		for _, ix := range indexes {
			var scan []string
			for k, e := range c.instances {
				if ix.in(&e.rec) {
					scan = append(scan, k)
				}
			}
			got := slices.Sorted(maps.Keys(ix.index()))
			slices.Sort(scan)
			var keys []string
			for _, n := range want[ix.name] {
				keys = append(keys, instanceKey("p", n))
			}
			slices.Sort(keys)
			if !slices.Equal(got, scan) || !slices.Equal(got, keys) {
				t.Fatalf("%s index %v, full scan %v, want %v", ix.name, got, scan, keys)
			}
		}
	}
	apply := func(kv store.KV) {
		v.Apply(store.WatchEvent{Type: store.EventPut, KV: kv, RevisionEnd: true})
	}
	v.Replace([]store.KV{put("a", kind{pending: true, ha: true}), put("b", kind{migrating: true})}, rev)
	check(map[string][]string{"pending": {"a"}, "ha": {"a"}, "migrating": {"b"}})
	apply(put("c", kind{pending: true}))
	apply(put("d", kind{pending: true, ha: true}))
	check(map[string][]string{"pending": {"a", "c", "d"}, "ha": {"a", "d"}, "migrating": {"b"}})
	apply(put("a", kind{ha: true, migrating: true})) // placed, then moving
	apply(put("b", kind{}))                          // its migration done
	rev++
	v.Apply(store.WatchEvent{Type: store.EventDelete, KV: store.KV{Key: instanceKey("p", "c"), Revision: rev}, RevisionEnd: true})
	check(map[string][]string{"pending": {"d"}, "ha": {"a", "d"}, "migrating": {"a"}})
	rev++
	v.Apply(store.WatchEvent{Type: store.EventDelete, KV: store.KV{Key: instanceKey("p", "a"), Revision: rev}, RevisionEnd: true})
	check(map[string][]string{"pending": {"d"}, "ha": {"d"}})
	v.Replace([]store.KV{put("e", kind{pending: true, migrating: true}), put("d", kind{})}, rev)
	check(map[string][]string{"pending": {"e"}, "migrating": {"e"}})
}
