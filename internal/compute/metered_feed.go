package compute

import (
	"context"
	"log/slog"

	"github.com/kumocloud/kumo/internal/store"
)

// MeteredSink follows every instance, live and archived, for metering:
// Replace gives every instance of a source ("live" or "archive") as of one
// revision; Put and Delete each change after it, in order. Keys are the
// instances' store keys (unique); the same instance may briefly be in
// both sources while it is archived.
type MeteredSink interface {
	Replace(source string, items map[string]Metered)
	Put(source, key string, m Metered)
	Delete(source, key string)
}

// Sources of FollowMetered.
const (
	SourceLive    = "live"
	SourceArchive = "archive"
)

// FollowMetered feeds sink with every instance and then each change,
// until ctx ends: the budget loop keeps running totals from it instead of
// reading every instance each round. Archived instances are listed and
// watched from exactly that revision (store.Reflect), so no change is
// missed; live ones come from the service's cache, which does the same
// (it must be running: Run), decoded once for both.
func (svc *Service) FollowMetered(ctx context.Context, sink MeteredSink, log *slog.Logger) {
	go store.Reflect(ctx, svc.s, archivePrefix, &meteredView{sink: sink, source: SourceArchive}, log)
	svc.cache.follow(ctx, sink)
}

// meteredView is a MeteredSink as a store.View.
type meteredView struct {
	sink   MeteredSink
	source string
	revs   map[string]int64 // what the sink holds, to drop replays
}

func decodeMetered(kv store.KV) (Metered, bool) {
	var r record
	if store.Decode(kv, &r) != nil {
		return Metered{}, false
	}
	return Metered{Instance: r.Instance, History: r.History}, true
}

func (v *meteredView) Replace(kvs []store.KV, _ int64) {
	v.revs = make(map[string]int64, len(kvs))
	items := make(map[string]Metered, len(kvs))
	for _, kv := range kvs {
		if m, ok := decodeMetered(kv); ok {
			items[kv.Key] = m
			v.revs[kv.Key] = kv.Revision
		}
	}
	v.sink.Replace(v.source, items)
}

func (v *meteredView) Apply(ev store.WatchEvent) {
	if rev, ok := v.revs[ev.KV.Key]; ok && rev >= ev.KV.Revision {
		return // a replay of a resumed watch
	}
	if ev.Type == store.EventPut {
		if m, ok := decodeMetered(ev.KV); ok {
			v.revs[ev.KV.Key] = ev.KV.Revision
			v.sink.Put(v.source, ev.KV.Key, m)
		}
		return
	}
	if _, ok := v.revs[ev.KV.Key]; ok {
		delete(v.revs, ev.KV.Key)
		v.sink.Delete(v.source, ev.KV.Key)
	}
}
