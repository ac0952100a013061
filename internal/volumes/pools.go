package volumes

import (
	"context"
	"errors"
	"path/filepath"

	"github.com/kumocloud/kumo/api"
	"github.com/kumocloud/kumo/internal/errs"
	"github.com/kumocloud/kumo/internal/store"
	"github.com/kumocloud/kumo/internal/validate"
)

// The local pool is always there: a directory under each agent's data dir.
var localPool = api.StoragePool{Name: api.PoolLocal, Type: api.PoolLocal}

// pools returns every pool by name, local included.
func (svc *Service) pools(ctx context.Context) (map[string]api.StoragePool, error) {
	items, err := store.ListJSON[api.StoragePool](ctx, svc.s, poolPrefix)
	out := map[string]api.StoragePool{api.PoolLocal: localPool}
	for _, it := range items {
		out[it.Value.Name] = it.Value
	}
	return out, err
}

// ListPools lists the storage pools with what they hold; paths only for
// cloud admins.
func (svc *Service) ListPools(ctx context.Context, admin bool) ([]api.StoragePool, error) {
	ps, err := svc.pools(ctx)
	if err != nil {
		return nil, err
	}
	all, err := store.ListJSON[record](ctx, svc.s, prefix)
	if err != nil {
		return nil, err
	}
	for _, it := range all {
		if p, ok := ps[it.Value.Pool]; ok {
			p.Volumes++
			p.SizeGiB += it.Value.SizeGiB
			ps[it.Value.Pool] = p
		}
	}
	out := []api.StoragePool{}
	for _, p := range ps {
		if !admin {
			p.Path, p.Volumes, p.SizeGiB = "", 0, 0
		}
		out = append(out, p)
	}
	sortPools(out)
	return out, nil
}

func sortPools(ps []api.StoragePool) {
	for i := 1; i < len(ps); i++ {
		for j := i; j > 0 && ps[j].Name < ps[j-1].Name; j-- {
			ps[j], ps[j-1] = ps[j-1], ps[j]
		}
	}
}

// GetPool returns a pool.
func (svc *Service) GetPool(ctx context.Context, name string, admin bool) (api.StoragePool, error) {
	ps, err := svc.ListPools(ctx, admin)
	if err != nil {
		return api.StoragePool{}, err
	}
	for _, p := range ps {
		if p.Name == name {
			return p, nil
		}
	}
	return api.StoragePool{}, errs.NotFound("storage pool %q not found", name)
}

// CreatePool adds a shared-dir pool (cloud admin): an absolute directory
// every host mounts at the same path.
func (svc *Service) CreatePool(ctx context.Context, req api.StoragePoolsPost) (api.StoragePool, error) {
	if err := validate.Name("name", req.Name); err != nil {
		return api.StoragePool{}, err
	}
	if req.Name == api.PoolLocal {
		return api.StoragePool{}, errs.Conflict("storage pool %q always exists", req.Name)
	}
	if req.Type != api.PoolSharedDir {
		return api.StoragePool{}, errs.Invalid("type", "type %q: pools made by hand are shared-dir (local is always there)", req.Type)
	}
	if !filepath.IsAbs(req.Path) || filepath.Clean(req.Path) != req.Path || req.Path == "/" {
		return api.StoragePool{}, errs.Invalid("path", "path %q: an absolute, clean directory other than /", req.Path)
	}
	p := api.StoragePool{Name: req.Name, Type: req.Type, Path: req.Path}
	_, err := svc.s.Txn(ctx, []store.Cond{store.Absent(poolPrefix + req.Name)}, []store.Op{store.PutJSON(poolPrefix+req.Name, p)})
	if errors.Is(err, store.ErrConflict) {
		return api.StoragePool{}, errs.Conflict("storage pool %q already exists", req.Name)
	}
	return p, err
}

// DeletePool removes a pool that holds no volume.
func (svc *Service) DeletePool(ctx context.Context, name string) error {
	p, err := svc.GetPool(ctx, name, true)
	if err != nil {
		return err
	}
	if p.Type == api.PoolLocal {
		return errs.Conflict("storage pool %q cannot be deleted", name)
	}
	if p.Volumes > 0 {
		return errs.Conflict("storage pool %q holds %d volumes: delete them first", name, p.Volumes)
	}
	return svc.s.Delete(ctx, poolPrefix+name, 0)
}
