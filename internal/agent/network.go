package agent

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kumocloud/kumo/api"
	"github.com/kumocloud/kumo/internal/driver"
	"github.com/kumocloud/kumo/internal/network/datapath"
)

// The agent's network part: it wires an instance's ports before the
// instance starts (PROLOG, BOOT) and unwires them when it leaves the host,
// and a level-triggered loop makes the host's datapath match what the
// server says (GET /v1/agents/{id}/networks): networks with local ports,
// VXLAN peers, DHCP leases, the metadata service, the firewall; devices
// nobody wants any more are removed, and what was deleted by hand is made
// again. The loop long-polls the view: the server answers as soon as it
// differs from the version last applied here (a port moved to another
// host, a rule changed), so a live-migrated VM's new host is known to
// every host within one answer, not one polling period.

// netEvery bounds the time between two rounds: a round that nothing
// asked for (no change of the view) still comes, to repair what was
// changed by hand on the host.
const netEvery = 2 * time.Second

// networkView is what the host network job needs of the server: the
// view, its DNS names left out if namesVersion is current; with version
// (the version of the view applied here) and wait, answered when the
// view differs from version or after wait.
type networkView interface {
	Networks(ctx context.Context, namesVersion, version string, wait time.Duration) (api.AgentNetworks, error)
}

// hostNetwork is the host network job. dp is nil on hosts without a
// datapath (simulated hosts, or one that failed to open: netErr says why).
type hostNetwork struct {
	dp       *datapath.Host
	netErr   string
	sim      bool // simulated hosts have simulated networks
	view     networkView
	meta     *metadataService
	uplinks  map[string]string
	log      *slog.Logger
	assigned <-chan struct{} // closed once the first complete assignment list is dispatched

	mu sync.Mutex // guards withPorts and unplaced
	// withPorts are the assignments with ports that are on a host here;
	// unplaced counts the views in a row that lacked one of them.
	withPorts map[string]api.Assignment
	unplaced  map[string]int

	netMu     sync.Mutex // serializes datapath changes, and guards what follows
	kick      chan struct{}
	synced    atomic.Int64     // unix nanoseconds of the last round that read the view
	fwKey     string           // the firewall last applied here
	routers   map[int64]string // what each tenant router here was last set to do
	netRounds int
	// names are the DNS names of the networks served here, as of
	// namesVersion (the server sends them only when they change).
	names        map[int64][]datapath.Name
	namesVersion string
	// version is the version of the view last applied here, which the
	// next long poll waits to change.
	version string
}

func newHostNetwork(dp *datapath.Host, netErr string, sim bool, view networkView, meta *metadataService, uplinks map[string]string, assigned <-chan struct{}, log *slog.Logger) *hostNetwork {
	return &hostNetwork{dp: dp, netErr: netErr, sim: sim, view: view, meta: meta, uplinks: uplinks, assigned: assigned, log: log,
		withPorts: map[string]api.Assignment{}, unplaced: map[string]int{}, kick: make(chan struct{}, 1), fwKey: noFirewall, routers: map[int64]string{}}
}

// instanceNS is a container's network namespace.
func (h *hostNetwork) instanceNS(id string) string {
	return filepath.Join(h.dp.NSDir(), "inst-"+id)
}

// track keeps an assignment with ports: they belong on this host.
func (h *hostNetwork) track(as api.Assignment) {
	if len(as.NICs) == 0 {
		return
	}
	h.mu.Lock()
	h.withPorts[as.ID] = as
	h.mu.Unlock()
}

// forget drops an instance that left the host; its devices go with the
// next round.
func (h *hostNetwork) forget(id string) {
	h.mu.Lock()
	_, had := h.withPorts[id]
	delete(h.withPorts, id)
	delete(h.unplaced, id)
	h.mu.Unlock()
	if had {
		h.kickNow()
	}
}

// dpNetwork is a network in the datapath's terms (name is for errors).
func dpNetwork(name string, vni int64, cidr, gateway string, dns []string, dhcp bool) (datapath.Network, error) {
	p, err := netip.ParsePrefix(cidr)
	if err != nil {
		return datapath.Network{}, fmt.Errorf("network %s: cidr %q: %w", name, cidr, err)
	}
	gw, err := netip.ParseAddr(gateway)
	if err != nil {
		return datapath.Network{}, fmt.Errorf("network %s: gateway %q: %w", name, gateway, err)
	}
	out := datapath.Network{VNI: vni, Prefix: p, Gateway: gw, DHCP: dhcp}
	for _, d := range dns {
		if a, err := netip.ParseAddr(d); err == nil {
			out.DNS = append(out.DNS, a)
		}
	}
	return out, nil
}

