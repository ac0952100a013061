package server

import (
	"context"

	"github.com/kumocloud/kumo/api"
	"github.com/kumocloud/kumo/internal/flavor"
	"github.com/kumocloud/kumo/internal/server/response"
)

func (s *Server) getFlavors(r *request) response.Response {
	lp, err := parseList(r.Request)
	if err != nil {
		return response.Error(err)
	}
	items, next, err := flavor.List(r.Context(), s.store, lp.labels, lp.after, lp.limit)
	if err != nil {
		return response.Error(err)
	}
	prices, err := s.meter.FlavorPrices(r.Context())
	if err != nil {
		return response.Error(err)
	}
	for i := range items {
		if p, ok := prices[items[i].Name]; ok {
			items[i].PriceMicro = p
		}
	}
	return list(items, next)
}

func (s *Server) postFlavors(r *request) response.Response {
	var req api.FlavorsPost
	if err := decodeBody(r.Request, &req); err != nil {
		return response.Error(err)
	}
	f, err := flavor.Create(r.Context(), s.store, req)
	if err != nil {
		return response.Error(err)
	}
	return response.Created(f)
}

func (s *Server) getFlavor(r *request) response.Response {
	f, err := s.getFlavorWithPrice(r.Context(), r.PathValue("flavor"))
	if err != nil {
		return response.Error(err)
	}
	return response.OK(f)
}

func (s *Server) deleteFlavor(r *request) response.Response {
	if err := flavor.Delete(r.Context(), s.store, r.PathValue("flavor")); err != nil {
		return response.Error(err)
	}
	return response.NoContent()
}

// getFlavorWithPrice is a flavor with the price in force now.
func (s *Server) getFlavorWithPrice(ctx context.Context, name string) (api.Flavor, error) {
	f, err := flavor.Get(ctx, s.store, name)
	if err != nil {
		return f, err
	}
	prices, err := s.meter.FlavorPrices(ctx)
	if err != nil {
		return f, err
	}
	if p, ok := prices[name]; ok {
		f.PriceMicro = p
	}
	return f, nil
}
