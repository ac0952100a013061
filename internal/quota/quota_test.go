package quota

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/kumocloud/kumo/api"
	"github.com/kumocloud/kumo/internal/errs"
	"github.com/kumocloud/kumo/internal/store"
	"github.com/kumocloud/kumo/internal/store/etcdstore"
	"github.com/kumocloud/kumo/internal/store/memstore"
)

func TestParseSpec(t *testing.T) {
	tests := []struct {
		spec string
		want map[string]int64
		err  bool
	}{
		{"instances=10,vcpus=20,memory=20GiB", map[string]int64{"instances": 10, "vcpus": 20, "memory_mib": 20480}, false},
		{"memory=512", map[string]int64{"memory_mib": 512}, false},
		{"memory=512MiB,disk=2TiB", map[string]int64{"memory_mib": 512, "disk_gib": 2048}, false},
		{"disk=100", map[string]int64{"disk_gib": 100}, false},
		{"disk=1500MiB", map[string]int64{"disk_gib": 2}, false},
		{"floating-ips=unlimited", map[string]int64{"floating_ips": -1}, false},
		{"", map[string]int64{}, false},
		{"instances=-5", nil, true},
		{"instances=10GiB", nil, true},
		{"gpus=1", nil, true},
		{"instances", nil, true},
		{"memory=1PB", nil, true},
	}
	for _, tc := range tests {
		got, err := ParseSpec(tc.spec)
		if (err != nil) != tc.err {
			t.Errorf("ParseSpec(%q) error = %v, want error %v", tc.spec, err, tc.err)
			continue
		}
		if tc.err {
			continue
		}
		if fmt.Sprint(got) != fmt.Sprint(tc.want) {
			t.Errorf("ParseSpec(%q) = %v, want %v", tc.spec, got, tc.want)
		}
	}
}

func TestApplyRejects(t *testing.T) {
	var lim api.ResourceCounts
	if err := Apply(&lim, map[string]int64{"instances": -2}, "quota"); !errors.Is(err, errs.ErrInvalid) {
		t.Fatalf("negative quota: %v", err)
	}
	if err := Apply(&lim, map[string]int64{"memory": 5}, "quota"); !errors.Is(err, errs.ErrInvalid) {
		t.Fatalf("alias in API: %v (the API takes memory_mib)", err)
	}
	if err := Apply(&lim, map[string]int64{"instances": 3, "memory_mib": -1}, "quota"); err != nil || lim.Instances != 3 || lim.MemoryMiB != -1 {
		t.Fatalf("Apply: %v %+v", err, lim)
	}
}

// TestConcurrentReserve: 50 parallel creates against a quota of 10 leave
// exactly 10 objects and usage 10, on every store.
func TestConcurrentReserve(t *testing.T) {
	stores := map[string]func(t *testing.T) store.Store{
		"mem": func(t *testing.T) store.Store { return memstore.New() },
		"etcd": func(t *testing.T) store.Store {
			s, err := etcdstore.OpenEmbedded(context.Background(), etcdstore.EmbedOptions{Dir: t.TempDir(), NoFsync: true})
			if err != nil {
				t.Fatal(err)
			}
			return s
		},
	}
	for name, open := range stores {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			s := open(t)
			defer s.Close()
			lim := api.ResourceCounts{Instances: 10, VCPUs: -1, MemoryMiB: -1}
			s.Txn(ctx, nil, []store.Op{InitOp("p", lim)})
			var wg sync.WaitGroup
			var mu sync.Mutex
			ok, over := 0, 0
			for i := 0; i < 50; i++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					key := fmt.Sprintf("/objs/p/%02d", i)
					_, err := Reserve(ctx, s, "p", api.ResourceCounts{Instances: 1, VCPUs: 2}, []store.Cond{store.Absent(key)}, []store.Op{store.Put(key, []byte("x"))})
					mu.Lock()
					defer mu.Unlock()
					switch {
					case err == nil:
						ok++
					case errors.Is(err, errs.ErrQuotaExceeded):
						over++
					default:
						t.Errorf("create %d: %v", i, err)
					}
				}()
			}
			wg.Wait()
			objs, _ := store.ListAll(ctx, s, "/objs/p/")
			r, _, _ := Get(ctx, s, "p")
			if ok != 10 || over != 40 || len(objs) != 10 || r.Usage.Instances != 10 || r.Usage.VCPUs != 20 {
				t.Fatalf("ok=%d over=%d objects=%d usage=%+v; want 10/40/10/instances 10", ok, over, len(objs), r.Usage)
			}
			// Releasing frees room for exactly one more.
			Reserve(ctx, s, "p", api.ResourceCounts{Instances: -1, VCPUs: -2}, nil, []store.Op{store.Del(objs[0].Key)})
			if _, err := Reserve(ctx, s, "p", api.ResourceCounts{Instances: 1}, nil, nil); err != nil {
				t.Fatalf("after release: %v", err)
			}
			_, err := Reserve(ctx, s, "p", api.ResourceCounts{Instances: 1}, nil, nil)
			var e *errs.Error
			if !errors.As(err, &e) || e.Field != "instances" {
				t.Fatalf("over quota: %v, want quota_exceeded naming instances", err)
			}
		})
	}
}

// A failing caller condition is reported as a conflict and changes nothing.
func TestReserveCallerConflict(t *testing.T) {
	ctx := context.Background()
	s := memstore.New()
	s.Txn(ctx, nil, []store.Op{InitOp("p", Defaults())})
	s.Create(ctx, "/taken", nil)
	_, err := Reserve(ctx, s, "p", api.ResourceCounts{Instances: 1}, []store.Cond{store.Absent("/taken")}, nil)
	if !errors.Is(err, store.ErrConflict) {
		t.Fatalf("got %v, want store.ErrConflict", err)
	}
	r, _, _ := Get(ctx, s, "p")
	if r.Usage.Instances != 0 {
		t.Fatalf("usage changed by a failed reserve: %+v", r.Usage)
	}
}

// TestReserveSameKeyInOneBatch: callers that create the same key at once
// (two creates of one name, two ports picking one address) are never
// both committed, even when they land in one group commit: exactly one
// wins, the others see a conflict, and usage counts the winner only.
func TestReserveSameKeyInOneBatch(t *testing.T) {
	ctx := context.Background()
	s := memstore.New()
	s.Txn(ctx, nil, []store.Op{InitOp("p", Defaults())})
	var wg sync.WaitGroup
	var mu sync.Mutex
	wins, conflicts := 0, 0
	for i := 0; i < 50; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := Reserve(ctx, s, "p", api.ResourceCounts{Instances: 1}, []store.Cond{store.Absent("/same")}, []store.Op{store.Put("/same", []byte(fmt.Sprint(i)))})
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				wins++
			case errors.Is(err, store.ErrConflict):
				conflicts++
			default:
				t.Errorf("reserve: %v", err)
			}
		}()
	}
	wg.Wait()
	r, _, _ := Get(ctx, s, "p")
	if wins != 1 || conflicts != 49 || r.Usage.Instances != 1 {
		t.Fatalf("%d wins, %d conflicts, usage %d; want 1, 49, 1", wins, conflicts, r.Usage.Instances)
	}
}
