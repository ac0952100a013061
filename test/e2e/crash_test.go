package e2e

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kumocloud/kumo/api"
	"github.com/kumocloud/kumo/client"
)

// TestKill9 kills the server with SIGKILL while creates are in flight and
// while an operation runs, restarts it, and checks that nothing was lost or
// duplicated: tokens still work, every create retried with its
// Idempotency-Key leaves exactly one project (with its quota record and
// exactly one "created" event), and the cut-short operation is finished.
func TestKill9(t *testing.T) {
	s := startServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	adminTok := s.adminToken(t)
	admin := s.remote(t, adminTok)
	if _, err := admin.CreateUser(ctx, api.UsersPost{Name: "alice", Password: "alice-password"}); err != nil {
		t.Fatal(err)
	}
	aliceTok, err := s.remote(t, "").Login(ctx, api.TokensPost{Username: "alice", Password: "alice-password"})
	if err != nil {
		t.Fatal(err)
	}

	const n = 40
	name := func(i int) string { return fmt.Sprintf("c%02d", i) }
	create := func(c *client.Client, i int) error {
		_, err := c.CreateProject(client.WithIdempotencyKey(ctx, "key-"+name(i)), api.ProjectsPost{Name: name(i)})
		return err
	}
	var done atomic.Int32
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			time.Sleep(time.Duration(i) * 3 * time.Millisecond)
			if create(admin, i) == nil {
				done.Add(1)
			}
		}()
	}
	for done.Load() < 8 && ctx.Err() == nil {
		time.Sleep(time.Millisecond)
	}
	s.kill9()
	wg.Wait()
	t.Logf("%d of %d creates answered before the kill", done.Load(), n)

	s.start()
	admin = s.remote(t, adminTok)
	if _, err := admin.Whoami(ctx); err != nil {
		t.Fatalf("admin token after restart: %v", err)
	}
	if w, err := s.remote(t, aliceTok.Secret).Whoami(ctx); err != nil || w.User != "alice" {
		t.Fatalf("alice's token after restart: %v", err)
	}
	for i := 0; i < n; i++ {
		if err := create(admin, i); err != nil && !(client.StatusOf(err) == 409 && strings.Contains(err.Error(), "already exists")) {
			t.Errorf("retrying create %s: %v", name(i), err)
		}
	}
	projects, err := admin.Projects(ctx, client.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]int{}
	for _, p := range projects {
		seen[p.Name]++
		if strings.HasPrefix(p.Name, "c") && (p.Quota.Instances != 20 || p.Usage != (api.ResourceCounts{})) {
			t.Errorf("project %s: quota %+v usage %+v", p.Name, p.Quota, p.Usage)
		}
	}
	created := map[string]int{}
	err = admin.Events(ctx, client.EventQuery{NoFollow: true, Types: []string{"project"}}, func(ev api.Event) error {
		if ev.Action == "created" {
			created[ev.Project]++
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < n; i++ {
		if seen[name(i)] != 1 || created[name(i)] != 1 {
			t.Errorf("project %s: listed %d times, %d created events; want 1 and 1", name(i), seen[name(i)], created[name(i)])
		}
	}

	// An operation cut short by a kill is finished after the restart.
	if _, err := admin.CreateProject(ctx, api.ProjectsPost{Name: "doomed"}); err != nil {
		t.Fatal(err)
	}
	op, err := admin.DeleteProject(ctx, "doomed")
	if err != nil {
		t.Fatal(err)
	}
	s.kill9()
	s.start()
	admin = s.remote(t, adminTok)
	end, err := admin.WaitOperation(ctx, op.ID)
	if err != nil || end.Status != api.OpSucceeded {
		t.Fatalf("operation after restart: %+v %v", end, err)
	}
	if _, err := admin.Project(ctx, "doomed"); client.StatusOf(err) != 404 {
		t.Fatalf("deleted project after restart: %v", err)
	}
}