// withNICs adds what the driver needs of an instance's ports to its spec:
// the container's namespace, or the VMs' TAP devices.
func (h *hostNetwork) spec(s driver.Spec, as api.Assignment) driver.Spec {
	if h.dp == nil || len(as.NICs) == 0 {
		return s
	}
	if as.Type == api.TypeContainer {
		s.NetNS = h.instanceNS(as.ID)
	}
	for _, n := range as.NICs {
		p, _ := netip.ParsePrefix(n.CIDR)
		ip, _ := netip.ParseAddr(n.IP)
		nic := driver.NIC{Device: datapath.PortName(n.PortID), MAC: n.MAC, Address: netip.PrefixFrom(ip, p.Bits()).String(),
			Gateway: n.Gateway, DNS: n.DNS, MTU: h.dp.MTU()}
		if slices.Contains(n.DNS, n.Gateway) { // the network's own DNS server knows its domain
			nic.Domain = api.NetworkDomain(n.Network)
		}
		s.NICs = append(s.NICs, nic)
	}
	return s
}

// wire makes an instance's ports on this host, then brings the whole
// datapath (peers, leases, firewall) up to date, so an instance never runs
// a moment without its security rules.
func (h *hostNetwork) wire(ctx context.Context, as api.Assignment) error {
	if len(as.NICs) == 0 {
		return nil
	}
	if h.dp == nil {
		if h.sim {
			return nil
		}
		return fmt.Errorf("this host has no network datapath (%s)", h.netErr)
	}
	h.track(as)
	h.netMu.Lock()
	defer h.netMu.Unlock()
	if err := h.wireLocked(as); err != nil {
		return err
	}
	h.syncLocked(ctx)
	return nil
}

func (h *hostNetwork) wireLocked(as api.Assignment) error {
	dp := h.dp
	if as.Type == api.TypeContainer {
		if err := datapath.NewNamespace(h.instanceNS(as.ID)); err != nil {
			return fmt.Errorf("network namespace: %w", err)
		}
	}
	for _, nic := range as.NICs {
		n, err := dpNetwork(nic.Network, nic.VNI, nic.CIDR, nic.Gateway, nic.DNS, nic.DHCP)
		if err != nil {
			return err
		}
		port, err := h.dpPort(as, nic.PortID, nic.MAC, nic.IP)
		if err != nil {
			return fmt.Errorf("port %s: %w", nic.Port, err)
		}
		if err := dp.EnsureNetwork(n); err != nil {
			return err
		}
		if _, err := dp.AttachPort(n, port); err != nil {
			return err
		}
	}
	return nil
}

// dpPort is one of an instance's ports in the datapath's terms: a veth
// into the container's namespace, or a VM's TAP.
func (h *hostNetwork) dpPort(as api.Assignment, id, mac, ip string) (datapath.Port, error) {
	hw, err := net.ParseMAC(mac)
	if err != nil {
		return datapath.Port{}, fmt.Errorf("mac %q: %w", mac, err)
	}
	addr, err := netip.ParseAddr(ip)
	if err != nil {
		return datapath.Port{}, fmt.Errorf("ip %q: %w", ip, err)
	}
	p := datapath.Port{ID: id, MAC: hw, IP: addr}
	if as.Type == api.TypeContainer {
		p.NetNS = h.instanceNS(as.ID)
	}
	return p, nil
}

// unwire removes an instance's ports from this host (its networks go with
// the next sync if no port is left on them).
func (h *hostNetwork) unwire(ctx context.Context, as api.Assignment) {
	dp := h.dp
	if dp == nil || len(as.NICs) == 0 {
		return
	}
	h.netMu.Lock()
	defer h.netMu.Unlock()
	for _, nic := range as.NICs {
		if err := dp.DetachPort(nic.PortID); err != nil {
			h.log.Warn("removing a port", "instance", as.ID, "port", nic.Port, "err", err)
		}
	}
	if as.Type == api.TypeContainer {
		datapath.RemoveNamespace(h.instanceNS(as.ID))
	}
}

