package identity

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/kumocloud/kumo/api"
	"github.com/kumocloud/kumo/internal/errs"
	"github.com/kumocloud/kumo/internal/store/memstore"
)

func newService(t *testing.T) *Service {
	t.Helper()
	opts := DefaultOptions()
	opts.BcryptCost = bcrypt.MinCost
	return New(memstore.New(), opts, slog.New(slog.DiscardHandler))
}

func mustUser(t *testing.T, svc *Service, name string, cloudAdmin bool) {
	t.Helper()
	if _, err := svc.CreateUser(context.Background(), api.UsersPost{Name: name, Password: "password-" + name, CloudAdmin: cloudAdmin}); err != nil {
		t.Fatal(err)
	}
}

func mustToken(t *testing.T, svc *Service, user string, ttl time.Duration) api.Token {
	t.Helper()
	tok, err := svc.IssueToken(context.Background(), user, "test", ttl)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// authOK returns the principal of a token, failing the test if refused.
func authOK(t *testing.T, svc *Service, secret string) *Principal {
	t.Helper()
	p, err := svc.Authenticate(context.Background(), secret)
	if err != nil {
		t.Fatalf("token refused: %v", err)
	}
	return p
}

func authRefused(t *testing.T, svc *Service, secret, why string) {
	t.Helper()
	if p, err := svc.Authenticate(context.Background(), secret); err == nil {
		t.Fatalf("%s: token still authenticates as %+v", why, p)
	} else if errs.KindOf(err) != errs.KindUnauthorized {
		t.Fatalf("%s: %v, want unauthorized", why, err)
	}
}

// A token belongs to the user who got it, not to the name: after the user
// is deleted, a new user of the same name (here a cloud admin) is never
// reached through the old user's tokens, nor sees or owns them.
func TestTokensDieWithTheirUser(t *testing.T) {
	ctx := context.Background()
	svc := newService(t)
	mustUser(t, svc, "alice", false)
	login, err := svc.Login(ctx, "alice", "password-alice", "192.0.2.1", "cli", 0)
	if err != nil {
		t.Fatal(err)
	}
	child, err := svc.IssueChildToken(ctx, login.ID, "ci", 0)
	if err != nil {
		t.Fatal(err)
	}
	old := authOK(t, svc, login.Secret)
	if err := svc.DeleteUser(ctx, "alice"); err != nil {
		t.Fatal(err)
	}
	mustUser(t, svc, "alice", true)
	fresh := mustToken(t, svc, "alice", time.Hour)
	now := authOK(t, svc, fresh.Secret)
	if now.UserID == old.UserID {
		t.Fatalf("the new alice has the old one's id %s", now.UserID)
	}
	for _, tok := range []api.Token{login, child} {
		authRefused(t, svc, tok.Secret, "old alice's token after a new alice was made")
	}
	// The new alice's tokens are hers alone.
	mine, err := svc.ListTokens(ctx, now.UserID, false)
	if err != nil {
		t.Fatal(err)
	}
	if len(mine) != 1 || mine[0].ID != fresh.ID {
		t.Fatalf("the new alice lists %+v, want only %s", mine, fresh.ID)
	}
	if got, _ := svc.GetToken(ctx, login.ID); !got.Revoked || got.UserID != old.UserID {
		t.Fatalf("old token shown as %+v", got)
	}
}

// A token made with a token never outlives its parent: its expiry is
// capped at the parent's, and revoking the parent ends it and its own
// children at once.
func TestChildTokensDieWithTheirParent(t *testing.T) {
	ctx := context.Background()
	svc := newService(t)
	mustUser(t, svc, "bob", false)
	parent := mustToken(t, svc, "bob", time.Hour)
	child, err := svc.IssueChildToken(ctx, parent.ID, "long", 300*24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if !child.ExpiresAt.Equal(parent.ExpiresAt) || child.Parent != parent.ID {
		t.Fatalf("child %+v of parent expiring %s", child, parent.ExpiresAt)
	}
	short, err := svc.IssueChildToken(ctx, parent.ID, "short", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if !short.ExpiresAt.Before(parent.ExpiresAt) {
		t.Fatalf("a shorter child got %s", short.ExpiresAt)
	}
	grandchild, err := svc.IssueChildToken(ctx, child.ID, "gc", 0)
	if err != nil {
		t.Fatal(err)
	}
	other := mustToken(t, svc, "bob", time.Hour)
	for _, s := range []string{child.Secret, grandchild.Secret} {
		authOK(t, svc, s)
	}
	if _, err := svc.RevokeToken(ctx, parent.ID); err != nil {
		t.Fatal(err)
	}
	for _, tok := range []api.Token{parent, child, short, grandchild} {
		authRefused(t, svc, tok.Secret, "after the parent's revocation: "+tok.Description)
	}
	authOK(t, svc, other.Secret)
	p := authOK(t, svc, other.Secret)
	toks, err := svc.ListTokens(ctx, p.UserID, false)
	if err != nil {
		t.Fatal(err)
	}
	for _, tok := range toks {
		if tok.Revoked != (tok.ID != other.ID) {
			t.Fatalf("listed %s revoked=%v", tok.Description, tok.Revoked)
		}
	}
	// Even a revocation cut short before reaching the descendants ends
	// them: authentication checks the ancestors.
	p2 := mustToken(t, svc, "bob", time.Hour)
	c2, err := svc.IssueChildToken(ctx, p2.ID, "c2", 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := svc.revokeOne(ctx, p2.ID); err != nil {
		t.Fatal(err)
	}
	authRefused(t, svc, c2.Secret, "child of a parent revoked alone")
}

// A password change needs the current password (except a cloud admin
// resetting someone else's) and ends every other token of the user.
func TestPasswordChange(t *testing.T) {
	ctx := context.Background()
	svc := newService(t)
	mustUser(t, svc, "carol", false)
	mustUser(t, svc, "root2", true)
	current := mustToken(t, svc, "carol", time.Hour)
	otherTok := mustToken(t, svc, "carol", time.Hour)
	childTok, err := svc.IssueChildToken(ctx, current.ID, "child", 0)
	if err != nil {
		t.Fatal(err)
	}
	carol := authOK(t, svc, current.Secret)
	admin := authOK(t, svc, mustToken(t, svc, "root2", time.Hour).Secret)

	refused := []struct {
		name, current string
		field         string
	}{
		{"no current password", "", "current_password"},
		{"wrong current password", "not-the-password", "current_password"},
	}
	for _, tc := range refused {
		err := svc.SetPassword(ctx, carol, "carol", tc.current, "new-password-1", "192.0.2.7")
		if errs.KindOf(err) != errs.KindInvalid || fieldOf(err) != tc.field {
			t.Fatalf("%s: %v", tc.name, err)
		}
		authOK(t, svc, otherTok.Secret) // nothing changed
	}
	if err := svc.SetPassword(ctx, carol, "carol", "password-carol", "new-password-1", "192.0.2.7"); err != nil {
		t.Fatal(err)
	}
	authOK(t, svc, current.Secret) // the one making the change stays
	authRefused(t, svc, otherTok.Secret, "another token after a password change")
	authRefused(t, svc, childTok.Secret, "a child token after a password change")
	if _, err := svc.Login(ctx, "carol", "password-carol", "192.0.2.7", "", 0); err == nil {
		t.Fatal("the old password still logs in")
	}
	if _, err := svc.Login(ctx, "carol", "new-password-1", "192.0.2.7", "", 0); err != nil {
		t.Fatalf("the new password: %v", err)
	}
	// A cloud admin changing their own password gives the current one too.
	if err := svc.SetPassword(ctx, admin, "root2", "", "new-password-2", "192.0.2.8"); fieldOf(err) != "current_password" {
		t.Fatalf("admin's own password without the current one: %v", err)
	}
	// A cloud admin resetting carol's password needs none; all of carol's
	// tokens end, the one she changed hers with included.
	if err := svc.SetPassword(ctx, admin, "carol", "", "new-password-3", "192.0.2.8"); err != nil {
		t.Fatal(err)
	}
	authRefused(t, svc, current.Secret, "carol's token after an admin reset")
	// Another user cannot change carol's password even knowing it (the
	// server's permission check says 404 first; the service refuses too).
	mustUser(t, svc, "dave", false)
	dave := authOK(t, svc, mustToken(t, svc, "dave", time.Hour).Secret)
	if err := svc.SetPassword(ctx, dave, "carol", "", "new-password-4", "192.0.2.9"); err == nil {
		t.Fatal("dave changed carol's password")
	}
}

// Login throttling: 100 concurrent wrong guesses at one user from one
// address run at most the budget of password checks; the right password
// from another address still works; one address spraying many names is
// held to its own budget.
func TestLoginThrottleIsAtomicAndPerAddress(t *testing.T) {
	ctx := context.Background()
	svc := newService(t)
	var checks atomic.Int64
	gate := make(chan struct{})
	svc.checkPassword = func(hash, pw []byte) error {
		checks.Add(1)
		<-gate // hold every check until all guesses are in
		return bcrypt.CompareHashAndPassword(hash, pw)
	}
	mustUser(t, svc, "erin", false)
	const guesses = 100
	var wg sync.WaitGroup
	var throttled atomic.Int64
	for i := 0; i < guesses; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := svc.Login(ctx, "erin", fmt.Sprintf("guess-%d", i), "198.51.100.66", "", 0)
			if errs.KindOf(err) == errs.KindTooMany {
				throttled.Add(1)
			}
		}()
	}
	// Wait until every guess either holds a check or was turned away.
	deadline := time.Now().Add(time.Minute)
	for checks.Load()+throttled.Load() < guesses && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	close(gate)
	wg.Wait()
	budget := int64(svc.opts.LoginFailures)
	if n := checks.Load(); n > budget || n == 0 {
		t.Fatalf("%d concurrent guesses ran %d password checks; the budget is %d", guesses, n, budget)
	}
	if throttled.Load() != guesses-checks.Load() {
		t.Fatalf("%d checks and %d throttled of %d guesses", checks.Load(), throttled.Load(), guesses)
	}
	// The same address stays throttled for erin, even with the password...
	if _, err := svc.Login(ctx, "erin", "password-erin", "198.51.100.66", "", 0); errs.KindOf(err) != errs.KindTooMany {
		t.Fatalf("the guessing address with the right password: %v", err)
	}
	// ...but erin from her own address is not locked out.
	if _, err := svc.Login(ctx, "erin", "password-erin", "203.0.113.5", "", 0); err != nil {
		t.Fatalf("the right password from another address: %v", err)
	}

	// One address trying many names is held to the address budget.
	checks.Store(0)
	for i := 0; i < 3*svc.opts.LoginFailuresPerAddress; i++ {
		svc.Login(ctx, fmt.Sprintf("user-%d", i), "x", "2001:db8::1", "", 0)
	}
	if n := checks.Load(); n != int64(svc.opts.LoginFailuresPerAddress) {
		t.Fatalf("one address spraying names ran %d checks; the budget is %d", n, svc.opts.LoginFailuresPerAddress)
	}
	// Its /64 is one address; another /64 is not.
	if _, err := svc.Login(ctx, "erin", "password-erin", "2001:db8::2", "", 0); errs.KindOf(err) != errs.KindTooMany {
		t.Fatalf("same /64: %v", err)
	}
	if _, err := svc.Login(ctx, "erin", "password-erin", "2001:db8:0:1::2", "", 0); err != nil {
		t.Fatalf("another /64: %v", err)
	}
}

func fieldOf(err error) string {
	var e *errs.Error
	if errors.As(err, &e) {
		return e.Field
	}
	return ""
}
