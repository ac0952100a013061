package server

import (
	"github.com/kumocloud/kumo/api"
	"github.com/kumocloud/kumo/internal/errs"
	"github.com/kumocloud/kumo/internal/server/response"
)

func (s *Server) getNetworks(r *request) response.Response {
	project := r.PathValue("project")
	if err := s.ids.RequireProject(r.Context(), project); err != nil {
		return response.Error(err)
	}
	ns, err := s.networks.ListNetworks(r.Context(), project)
	if err != nil {
		return response.Error(err)
	}
	return list(ns, "")
}

func (s *Server) postNetworks(r *request) response.Response {
	var req api.NetworksPost
	if err := decodeBody(r.Request, &req); err != nil {
		return response.Error(err)
	}
	if (req.Shared || req.External) && !r.p.CloudAdmin {
		return response.Error(errs.Forbidden("only a cloud admin may make shared or external networks"))
	}
	project := r.PathValue("project")
	if err := s.ids.RequireProject(r.Context(), project); err != nil {
		return response.Error(err)
	}
	n, err := s.networks.CreateNetwork(r.Context(), project, req)
	if err != nil {
		return response.Error(err)
	}
	return response.Created(n)
}

func (s *Server) getNetwork(r *request) response.Response {
	n, err := s.networks.GetNetwork(r.Context(), r.PathValue("project"), r.PathValue("name"))
	if err != nil {
		return response.Error(err)
	}
	return response.OK(n)
}

func (s *Server) deleteNetwork(r *request) response.Response {
	if err := s.networks.DeleteNetwork(r.Context(), r.PathValue("project"), r.PathValue("name")); err != nil {
		return response.Error(err)
	}
	return response.NoContent()
}

func (s *Server) getPorts(r *request) response.Response {
	project := r.PathValue("project")
	if err := s.ids.RequireProject(r.Context(), project); err != nil {
		return response.Error(err)
	}
	ps, err := s.networks.ListPorts(r.Context(), project, r.URL.Query().Get("network"))
	if err != nil {
		return response.Error(err)
	}
	return list(ps, "")
}

func (s *Server) postPorts(r *request) response.Response {
	var req api.PortsPost
	if err := decodeBody(r.Request, &req); err != nil {
		return response.Error(err)
	}
	project := r.PathValue("project")
	if err := s.ids.RequireProject(r.Context(), project); err != nil {
		return response.Error(err)
	}
	p, err := s.networks.CreatePort(r.Context(), project, req)
	if err != nil {
		return response.Error(err)
	}
	return response.Created(p)
}

func (s *Server) getPort(r *request) response.Response {
	p, err := s.networks.GetPort(r.Context(), r.PathValue("project"), r.PathValue("name"))
	if err != nil {
		return response.Error(err)
	}
	return response.OK(p)
}

func (s *Server) deletePort(r *request) response.Response {
	if err := s.networks.DeletePort(r.Context(), r.PathValue("project"), r.PathValue("name")); err != nil {
		return response.Error(err)
	}
	return response.NoContent()
}

func (s *Server) getSecurityGroups(r *request) response.Response {
	project := r.PathValue("project")
	if err := s.ids.RequireProject(r.Context(), project); err != nil {
		return response.Error(err)
	}
	gs, err := s.networks.ListSecurityGroups(r.Context(), project)
	if err != nil {
		return response.Error(err)
	}
	return list(gs, "")
}

func (s *Server) postSecurityGroups(r *request) response.Response {
	var req api.SecurityGroupsPost
	if err := decodeBody(r.Request, &req); err != nil {
		return response.Error(err)
	}
	project := r.PathValue("project")
	if err := s.ids.RequireProject(r.Context(), project); err != nil {
		return response.Error(err)
	}
	g, err := s.networks.CreateSecurityGroup(r.Context(), project, req)
	if err != nil {
		return response.Error(err)
	}
	return response.Created(g)
}

func (s *Server) getSecurityGroup(r *request) response.Response {
	g, err := s.networks.GetSecurityGroup(r.Context(), r.PathValue("project"), r.PathValue("name"))
	if err != nil {
		return response.Error(err)
	}
	return response.OK(g)
}

func (s *Server) deleteSecurityGroup(r *request) response.Response {
	if err := s.networks.DeleteSecurityGroup(r.Context(), r.PathValue("project"), r.PathValue("name")); err != nil {
		return response.Error(err)
	}
	return response.NoContent()
}

func (s *Server) postSecurityRule(r *request) response.Response {
	var req api.SecurityRule
	if err := decodeBody(r.Request, &req); err != nil {
		return response.Error(err)
	}
	g, err := s.networks.AddRule(r.Context(), r.PathValue("project"), r.PathValue("name"), req)
	if err != nil {
		return response.Error(err)
	}
	return response.Created(g)
}

func (s *Server) deleteSecurityRule(r *request) response.Response {
	g, err := s.networks.DeleteRule(r.Context(), r.PathValue("project"), r.PathValue("name"), r.PathValue("rule"))
	if err != nil {
		return response.Error(err)
	}
	return response.OK(g)
}

func (s *Server) getFloatingIPs(r *request) response.Response {
	project := r.PathValue("project")
	if err := s.ids.RequireProject(r.Context(), project); err != nil {
		return response.Error(err)
	}
	fs, err := s.networks.ListFloatingIPs(r.Context(), project)
	if err != nil {
		return response.Error(err)
	}
	return list(fs, "")
}

func (s *Server) postFloatingIPs(r *request) response.Response {
	var req api.FloatingIPsPost
	if err := decodeBody(r.Request, &req); err != nil {
		return response.Error(err)
	}
	project := r.PathValue("project")
	if err := s.ids.RequireProject(r.Context(), project); err != nil {
		return response.Error(err)
	}
	f, err := s.networks.CreateFloatingIP(r.Context(), project, req)
	if err != nil {
		return response.Error(err)
	}
	return response.Created(f)
}

func (s *Server) getFloatingIP(r *request) response.Response {
	f, err := s.networks.GetFloatingIP(r.Context(), r.PathValue("project"), r.PathValue("ip"))
	if err != nil {
		return response.Error(err)
	}
	return response.OK(f)
}

func (s *Server) deleteFloatingIP(r *request) response.Response {
	if err := s.networks.DeleteFloatingIP(r.Context(), r.PathValue("project"), r.PathValue("ip")); err != nil {
		return response.Error(err)
	}
	return response.NoContent()
}

func (s *Server) postFloatingIPAttach(r *request) response.Response {
	var req api.FloatingIPAttach
	if err := decodeBody(r.Request, &req); err != nil {
		return response.Error(err)
	}
	if req.Instance == "" {
		return response.Error(errs.Invalid("instance", "instance is required"))
	}
	f, err := s.networks.AttachFloatingIP(r.Context(), r.PathValue("project"), r.PathValue("ip"), req.Instance)
	if err != nil {
		return response.Error(err)
	}
	return response.OK(f)
}

func (s *Server) postFloatingIPDetach(r *request) response.Response {
	f, err := s.networks.DetachFloatingIP(r.Context(), r.PathValue("project"), r.PathValue("ip"))
	if err != nil {
		return response.Error(err)
	}
	return response.OK(f)
}