// run makes the datapath match the server's view: once per view the
// long poll brings (at once when the view changes, else every netEvery),
// and at once when kicked.
func (h *hostNetwork) run(ctx context.Context) {
	if h.dp == nil {
		return
	}
	// Not before the first listing of assignments is dispatched: until
	// then every running instance's ports would look unwanted.
	select {
	case <-ctx.Done():
		return
	case <-h.assigned:
	}
	for ctx.Err() == nil {
		view, err := h.poll(ctx)
		if err != nil {
			if ctx.Err() == nil {
				h.log.Warn("network view", "err", err)
				// The server is away or not ready: try again soon (or
				// when kicked).
				select {
				case <-ctx.Done():
				case <-h.kick:
				case <-time.After(time.Second):
				}
			}
			continue
		}
		h.netMu.Lock()
		h.applyLocked(ctx, view)
		h.netMu.Unlock()
		if view.Version == "" {
			// A server that does not version its views answers every
			// poll at once: poll it every netEvery, as before.
			select {
			case <-ctx.Done():
			case <-h.kick:
			case <-time.After(netEvery):
			}
		}
	}
}

// poll long-polls the view for a change from the one applied here, up to
// netEvery; a kick ends the wait with a view read at once.
func (h *hostNetwork) poll(ctx context.Context) (api.AgentNetworks, error) {
	h.netMu.Lock()
	names, version := h.namesVersion, h.version
	h.netMu.Unlock()
	type answer struct {
		view api.AgentNetworks
		err  error
	}
	pctx, cancel := context.WithCancel(ctx)
	defer cancel()
	got := make(chan answer, 1)
	go func() {
		v, err := h.view.Networks(pctx, names, version, netEvery)
		got <- answer{v, err}
	}()
	select {
	case a := <-got:
		return a.view, a.err
	case <-h.kick:
		cancel()
		<-got
		return h.view.Networks(ctx, names, "", 0)
	}
}

// syncedAt is when the host's datapath was last made to match a view of
// the server's (zero: never, or no datapath here).
func (h *hostNetwork) syncedAt() time.Time {
	if ns := h.synced.Load(); ns > 0 {
		return time.Unix(0, ns).UTC()
	}
	return time.Time{}
}

// kickNow asks for a sync soon (after instances left the host).
func (h *hostNetwork) kickNow() {
	select {
	case h.kick <- struct{}{}:
	default:
	}
}

// receiving says whether an assignment is a migration still in transfer:
// its target wired the ports for the QEMU (or container) waiting there,
// and the server's view shows them on the source until the move commits.
// Removing them then deleted the TAP under the target's QEMU: its NIC was
// dead after the move, and its main loop spun on the detached descriptor
// (EBADFD), starving the next migration from that host of QEMU's lock
// (it sent nothing).
func receiving(as api.Assignment) bool {
	return as.Migration != nil && as.Migration.Phase == api.MigrationTransfer
}

// wired are the assignments whose ports should be on this host now.
func (h *hostNetwork) wired() map[string]api.Assignment {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := map[string]api.Assignment{}
	for id, as := range h.withPorts {
		out[id] = as
	}
	return out
}

// syncNetworksLocked makes the datapath match the server's view; errors are
// logged and retried on the next round. What is cheap to check (devices,
// peers, leases) is checked every round; the firewall and routers, whose
// setting is a whole transaction, are set when what they should be
// changes, and every 30th round anyway, to repair changes made by hand.
func (h *hostNetwork) syncLocked(ctx context.Context) {
	view, err := h.view.Networks(ctx, h.namesVersion, "", 0)
	if err != nil {
		if ctx.Err() == nil {
			h.log.Warn("network view", "err", err)
		}
		return
	}
	h.applyLocked(ctx, view)
}

