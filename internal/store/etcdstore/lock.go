package etcdstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"syscall"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// serverLockKey is held, under a lease, by the one server a store has:
// until the control plane is a cluster (leader election for the singleton
// loops), a second server would schedule and judge host liveness beside
// the first.
const serverLockKey = "/locks/server"

// ErrLocked says another server holds the store.
var ErrLocked = errors.New("another kumo server holds this store")

// Holder says which server holds the lock.
type Holder struct {
	PID     int    `json:"pid"`
	Host    string `json:"host"`
	DataDir string `json:"data_dir"`
}

func (h Holder) String() string {
	return fmt.Sprintf("pid %d on %s, data dir %s", h.PID, h.Host, h.DataDir)
}

// dead says whether the holder is a process of this machine that no
// longer exists (a server killed moments ago, its lease not yet expired).
func (h Holder) dead(host string) bool {
	return h.Host == host && h.PID > 0 && errors.Is(syscall.Kill(h.PID, 0), syscall.ESRCH)
}

// Lock takes the server lock for me, under a lease kept alive while the
// process lives: a server that dies loses it within ttlSeconds (at once,
// if it was on this machine: a dead process's lock is taken over). lost
// is closed if the lease cannot be kept (the store was out of reach for
// too long).
func (s *Store) Lock(ctx context.Context, me Holder, ttlSeconds int64) (release func(), lost <-chan struct{}, err error) {
	lease, err := s.client.Grant(ctx, ttlSeconds)
	if err != nil {
		return nil, nil, wrap(err)
	}
	revoke := func() {
		rctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		s.client.Revoke(rctx, lease.ID)
	}
	value, _ := json.Marshal(me)
	for attempt := 0; ; attempt++ {
		resp, err := s.kv.Txn(ctx).
			If(clientv3.Compare(clientv3.CreateRevision(serverLockKey), "=", 0)).
			Then(clientv3.OpPut(serverLockKey, string(value), clientv3.WithLease(lease.ID))).
			Else(clientv3.OpGet(serverLockKey)).
			Commit()
		if err != nil {
			revoke()
			return nil, nil, wrap(err)
		}
		if resp.Succeeded {
			break
		}
		var other Holder
		kvs := resp.Responses[0].GetResponseRange().Kvs
		if len(kvs) > 0 {
			json.Unmarshal(kvs[0].Value, &other)
		}
		if len(kvs) > 0 && attempt == 0 && other.dead(me.Host) {
			// Its process is gone: delete its lock if still the same.
			s.kv.Txn(ctx).If(clientv3.Compare(clientv3.ModRevision(serverLockKey), "=", kvs[0].ModRevision)).Then(clientv3.OpDelete(serverLockKey)).Commit()
			continue
		}
		revoke()
		return nil, nil, fmt.Errorf("%w (%s); until kumo's control plane is a cluster, one server runs per store: stop the other one first", ErrLocked, other)
	}
	kctx, cancel := context.WithCancel(context.Background())
	alive, err := s.client.KeepAlive(kctx, lease.ID)
	if err != nil {
		cancel()
		revoke()
		return nil, nil, wrap(err)
	}
	gone := make(chan struct{})
	go func() {
		for range alive {
		}
		if kctx.Err() == nil {
			close(gone)
		}
	}()
	return func() { cancel(); revoke() }, gone, nil
}
