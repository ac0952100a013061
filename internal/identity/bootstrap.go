package identity

import (
	"context"
	"errors"
	"time"

	"github.com/kumocloud/kumo/api"
	"github.com/kumocloud/kumo/internal/quota"
	secretpkg "github.com/kumocloud/kumo/internal/secret"
	"github.com/kumocloud/kumo/internal/store"
)

const bootstrapKey = "/meta/bootstrapped"

// Bootstrap makes the first cloud admin and the default project, once per
// cloud, in one transaction with extra (e.g. the default flavors). It
// returns the admin's generated password when it did the bootstrap, and ""
// when the cloud was already bootstrapped. beforeCommit is called with the
// password before anything is written, so the caller can save it first: a
// crash can then never leave an admin whose password nobody knows.
func (svc *Service) Bootstrap(ctx context.Context, extra []store.Op, beforeCommit func(password string) error) (string, error) {
	if _, err := svc.s.Get(ctx, bootstrapKey); err == nil {
		return "", nil
	} else if !errors.Is(err, store.ErrNotFound) {
		return "", err
	}
	password := secretpkg.Hex(12)
	admin, err := svc.newUser(api.UsersPost{Name: AdminUser, Password: password, CloudAdmin: true, DefaultProject: DefaultProject})
	if err != nil {
		return "", err
	}
	t := now()
	proj := projectRecord{Meta: api.Meta{ID: randUUID(), Name: DefaultProject, CreatedAt: t, UpdatedAt: t}, Description: "The default project"}
	if beforeCommit != nil {
		if err := beforeCommit(password); err != nil {
			return "", err
		}
	}
	ops := append([]store.Op{
		store.Put(bootstrapKey, []byte(t.Format(time.RFC3339))),
		store.PutJSON(userKey(AdminUser), admin),
	}, svc.createProjectOps(ctx, proj, quota.Record{Limit: svc.opts.DefaultQuota})...)
	ops = append(ops, extra...)
	_, err = svc.s.Txn(ctx, []store.Cond{store.Absent(bootstrapKey)}, ops)
	if errors.Is(err, store.ErrConflict) {
		// Another server bootstrapped first.
		return "", nil
	}
	if err != nil {
		return "", err
	}
	return password, nil
}
