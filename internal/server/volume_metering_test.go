package server

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/kumocloud/kumo/internal/store/etcdstore"
	"github.com/kumocloud/kumo/internal/store/memstore"
)

// TestVolumeMeteringAcrossRestart: a volume is billed for its size from
// its create, through a server stop of an hour, to now: the hours the
// server was down are neither lost nor counted twice.
func TestVolumeMeteringAcrossRestart(t *testing.T) {
	dir := t.TempDir()
	clk := &fakeClock{t: day.Add(9 * time.Hour)}
	st, err := etcdstore.OpenEmbedded(context.Background(), etcdstore.EmbedOptions{Dir: dir + "/etcd", NoFsync: true})
	if err != nil {
		t.Fatal(err)
	}
	m := newMeterCloud(t, st, dir, clk, true)
	// 0.50 per GiB-hour.
	if r := m.ts.do("PUT", "/v1/prices/storage/volumes", "", map[string]any{"micro_per_hour": 500_000}); r.Status != 200 {
		t.Fatalf("volume price: %d %s", r.Status, r.Body)
	}
	if r := m.ts.do("PUT", "/v1/prices/storage/nonsense", "", map[string]any{"micro_per_hour": 1}); r.Status != 404 {
		t.Fatalf("a price of nothing: %d %s", r.Status, r.Body)
	}
	if r := m.ts.do("POST", "/v1/projects/default/volumes", "", map[string]any{"name": "data", "size_gib": 2}); r.Status != 201 {
		t.Fatalf("volume: %d %s", r.Status, r.Body)
	}
	clk.Add(30 * time.Minute)
	m.s.Close()

	clk.Add(time.Hour) // down for an hour; the volume stays on its host
	st, err = etcdstore.OpenEmbedded(context.Background(), etcdstore.EmbedOptions{Dir: dir + "/etcd", NoFsync: true})
	if err != nil {
		t.Fatal(err)
	}
	m = newMeterCloud(t, st, dir, clk, false)
	defer m.s.Close()
	clk.Add(30 * time.Minute)
	rep := m.usage(fmt.Sprintf("from=2026-11-02&to=%s", clk.Now().Format(time.RFC3339)))
	if len(rep.Groups) != 1 || rep.Groups[0].Key != "volume:data" || rep.Total.VolumeGiBHours != 4 || rep.Total.Cost != "2.000000" {
		t.Fatalf("after a restart: %+v, want 2 GiB x 2 h = 4 GiB-h and 2.00", rep)
	}
}

// TestRootVolumeMetered: a root volume made with its instance is billed
// from the instance's create, as any volume is from its own.
func TestRootVolumeMetered(t *testing.T) {
	dir := t.TempDir()
	clk := &fakeClock{t: day.Add(9 * time.Hour)}
	m := newMeterCloud(t, memstore.New(), dir, clk, true)
	defer m.s.Close()
	if r := m.ts.do("PUT", "/v1/prices/storage/volumes", "", map[string]any{"micro_per_hour": 500_000}); r.Status != 200 {
		t.Fatalf("volume price: %d %s", r.Status, r.Body)
	}
	if r := m.ts.do("POST", "/v1/projects/default/instances", "", map[string]any{"name": "db", "type": "vm", "flavor": "meter", "image": "x", "root_volume_size_gib": 3}); r.Status != 201 {
		t.Fatalf("instance: %d %s", r.Status, r.Body)
	}
	clk.Add(time.Hour)
	rep := m.usage(fmt.Sprintf("from=2026-11-02&to=%s", clk.Now().Format(time.RFC3339)))
	if rep.Total.VolumeGiBHours != 3 {
		t.Fatalf("a 3 GiB root volume for an hour: %+v, want 3 GiB-h", rep.Total)
	}
}