// applyLocked makes the datapath match a view just read (see syncLocked).
func (h *hostNetwork) applyLocked(ctx context.Context, view api.AgentNetworks) {
	dp := h.dp
	if h.netRounds++; h.netRounds%30 == 0 {
		clear(h.routers)
		if h.fwKey != noFirewall {
			h.fwKey = ""
		}
	}
	start := time.Now()
	defer h.synced.Store(time.Now().UnixNano())
	if view.Version != h.version {
		defer func() { h.log.Debug("network view applied", "version", view.Version, "took", time.Since(start)) }()
	}
	h.version = view.Version
	h.keepNames(view)
	wired := h.wired()
	wantNet := map[int64]bool{}
	wantPort := map[string]bool{}
	for _, as := range wired {
		for _, nic := range as.NICs {
			wantNet[nic.VNI], wantPort[datapath.PortName(nic.PortID)] = true, true
		}
	}
	// External networks of local floating IPs: a bridge with the uplink
	// the admin named for it.
	exts := map[int64]datapath.Network{}
	for _, e := range view.Externals {
		dn, err := dpNetwork(e.Name, e.VNI, e.CIDR, e.Gateway, nil, false)
		if err != nil {
			continue
		}
		wantNet[e.VNI] = true
		if err := dp.EnsureExternal(dn, h.uplink(e.Name)); err != nil {
			h.log.Warn("external network", "network", e.Name, "err", err)
			continue
		}
		exts[e.VNI] = dn
	}
	nets := map[int64]datapath.Network{}
	for _, n := range view.Networks {
		wantNet[n.VNI] = true
		dn, err := dpNetwork(fmt.Sprint(n.VNI), n.VNI, n.CIDR, n.Gateway, n.DNS, n.DHCP)
		if err == nil {
			dn.Domain = n.Domain
			err = dp.EnsureNetwork(dn)
		}
		if err != nil {
			h.log.Warn("network", "vni", n.VNI, "err", err)
			continue
		}
		nets[n.VNI] = dn
	}
	// What is plugged now, after the bridges were made or repaired.
	plugged, err := dp.State()
	if err != nil {
		h.log.Warn("network state", "err", err)
		return
	}
	var fw []datapath.FirewallPort
	byAddr := map[int64]map[string]api.AgentPort{}
	inView := map[string]bool{}
	for _, n := range view.Networks {
		dn, ok := nets[n.VNI]
		if !ok {
			continue
		}
		if err := dp.SetPeers(n.VNI, peersOf(n.Peers)); err != nil {
			h.log.Warn("network peers", "vni", n.VNI, "err", err)
		}
		var leases []datapath.Lease
		var fips []datapath.Floating
		var ext datapath.Network
		byAddr[n.VNI] = map[string]api.AgentPort{}
		for _, p := range n.Ports {
			dev := datapath.PortName(p.PortID)
			wantPort[dev] = true
			inView[p.InstanceID] = true
			as, mine := wired[p.InstanceID]
			if !mine {
				continue // its assignment has not reached this agent yet
			}
			port, err := h.dpPort(as, p.PortID, p.MAC, p.IP)
			if err != nil {
				h.log.Warn("port", "instance", p.Instance, "err", err)
				continue
			}
			byAddr[n.VNI][p.IP] = p
			// Repair: a port deleted by hand, or left out of a bridge made
			// again, is plugged again.
			if up, ok := plugged[n.VNI][dev]; !ok || !up {
				if _, err := dp.AttachPort(dn, port); err != nil {
					h.log.Warn("port", "instance", p.Instance, "err", err)
				}
			}
			leases = append(leases, datapath.Lease{MAC: port.MAC, IP: port.IP, Hostname: p.Instance})
			if e, ok := exts[p.FloatingVNI]; ok && (ext.VNI == 0 || ext.VNI == e.VNI) {
				if f, err := netip.ParseAddr(p.FloatingIP); err == nil {
					ext = e
					fips = append(fips, datapath.Floating{Floating: f, Fixed: port.IP})
				}
			}
			fw = append(fw, firewallPort(n.VNI, dn.Gateway, port, p.Rules))
		}
		zone := datapath.Zone{Names: h.names[n.VNI], Forward: n.EgressNAT}
		if err := dp.EnsureServices(dn, leases, zone, h.meta, h.log); err != nil {
			h.log.Warn("network services", "vni", n.VNI, "err", err)
		}
		r := datapath.Router{Egress: n.EgressNAT, External: ext, Floating: fips}
		if key := fmt.Sprint(r); h.routers[n.VNI] != key {
			if err := dp.SetRouter(n.VNI, r); err != nil {
				h.log.Warn("router", "vni", n.VNI, "err", err)
			} else {
				h.routers[n.VNI] = key
			}
		}
	}
	h.meta.set(byAddr, wired)
	h.mu.Lock()
	// Instances the server no longer places here (a late assignment of
	// one that ended may have put it back) are forgotten once two views
	// in a row lack them (one may come from a server a moment behind);
	// their devices go below.
	for id := range wired {
		if inView[id] || receiving(wired[id]) {
			delete(h.unplaced, id)
			continue
		}
		if h.unplaced[id]++; h.unplaced[id] >= 2 {
			delete(h.unplaced, id)
			delete(h.withPorts, id)
			for _, nic := range wired[id].NICs {
				delete(wantPort, datapath.PortName(nic.PortID))
			}
		}
	}
	h.mu.Unlock()
	sort.Slice(fw, func(i, j int) bool { return fw[i].ID < fw[j].ID })
	if key := fmt.Sprint(fw); key != h.fwKey {
		if err := dp.ApplyFirewall(fw); err != nil {
			h.log.Warn("firewall", "err", err)
		} else {
			h.fwKey = key
		}
	}
	// What nobody wants goes: stray ports, then networks, routers and
	// services no one wants (a removal cut short leaves some of them).
	gone := map[int64]bool{}
	for vni, ports := range plugged {
		for dev := range ports {
			if !wantPort[dev] {
				if err := dp.DetachDevice(dev); err != nil {
					h.log.Warn("removing a stray port", "device", dev, "err", err)
				}
			}
		}
		gone[vni] = true
	}
	for _, vni := range append(dp.Routers(), dp.ServedNetworks()...) {
		gone[vni] = true
	}
	for vni := range gone {
		if wantNet[vni] {
			continue
		}
		dp.StopServices(vni)
		delete(h.routers, vni)
		if err := dp.RemoveNetwork(vni); err != nil {
			h.log.Warn("removing a network", "vni", vni, "err", err)
		}
	}
}

