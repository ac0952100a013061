package identity

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	"github.com/google/uuid"
	"golang.org/x/crypto/bcrypt"

	"github.com/kumocloud/kumo/api"
	"github.com/kumocloud/kumo/internal/errs"
	"github.com/kumocloud/kumo/internal/events"
	"github.com/kumocloud/kumo/internal/idempotency"
	"github.com/kumocloud/kumo/internal/store"
	"github.com/kumocloud/kumo/internal/validate"
)

// userRecord is what is stored: the API object plus the password hash.
type userRecord struct {
	api.User
	PasswordHash string `json:"password_hash"`
	// TokenGeneration moves on at each password change: only tokens of
	// the current generation are valid.
	TokenGeneration int64 `json:"token_generation,omitempty"`
}

func userKey(name string) string { return usersPrefix + name }

func userURL(name string) string { return "/v1/users/" + name }

func unmarshal(kv store.KV, v any) error {
	if err := json.Unmarshal(kv.Value, v); err != nil {
		return fmt.Errorf("decode %s: %w", kv.Key, err)
	}
	return nil
}

func sortBindings(b []api.RoleBinding) {
	slices.SortFunc(b, func(x, y api.RoleBinding) int {
		if x.Project < y.Project {
			return -1
		}
		if x.Project > y.Project {
			return 1
		}
		return 0
	})
}

func hasBinding(b []api.RoleBinding, project string) bool {
	return slices.ContainsFunc(b, func(r api.RoleBinding) bool { return r.Project == project })
}

func (r userRecord) api(rev int64) api.User {
	u := r.User
	u.Revision = rev
	if u.Roles == nil {
		u.Roles = []api.RoleBinding{}
	}
	return u
}

// ValidateUsersPost checks a create request.
func ValidateUsersPost(req *api.UsersPost) error {
	if err := validate.Name("name", req.Name); err != nil {
		return err
	}
	if err := validate.Password("password", req.Password); err != nil {
		return err
	}
	if req.DefaultProject != "" {
		return validate.Name("default_project", req.DefaultProject)
	}
	return nil
}

// CreateUser creates a user with a hashed password.
func (svc *Service) CreateUser(ctx context.Context, req api.UsersPost) (api.User, error) {
	if err := ValidateUsersPost(&req); err != nil {
		return api.User{}, err
	}
	if req.DefaultProject != "" {
		ok, err := svc.ProjectExists(ctx, req.DefaultProject)
		if err != nil {
			return api.User{}, err
		}
		if !ok {
			return api.User{}, errs.Invalid("default_project", "default_project %q does not exist", req.DefaultProject)
		}
	}
	rec, err := svc.newUser(req)
	if err != nil {
		return api.User{}, err
	}
	rev, err := svc.s.Txn(ctx, []store.Cond{store.Absent(userKey(req.Name))}, append([]store.Op{
		store.PutJSON(userKey(req.Name), rec),
		events.Op(ctx, "user", events.Created, "", userURL(req.Name), rec.api(0)),
	}, idempotency.Done(ctx, rec.api(0))...))
	if errors.Is(err, store.ErrConflict) {
		return api.User{}, errs.Conflict("user %q already exists", req.Name)
	}
	if err != nil {
		return api.User{}, err
	}
	return rec.api(rev), nil
}

func (svc *Service) newUser(req api.UsersPost) (userRecord, error) {
	hash, err := bcrypt.GenerateFromPassword([]byte(req.Password), svc.opts.BcryptCost)
	if err != nil {
		return userRecord{}, fmt.Errorf("hash password: %w", err)
	}
	t := now()
	return userRecord{
		User: api.User{
			Meta:           api.Meta{ID: uuid.NewString(), Name: req.Name, CreatedAt: t, UpdatedAt: t},
			CloudAdmin:     req.CloudAdmin,
			DefaultProject: req.DefaultProject,
			Roles:          []api.RoleBinding{},
		},
		PasswordHash: string(hash),
	}, nil
}

func (svc *Service) getUserRecord(ctx context.Context, name string) (userRecord, int64, error) {
	var rec userRecord
	rev, err := store.GetJSON(ctx, svc.s, userKey(name), &rec)
	if isNotFound(err) {
		return rec, 0, errs.NotFound("user %q not found", name)
	}
	return rec, rev, err
}

// GetUser returns a user.
func (svc *Service) GetUser(ctx context.Context, name string) (api.User, error) {
	rec, rev, err := svc.getUserRecord(ctx, name)
	if err != nil {
		return api.User{}, err
	}
	return rec.api(rev), nil
}

// ListUsers lists users, one page at a time.
func (svc *Service) ListUsers(ctx context.Context, sel map[string]string, after string, limit int) ([]api.User, string, error) {
	return store.Paginate(ctx, svc.s, usersPrefix, after, limit, func(kv store.KV) (api.User, bool, error) {
		var rec userRecord
		if err := unmarshal(kv, &rec); err != nil {
			return api.User{}, false, err
		}
		return rec.api(kv.Revision), rec.HasLabels(sel), nil
	})
}

// updateUser applies fn to a user with CAS and records an event.
func (svc *Service) updateUser(ctx context.Context, name, project string, fn func(*userRecord) error) (api.User, error) {
	rec, rev, err := store.UpdateJSON(ctx, svc.s, userKey(name), func(r *userRecord) error {
		if err := fn(r); err != nil {
			return err
		}
		r.UpdatedAt = now()
		return nil
	}, func(r *userRecord) []store.Op {
		return []store.Op{events.Op(ctx, "user", events.Updated, project, userURL(name), r.api(0))}
	})
	if isNotFound(err) {
		return api.User{}, errs.NotFound("user %q not found", name)
	}
	if err != nil {
		return api.User{}, err
	}
	return rec.api(rev), nil
}

