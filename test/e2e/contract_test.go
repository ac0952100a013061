package e2e

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/kumocloud/kumo/api"
	"github.com/kumocloud/kumo/client"
	"github.com/kumocloud/kumo/internal/apitest"
	kumoserver "github.com/kumocloud/kumo/internal/server"
)

// TestContract drives every endpoint of a real server over HTTPS through
// client/, validating each request and response against api/openapi.yaml.
func TestContract(t *testing.T) {
	s := startServer(t)
	v, err := apitest.New()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	anon := s.remote(t, "")
	anon.WrapTransport(v.Transport)
	tok, err := anon.Login(ctx, api.TokensPost{Username: "admin", Password: s.AdminPassword, Description: "contract"})
	if err != nil {
		t.Fatal(err)
	}
	admin := anon.WithToken(tok.Secret)
	check := func(what string, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	info, err := admin.ServerInfo(ctx)
	check("server info", err)
	if info.CAFingerprint != s.Fingerprint {
		t.Errorf("GET /v1 fingerprint %s, server printed %s", info.CAFingerprint, s.Fingerprint)
	}
	_, err = admin.Whoami(ctx)
	check("whoami", err)
	_, err = admin.CreateProject(client.WithIdempotencyKey(ctx, "c1"), api.ProjectsPost{Name: "web", Labels: map[string]string{"tier": "front"}, Quota: map[string]int64{"instances": 3}})
	check("create project", err)
	_, err = admin.Projects(ctx, client.ListOptions{Labels: map[string]string{"tier": "front"}, Limit: 5})
	check("list projects", err)
	desc := "the web tier"
	_, err = admin.PatchProject(ctx, "web", api.ProjectPatch{Description: &desc})
	check("patch project", err)
	_, err = admin.SetQuota(ctx, "web", map[string]int64{"vcpus": 8})
	check("set quota", err)
	_, err = admin.CreateUser(ctx, api.UsersPost{Name: "bob", Password: "bob-password", DefaultProject: "web"})
	check("create user", err)
	_, err = admin.Users(ctx, client.ListOptions{})
	check("list users", err)
	_, err = admin.User(ctx, "bob")
	check("show user", err)
	check("set password", admin.SetPassword(ctx, "bob", "bob-password-2"))
	_, err = admin.SetMember(ctx, "web", "bob", "reader")
	check("set member", err)
	_, err = admin.Members(ctx, "web")
	check("members", err)
	bobTok, err := anon.Login(ctx, api.TokensPost{Username: "bob", Password: "bob-password-2"})
	check("bob login", err)
	bob := anon.WithToken(bobTok.Secret)
	_, err = bob.Login(ctx, api.TokensPost{Description: "second"})
	check("token from token", err)
	toks, err := bob.Tokens(ctx, false)
	check("list tokens", err)
	_, err = admin.Tokens(ctx, true)
	check("list all tokens", err)
	if _, err := bob.CreateProject(ctx, api.ProjectsPost{Name: "nope"}); client.StatusOf(err) != 403 {
		t.Errorf("reader creating a project: %v", err)
	}
	_, err = bob.Token(ctx, toks[0].ID)
	check("show token", err)
	_, err = admin.Project(ctx, "web")
	check("show project", err)
	_, err = bob.RevokeToken(ctx, toks[0].ID)
	check("revoke", err)
	check("remove member", admin.RemoveMember(ctx, "web", "bob"))
	check("delete user", admin.DeleteUser(ctx, "bob"))
	_, err = admin.CreateFlavor(ctx, api.FlavorsPost{Name: "gpu-ish", VCPUs: 16, MemoryMiB: 65536, DiskGiB: 100, PriceMicro: 1_500_000})
	check("create flavor", err)
	_, err = admin.Flavors(ctx, client.ListOptions{})
	check("list flavors", err)
	_, err = admin.Flavor(ctx, "gpu-ish")
	check("show flavor", err)
	_, err = admin.SetFlavorPrice(ctx, "gpu-ish", api.PricePut{Micro: 2_000_000})
	check("flavor price", err)
	_, err = admin.SetStoragePrice(ctx, api.PricePut{Micro: 100})
	check("storage price", err)
	_, err = admin.SetKindPrice(ctx, "volumes", api.PricePut{Micro: 50})
	check("volume price", err)
	_, err = admin.SetRules(ctx, api.RulesPut{ComputeStates: []api.State{"RUNNING", "SUSPENDED", "UNKNOWN"}, StorageStates: []api.State{"STOPPED", "POWEROFF"}})
	check("rules", err)
	_, err = admin.Prices(ctx)
	check("prices", err)
	from, to := time.Now().Add(-time.Hour).UTC().Format(time.RFC3339), time.Now().UTC().Format(time.RFC3339)
	_, err = admin.Usage(ctx, "web", from, to, "day")
	check("project usage", err)
	_, err = admin.Usage(ctx, "", from, to, "project")
	check("usage", err)
	budget := int64(10_000_000)
	_, err = admin.PatchProject(ctx, "web", api.ProjectPatch{BudgetMicro: &budget})
	check("budget", err)
	check("delete flavor", admin.DeleteFlavor(ctx, "gpu-ish"))
	rootfs := tinyRootfs(t)
	_, err = admin.CreateImage(ctx, "web", api.ImagesPost{Name: "tiny", Kind: api.KindContainerRootfs})
	check("create image", err)
	_, err = admin.UploadImage(ctx, "web", "tiny", bytes.NewReader(rootfs), int64(len(rootfs)))
	check("upload image", err)
	_, err = admin.Images(ctx, "web")
	check("images", err)
	_, err = admin.Image(ctx, "web", "tiny")
	check("image", err)
	shared := "shared"
	_, err = admin.PatchImage(ctx, "web", "tiny", api.ImagePatch{Visibility: &shared, SharedWith: []string{"default"}})
	check("patch image", err)
	_, err = admin.ImageShares(ctx, "default")
	check("image shares", err)
	_, err = admin.AnswerImageShare(ctx, "default", "web", "tiny", api.ShareAccepted)
	check("accept image share", err)
	rc, err := admin.DownloadImage(ctx, "web", "tiny")
	check("download image", err)
	io.Copy(io.Discard, rc)
	rc.Close()
	check("delete image", admin.DeleteImage(ctx, "web", "tiny", false))
	_, err = admin.CreateProject(ctx, api.ProjectsPost{Name: "temp"})
	check("create temp", err)
	op, err := admin.DeleteProject(ctx, "temp")
	check("delete project", err)
	_, err = admin.Operation(ctx, op.ID)
	check("show operation", err)
	_, err = admin.WaitOperation(ctx, op.ID)
	check("wait operation", err)
	_, err = admin.Operations(ctx, "", client.ListOptions{})
	check("list operations", err)
	_, err = admin.Operations(ctx, "temp", client.ListOptions{Limit: 10})
	if client.StatusOf(err) != 404 {
		t.Errorf("operations of a deleted project: %v", err)
	}
	_, err = admin.Operations(ctx, "web", client.ListOptions{})
	check("project operations", err)
	var n int
	check("events", admin.Events(ctx, client.EventQuery{NoFollow: true}, func(api.Event) error { n++; return nil }))
	if n < 10 {
		t.Errorf("only %d events", n)
	}
	// Networks and ports: an address allocated, listed, freed.
	_, err = admin.CreateNetwork(ctx, "default", api.NetworksPost{Name: "app", CIDR: "10.20.0.0/24", DNS: []string{"10.20.0.1"}})
	check("network", err)
	_, err = admin.Networks(ctx, "default")
	check("networks", err)
	_, err = admin.Network(ctx, "default", "app")
	check("show network", err)
	port, err := admin.CreatePort(ctx, "default", api.PortsPost{Name: "a1", Network: "app", IP: "10.20.0.10"})
	check("port", err)
	if port.MAC != "02:00:0a:14:00:0a" {
		t.Errorf("port %+v", port)
	}
	_, err = admin.Ports(ctx, "default", "app")
	check("ports", err)
	_, err = admin.Port(ctx, "default", "a1")
	check("show port", err)
	if err := admin.DeleteNetwork(ctx, "default", "app"); client.StatusOf(err) != 409 {
		t.Errorf("deleting a network with a port: %v", err)
	}
	check("delete port", admin.DeletePort(ctx, "default", "a1"))
	check("delete network", admin.DeleteNetwork(ctx, "default", "app"))
	// Security groups and their rules.
	_, err = admin.CreateSecurityGroup(ctx, "default", api.SecurityGroupsPost{Name: "web", Description: "front"})
	check("security group", err)
	g, err := admin.AddSecurityRule(ctx, "default", "web", api.SecurityRule{Direction: api.Ingress, Protocol: "tcp", PortMin: 80})
	check("rule", err)
	if _, err := admin.AddSecurityRule(ctx, "default", "web", api.SecurityRule{Direction: "sideways"}); client.StatusOf(err) != 400 {
		t.Errorf("a bad rule: %v", err)
	}
	_, err = admin.SecurityGroups(ctx, "default")
	check("security groups", err)
	_, err = admin.SecurityGroup(ctx, "default", "web")
	check("show security group", err)
	_, err = admin.DeleteSecurityRule(ctx, "default", "web", g.Rules[len(g.Rules)-1].ID)
	check("delete rule", err)
	check("delete security group", admin.DeleteSecurityGroup(ctx, "default", "web"))
	// Floating IPs from an external network.
	_, err = admin.CreateNetwork(ctx, "default", api.NetworksPost{Name: "public", CIDR: "203.0.113.0/24", External: true})
	check("external network", err)
	fip, err := admin.CreateFloatingIP(ctx, "default", api.FloatingIPsPost{Network: "public"})
	check("floating ip", err)
	_, err = admin.FloatingIPs(ctx, "default")
	check("floating ips", err)
	_, err = admin.FloatingIP(ctx, "default", fip.IP)
	check("show floating ip", err)
	if _, err := admin.AttachFloatingIP(ctx, "default", fip.IP, "nosuch"); client.StatusOf(err) != 404 {
		t.Errorf("attach to no instance: %v", err)
	}
	_, err = admin.DetachFloatingIP(ctx, "default", fip.IP)
	check("detach floating ip", err)
	check("delete floating ip", admin.DeleteFloatingIP(ctx, "default", fip.IP))
	check("delete external network", admin.DeleteNetwork(ctx, "default", "public"))
	// A live event arrives on a following stream. The stream starts after
	// the event id the server gave before the create, so the event is in
	// it however late the stream connects.
	info, err = admin.ServerInfo(ctx)
	check("server info", err)
	got := make(chan api.Event, 1)
	sctx, scancel := context.WithCancel(ctx)
	go admin.Events(sctx, client.EventQuery{Types: []string{"project"}, Since: info.EventsAfter}, func(ev api.Event) error {
		select {
		case got <- ev:
		default:
		}
		return nil
	})
	_, err = admin.CreateProject(ctx, api.ProjectsPost{Name: "live"})
	check("create live", err)
	select {
	case ev := <-got:
		if ev.Project != "live" || ev.Action != "created" {
			t.Errorf("live event %+v", ev)
		}
	case <-time.After(10 * time.Second):
		t.Error("no live event within 10 s")
	}
	scancel()
	// Plain HTTP endpoints.
	hc := &http.Client{}
	admin.WrapTransport(func(rt http.RoundTripper) http.RoundTripper { hc.Transport = rt; return rt })
	for _, path := range []string{"/healthz", "/readyz", "/metrics", "/v1/openapi.yaml"} {
		resp, err := hc.Get(s.url() + path)
		check(path, err)
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Errorf("%s: %d", path, resp.StatusCode)
		}
		if path == "/metrics" && !strings.Contains(string(b), `kumo_http_requests_total{code="201",method="POST",route="/v1/projects"}`) {
			t.Errorf("metrics lack the request counter:\n%.2000s", b)
		}
	}
	assertContract(t, v, func(path string) bool {
		return !computePath(path) && !dayTwoPath(path) && !migrationPath(path) && !volumeAgentPath(path)
	})
}

// assertContract fails on contract problems and on endpoints (those keep
// selects) that no exchange exercised.
func assertContract(t *testing.T, v *apitest.Validator, keep func(path string) bool) {
	t.Helper()
	for _, p := range v.Problems() {
		t.Error(p)
	}
	checked := map[string]bool{}
	for _, k := range v.Checked() {
		checked[k] = true
	}
	var missed []string
	for _, ep := range kumoserver.Endpoints() {
		if keep(ep.Path) && !checked[ep.Method+" "+ep.Path] {
			missed = append(missed, ep.Method+" "+ep.Path)
		}
	}
	sort.Strings(missed)
	if len(missed) > 0 {
		t.Errorf("endpoints not exercised against the contract: %v", missed)
	}
}

// dayTwoPath: the user-facing day-two endpoints TestDayTwoContract drives.
func dayTwoPath(path string) bool {
	for _, p := range []string{"/storage-pools", "/v1/projects/{project}/volume", "/v1/consolidation", "/v1/session", "/instance-backups", "/instances/{name}/backups"} {
		if strings.Contains(path, p) {
			return true
		}
	}
	return false
}
