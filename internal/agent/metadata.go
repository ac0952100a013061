package agent

import (
	"fmt"
	"net"
	"net/http"
	"sort"
	"strings"
	"sync"

	"github.com/kumocloud/kumo/api"
	"github.com/kumocloud/kumo/internal/network/datapath"
)

// metadataService answers the EC2-style metadata paths
// (169.254.169.254, served in each network's router) for the instance the
// request came from: known by its network and address, which
// anti-spoofing pins to its port - never by anything it says. The host
// network job gives it the latest view each round.
type metadataService struct {
	mu       sync.Mutex
	byAddr   map[int64]map[string]api.AgentPort // network -> address -> port
	userData map[string]string                  // instance id -> user-data
}

func newMetadataService() *metadataService {
	return &metadataService{byAddr: map[int64]map[string]api.AgentPort{}, userData: map[string]string{}}
}

// set replaces what the service knows: the local ports by network and
// address, and the assignments they belong to.
func (m *metadataService) set(byAddr map[int64]map[string]api.AgentPort, assigned map[string]api.Assignment) {
	ud := make(map[string]string, len(assigned))
	for id, as := range assigned {
		ud[id] = as.UserData
	}
	m.mu.Lock()
	m.byAddr, m.userData = byAddr, ud
	m.mu.Unlock()
}

// ServeHTTP implements http.Handler.
func (m *metadataService) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	host, _, _ := net.SplitHostPort(r.RemoteAddr)
	vni := datapath.RequestVNI(r)
	m.mu.Lock()
	p, ok := m.byAddr[vni][host]
	userData := m.userData[p.InstanceID]
	m.mu.Unlock()
	if !ok {
		http.Error(w, "no instance has this address here", http.StatusNotFound)
		return
	}
	fields := map[string]string{
		"instance-id": p.InstanceID, "hostname": p.Instance, "local-hostname": p.Instance,
		"local-ipv4": p.IP, "mac": p.MAC, "public-ipv4": p.FloatingIP,
	}
	path := strings.TrimSuffix(r.URL.Path, "/")
	switch {
	case path == "" || path == "/latest":
		fmt.Fprint(w, "meta-data\nuser-data\n")
	case path == "/latest/meta-data":
		var keys []string
		for k, v := range fields {
			if v != "" {
				keys = append(keys, k)
			}
		}
		sort.Strings(keys)
		fmt.Fprint(w, strings.Join(keys, "\n")+"\n")
	case path == "/latest/user-data":
		if userData == "" {
			http.Error(w, "no user-data", http.StatusNotFound)
			return
		}
		fmt.Fprint(w, userData)
	case strings.HasPrefix(path, "/latest/meta-data/"):
		v := fields[strings.TrimPrefix(path, "/latest/meta-data/")]
		if v == "" {
			http.NotFound(w, r)
			return
		}
		fmt.Fprint(w, v)
	default:
		http.NotFound(w, r)
	}
}