// keepNames takes the view's DNS names, or keeps those it has if the
// server left them out as unchanged.
func (h *hostNetwork) keepNames(view api.AgentNetworks) {
	if view.NamesVersion != "" && view.NamesVersion == h.namesVersion {
		return
	}
	h.names, h.namesVersion = map[int64][]datapath.Name{}, view.NamesVersion
	for _, n := range view.Networks {
		names := make([]datapath.Name, 0, len(n.Names))
		for _, nm := range n.Names {
			if ip, err := netip.ParseAddr(nm.IP); err == nil {
				names = append(names, datapath.Name{Name: nm.Name, IP: ip, Project: nm.Project})
			}
		}
		h.names[n.VNI] = names
	}
}

// noFirewall is the key of an empty firewall: a host that never had a
// network keeps its own rules untouched.
var noFirewall = fmt.Sprint([]datapath.FirewallPort(nil))

// peersOf turns the view's peers into forwarding entries' terms.
func peersOf(in []api.NetworkPeer) []datapath.Peer {
	var out []datapath.Peer
	for _, p := range in {
		vtep, err := netip.ParseAddr(p.VTEP)
		if err != nil {
			continue
		}
		pe := datapath.Peer{VTEP: vtep}
		for _, m := range p.MACs {
			if hw, err := net.ParseMAC(m); err == nil {
				pe.MACs = append(pe.MACs, hw)
			}
		}
		out = append(out, pe)
	}
	return out
}

// firewallPort is a port's firewall entry: its rules, remotes parsed.
func firewallPort(vni int64, gw netip.Addr, p datapath.Port, rules []api.ResolvedRule) datapath.FirewallPort {
	fp := datapath.FirewallPort{VNI: vni, ID: p.ID, MAC: p.MAC, IP: p.IP, Gateway: gw}
	for _, r := range rules {
		rule := datapath.Rule{Ingress: r.Direction == api.Ingress, Protocol: r.Protocol, PortMin: uint16(r.PortMin), PortMax: uint16(r.PortMax)}
		for _, rem := range r.Remotes {
			if pr, err := netip.ParsePrefix(rem); err == nil {
				rule.Remotes = append(rule.Remotes, pr)
			}
		}
		fp.Rules = append(fp.Rules, rule)
	}
	return fp
}

// uplink is the host device the admin named for an external network
// (by "owner/name" or by name).
func (h *hostNetwork) uplink(name string) string {
	if dev, ok := h.uplinks[name]; ok {
		return dev
	}
	_, short, _ := strings.Cut(name, "/")
	return h.uplinks[short]
}

// openDatapath opens this machine's network datapath, its tunnels
// starting at vtep ("" or "auto": datapath.DefaultVTEP), its namespaces
// (routers', containers') mounted under stateDir/netns - one agent's
// apart from another's on the same machine.
func openDatapath(vtep, stateDir string) (*datapath.Host, error) {
	var addr netip.Addr
	if vtep == "" || vtep == "auto" {
		addr = datapath.DefaultVTEP()
	} else if a, err := netip.ParseAddr(vtep); err == nil && a.Is4() {
		addr = a
	} else {
		return nil, fmt.Errorf("--vtep %q is not an IPv4 address", vtep)
	}
	return datapath.Open(datapath.Config{VTEP: addr, NSDir: filepath.Join(stateDir, "netns")})
}
