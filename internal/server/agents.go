package server

import (
	"context"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/kumocloud/kumo/api"
	"github.com/kumocloud/kumo/internal/errs"
	"github.com/kumocloud/kumo/internal/hosts"
	"github.com/kumocloud/kumo/internal/server/response"
)

func (s *Server) postAgents(r *request) response.Response {
	var req api.AgentsPost
	if err := decodeBody(r.Request, &req); err != nil {
		return response.Error(err)
	}
	a, err := s.hosts.Join(r.Context(), req)
	if err != nil {
		return response.Error(err)
	}
	s.compute.Wake()
	return response.Created(a)
}

func (s *Server) putAgentHosts(r *request) response.Response {
	var req api.AgentHostsPut
	if err := decodeBody(r.Request, &req); err != nil {
		return response.Error(err)
	}
	a, err := s.hosts.PutAgentHosts(r.Context(), r.agent.ID, req.Hosts)
	if err != nil {
		return response.Error(err)
	}
	s.compute.Wake()
	return response.OK(a)
}

func (s *Server) postHeartbeat(r *request) response.Response {
	var req api.Heartbeat
	if err := decodeBody(r.Request, &req); err != nil {
		return response.Error(err)
	}
	down := map[string]bool{}
	for _, h := range req.Down {
		down[h] = true
	}
	alive := make([]string, 0, len(r.agent.Hosts))
	for h := range r.agent.Hosts {
		if !down[h] {
			alive = append(alive, h)
		}
	}
	s.hosts.Heartbeat(alive, req)
	return response.NoContent()
}

// postAgentUsage keeps what the running instances of an agent's hosts use
// (in memory, like liveness): at most api.MaxUsageBatch a request, and only
// of instances on its own hosts - an agent must not set the usage or
// readiness others see of instances elsewhere.
func (s *Server) postAgentUsage(r *request) response.Response {
	var req api.AgentUsage
	if err := decodeBody(r.Request, &req); err != nil {
		return response.Error(err)
	}
	if len(req.Usage) > api.MaxUsageBatch {
		return response.Error(errs.Invalid("usage", "at most %d instances a request, not %d: send them in batches", api.MaxUsageBatch, len(req.Usage)))
	}
	s.compute.SetAgentUsage(r.agent, req.Usage)
	return response.NoContent()
}

// agentInstances are the live instances placed on an agent's hosts, by id.
func (s *Server) agentInstances(ctx context.Context, agent *hosts.AgentPrincipal) (map[string]api.Assignment, error) {
	as, err := s.compute.Assignments(ctx, agent, 0, 0)
	if err != nil {
		return nil, err
	}
	out := make(map[string]api.Assignment, len(as.Items))
	for _, a := range as.Items {
		out[a.ID] = a
	}
	return out, nil
}

// maxPoll caps an agent's long poll.
const maxPoll = 60 * time.Second

func (s *Server) getAssignments(r *request) response.Response {
	q := r.URL.Query()
	var since int64
	if v := q.Get("since"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			return response.Error(errs.Invalid("since", "since must be a revision (integer >= 0)"))
		}
		since = n
	}
	wait, err := pollWait(q)
	if err != nil {
		return response.Error(err)
	}
	as, err := s.compute.Assignments(r.Context(), r.agent, since, wait)
	if err != nil {
		return response.Error(err)
	}
	return response.OK(as)
}

func (s *Server) postReports(r *request) response.Response {
	var req api.AgentReport
	if err := decodeBody(r.Request, &req); err != nil {
		return response.Error(err)
	}
	res, err := s.compute.Report(r.Context(), r.agent, req.Instances)
	if err != nil {
		return response.Error(err)
	}
	return response.OK(res)
}

// pollWait is a long poll's ?wait= (seconds, capped at maxPoll).
func pollWait(q url.Values) (time.Duration, error) {
	v := q.Get("wait")
	if v == "" {
		return 0, nil
	}
	f, err := strconv.ParseFloat(v, 64)
	if err != nil || f < 0 || math.IsNaN(f) || math.IsInf(f, 0) {
		return 0, errs.Invalid("wait", "wait must be seconds >= 0")
	}
	return min(time.Duration(min(f, maxPoll.Seconds())*float64(time.Second)), maxPoll), nil
}

// viewGap is the least time between two views one long poll computes:
// every change of any port wakes every agent's poll, and a burst of them
// (a hundred instances placed) costs each poll one view per gap, not one
// per change. The first change after a quiet spell is answered at once.
const viewGap = 50 * time.Millisecond

// getAgentNetworks is an agent's network view. With ?version= (the
// version of the view the agent has) and ?wait= it is a long poll, as the
// assignments are: answered as soon as the view differs from that
// version (a port moved, a rule changed), else at the end of the wait,
// and always whole, so an answer lost is a change delayed, never missed.
func (s *Server) getAgentNetworks(r *request) response.Response {
	q := r.URL.Query()
	wait, err := pollWait(q)
	if err != nil {
		return response.Error(err)
	}
	// Never an empty view from a cache still filling after a restart: the
	// agent would take it as "no ports here" and unplug them.
	if err := s.compute.Ready(r.Context()); err != nil {
		return response.Error(err)
	}
	known := q.Get("version")
	deadline := time.NewTimer(wait)
	defer deadline.Stop()
	expired := false
	for {
		// The changes to wait for are taken before the view is read.
		netChanged := s.networks.ViewChanged()
		placed, vteps, placedChanged := s.compute.PlacedNICs()
		computed := time.Now()
		v, err := s.networks.AgentView(r.Context(), r.agent.Hosts, placed, vteps, q.Get("names_version"))
		if err != nil {
			return response.Error(err)
		}
		if known == "" || v.Version != known || wait == 0 || expired {
			return response.OK(v)
		}
		s.viewPolls.Add(1)
		select {
		case <-placedChanged:
		case <-netChanged:
		case <-deadline.C:
			expired = true
		case <-r.Context().Done():
			expired = true
		}
		s.viewPolls.Add(-1)
		if expired {
			return response.OK(v)
		}
		if gap := viewGap - time.Since(computed); gap > 0 {
			select {
			case <-time.After(gap):
			case <-deadline.C:
				expired = true
			case <-r.Context().Done():
				return response.OK(v)
			}
		}
	}
}

// getAgentImage serves an agent the bytes of an image that an instance
// on one of its hosts uses, and no other: image hashes are not secrets.
func (s *Server) getAgentImage(r *request, w http.ResponseWriter) {
	sum := r.PathValue("sha256")
	mine, err := s.agentInstances(r.Context(), r.agent)
	if err != nil {
		response.Error(err).Render(w, r.Request)
		return
	}
	used := false
	for _, a := range mine {
		used = used || sum != "" && a.ImageSHA256 == sum
	}
	if !used && !s.agentVolumeImage(r, sum) {
		response.Error(errs.NotFound("no instance on this agent's hosts uses image %s", sum)).Render(w, r.Request)
		return
	}
	img, err := s.images.BySum(r.Context(), sum)
	if err != nil {
		response.Error(err).Render(w, r.Request)
		return
	}
	s.serveBlob(w, r, img)
}