// SetPassword changes the password of user name for principal p. The
// current password is required unless p is a cloud admin setting another
// user's password; when given it is checked, within the login budgets of
// client. The change ends every other token of the user in the same
// transaction: the user's token generation moves on, and the token making
// the change (if it is the user's own) moves with it; tokens made with it
// do not (they were made under the old password).
func (svc *Service) SetPassword(ctx context.Context, p *Principal, name, current, password, client string) error {
	if err := validate.Password("password", password); err != nil {
		return err
	}
	u, _, err := svc.getUserRecord(ctx, name)
	if err != nil {
		return err
	}
	self := p.UserID != "" && p.UserID == u.ID
	if current == "" && (self || !p.CloudAdmin) {
		return errs.Invalid("current_password", "current_password is required to change your own password")
	}
	if current != "" {
		if _, _, err := svc.checkUserPassword(ctx, name, current, client); err != nil {
			if errs.KindOf(err) == errs.KindUnauthorized {
				return errs.Invalid("current_password", "current_password is wrong")
			}
			return err
		}
	}
	hash, err := bcrypt.GenerateFromPassword([]byte(password), svc.opts.BcryptCost)
	if err != nil {
		return err
	}
	for attempt := 0; attempt < 10; attempt++ {
		u, urev, err := svc.getUserRecord(ctx, name)
		if err != nil {
			return err
		}
		if self && u.ID != p.UserID {
			return errs.NotFound("user %q not found", name)
		}
		u.PasswordHash = string(hash)
		u.TokenGeneration++
		u.UpdatedAt = now()
		conds := []store.Cond{store.At(userKey(name), urev)}
		ops := []store.Op{store.PutJSON(userKey(name), u), events.Op(ctx, "user", events.Updated, "", userURL(name), u.api(0))}
		if self && p.TokenID != "" {
			var tok tokenRecord
			trev, err := store.GetJSON(ctx, svc.s, tokenKey(p.TokenID), &tok)
			if err != nil && !isNotFound(err) {
				return err
			}
			if err == nil && tok.ownedBy(u) {
				tok.Generation = u.TokenGeneration
				conds = append(conds, store.At(tokenKey(p.TokenID), trev))
				ops = append(ops, store.PutJSON(tokenKey(p.TokenID), tok))
			}
		}
		_, err = svc.s.Txn(ctx, conds, ops)
		if !errors.Is(err, store.ErrConflict) {
			return err
		}
	}
	return errs.Conflict("user %q is changing too often; try again", name)
}

// DeleteUser removes a user; their tokens stop working at once (each request
// checks that the token's user still exists) and are pruned later.
func (svc *Service) DeleteUser(ctx context.Context, name string) error {
	if name == AdminUser {
		return errs.Conflict("the bootstrap cloud admin %q cannot be deleted; create another cloud admin and disable this one by changing its password", AdminUser)
	}
	rec, rev, err := svc.getUserRecord(ctx, name)
	if err != nil {
		return err
	}
	_, err = svc.s.Txn(ctx, []store.Cond{store.At(userKey(name), rev)}, []store.Op{
		store.Del(userKey(name)),
		events.Op(ctx, "user", events.Deleted, "", userURL(rec.Name), nil),
	})
	if errors.Is(err, store.ErrConflict) {
		return errs.Conflict("user %q changed while being deleted; try again", name)
	}
	return err
}

// SetMember gives user the role in project (replacing any role they had).
func (svc *Service) SetMember(ctx context.Context, project, user, role string) (api.Member, error) {
	if err := validate.Role("role", role); err != nil {
		return api.Member{}, err
	}
	if ok, err := svc.ProjectExists(ctx, project); err != nil || !ok {
		if err == nil {
			err = errs.NotFound("project %q not found", project)
		}
		return api.Member{}, err
	}
	_, err := svc.updateUser(ctx, user, project, func(r *userRecord) error {
		r.Roles = slices.DeleteFunc(r.Roles, func(b api.RoleBinding) bool { return b.Project == project })
		r.Roles = append(r.Roles, api.RoleBinding{Project: project, Role: role})
		sortBindings(r.Roles)
		return nil
	})
	if err != nil {
		return api.Member{}, err
	}
	return api.Member{User: user, Role: role}, nil
}

// RemoveMember takes away user's role in project.
func (svc *Service) RemoveMember(ctx context.Context, project, user string) error {
	_, err := svc.updateUser(ctx, user, project, func(r *userRecord) error {
		if !hasBinding(r.Roles, project) {
			return errs.NotFound("user %q has no role in project %q", user, project)
		}
		r.Roles = slices.DeleteFunc(r.Roles, func(b api.RoleBinding) bool { return b.Project == project })
		return nil
	})
	return err
}

// Members lists the users holding a role in project.
func (svc *Service) Members(ctx context.Context, project string) ([]api.Member, error) {
	kvs, err := store.ListAll(ctx, svc.s, usersPrefix)
	if err != nil {
		return nil, err
	}
	out := []api.Member{}
	for _, kv := range kvs {
		var u userRecord
		if err := unmarshal(kv, &u); err != nil {
			return nil, err
		}
		for _, b := range u.Roles {
			if b.Project == project {
				out = append(out, api.Member{User: u.Name, Role: b.Role})
			}
		}
	}
	return out, nil
}
