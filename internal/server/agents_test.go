package server

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"testing"
	"time"

	"github.com/kumocloud/kumo/api"
)

// rootfs is a minimal container-rootfs tarball the image checks accept.
func rootfs(t *testing.T) []byte {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	w := tar.NewWriter(zw)
	for _, h := range []*tar.Header{
		{Name: "bin/", Typeflag: tar.TypeDir, Mode: 0o755},
		{Name: "bin/busybox", Typeflag: tar.TypeReg, Mode: 0o755, Size: 3},
		{Name: "sbin/init", Linkname: "/bin/busybox", Typeflag: tar.TypeSymlink, Mode: 0o777},
	} {
		if err := w.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if h.Size > 0 {
			w.Write([]byte("ELF"))
		}
	}
	w.Close()
	zw.Close()
	return buf.Bytes()
}

// waitFor polls until ok or a generous deadline (evidence, not a sleep).
func waitFor(t *testing.T, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (ts *testServer) joinAgent(jt, name, host string) api.Agent {
	ts.t.Helper()
	var a api.Agent
	r := ts.do("POST", "/v1/agents", "", api.AgentsPost{JoinToken: jt, Name: name, Driver: "sim",
		Hosts: []api.HostSpec{{Name: host, Kinds: []string{"container"}, Capacity: api.Size{VCPUs: 8, MemoryMiB: 8192, DiskGiB: 100}}}})
	if r.Status != 201 {
		ts.t.Fatalf("join %s: %d %s", name, r.Status, r.Body)
	}
	r.decode(ts.t, &a)
	return a
}

// victimAndIntruder is a server with project p, a cloud admin, and two
// agents of one join token, both named "local": the victim with host hv,
// the intruder with host hi.
func victimAndIntruder(t *testing.T) (ts *testServer, admin string, jt api.JoinToken, victim, intruder api.Agent) {
	ts = validated(t)
	admin = ts.user("boss", true)
	ts.project("p")
	ts.do("POST", "/v1/join-tokens", admin, map[string]any{}).decode(t, &jt)
	return ts, admin, jt, ts.joinAgent(jt.Token, "local", "hv"), ts.joinAgent(jt.Token, "local", "hi")
}

// victimsInstance is container i1 of project p, made of image img (a
// container rootfs) with user data "the-victims-secret", once placed on hv
// (the only host enabled).
func (ts *testServer) victimsInstance(admin string, img []byte) api.Instance {
	t := ts.t
	t.Helper()
	ts.do("POST", "/v1/projects/p/images", admin, map[string]any{"name": "img", "kind": "container-rootfs"})
	if r := ts.do("PUT", "/v1/projects/p/images/img/file", admin, string(img), "Content-Type", "application/octet-stream"); r.Status != 200 {
		t.Fatalf("upload: %d %s", r.Status, r.Body)
	}
	if r := ts.do("POST", "/v1/projects/p/instances", admin, api.InstancesPost{Name: "i1", Type: "container", Flavor: "tiny", Image: "img", UserData: "the-victims-secret"}); r.Status != 201 {
		t.Fatalf("create: %d %s", r.Status, r.Body)
	}
	var in api.Instance
	waitFor(t, "i1 placed on hv", func() bool {
		ts.do("GET", "/v1/projects/p/instances/i1", admin, nil).decode(t, &in)
		return in.Host == "hv"
	})
	return in
}

// An agent acts only on what its own hosts hold. Another agent - here one
// that named itself like the victim - gets no assignment (no user-data)
// of the victim's instances, cannot report their state, set their usage
// or readiness, fetch their private image, answer their sessions, or take
// their host by joining or re-registering. And the host leaves its agent
// only by a cloud admin's delete, refused while instances live on it.
func TestAgentTouchesOnlyItsOwnHosts(t *testing.T) {
	ts, admin, jt, victim, intruder := victimAndIntruder(t)
	ts.do("PATCH", "/v1/hosts/hi", admin, map[string]any{"enabled": false}) // place on hv

	img := rootfs(t)
	sum := sha256.Sum256(img)
	in := ts.victimsInstance(admin, img)
	agentPath := func(a api.Agent, rest string) string { return "/v1/agents/" + a.ID + rest }
	report := func(a api.Agent, from, to api.State) api.AgentReportResult {
		var res api.AgentReportResult
		ts.do("POST", agentPath(a, "/reports"), a.Credential, api.AgentReport{Instances: []api.InstanceReport{{ID: in.ID, Host: "hv", From: from, To: to}}}).decode(t, &res)
		return res
	}

	// The intruder sees nothing of hv.
	r := ts.do("GET", agentPath(intruder, "/assignments?wait=0"), intruder.Credential, nil)
	if r.Status != 200 || strings.Contains(string(r.Body), in.ID) || strings.Contains(string(r.Body), "the-victims-secret") {
		t.Fatalf("intruder's assignments: %d %s", r.Status, r.Body)
	}
	if res := report(intruder, in.State, api.StateFailed); res.Applied != 0 {
		t.Fatalf("the intruder's report was applied: %+v", res)
	}
	if r := ts.do("GET", agentPath(intruder, "/images/"+hex.EncodeToString(sum[:])), intruder.Credential, nil); r.Status != 404 {
		t.Fatalf("the intruder fetched the image: %d", r.Status)
	}
	if r := ts.do("GET", agentPath(victim, "/images/"+hex.EncodeToString(sum[:])), victim.Credential, nil); r.Status != 200 || !bytes.Equal(r.Body, img) {
		t.Fatalf("the victim's own image: %d", r.Status)
	}
	// The victim runs it.
	for _, step := range [][2]api.State{{api.StateProlog, api.StateBoot}, {api.StateBoot, api.StateRunning}} {
		if res := report(victim, step[0], step[1]); res.Applied != 1 {
			t.Fatalf("victim's report %v: %+v", step, res)
		}
	}
	ts.do("POST", agentPath(intruder, "/usage"), intruder.Credential, api.AgentUsage{Usage: []api.InstanceUsage{{ID: in.ID, CPUSeconds: 99, Ready: true, At: time.Now()}}})
	ts.do("GET", "/v1/projects/p/instances/i1", admin, nil).decode(t, &in)
	if in.Usage != nil || in.Ready {
		t.Fatalf("the intruder set the usage: %+v ready=%v", in.Usage, in.Ready)
	}

	// A session for i1 goes to the victim, and only the victim may answer.
	done := make(chan resp, 1)
	go func() {
		done <- ts.do("GET", "/v1/projects/p/instances/i1/logs?tail=5", admin, nil)
	}()
	var sess api.List[api.Session]
	ts.do("GET", agentPath(victim, "/sessions?wait=30"), victim.Credential, nil).decode(t, &sess)
	if len(sess.Items) != 1 {
		t.Fatalf("victim's sessions: %+v", sess)
	}
	sid := sess.Items[0].ID
	if r := ts.do("POST", agentPath(intruder, "/sessions/"+sid), intruder.Credential, api.SessionResult{Output: "forged"}); r.Status != 404 {
		t.Fatalf("the intruder answered the victim's session: %d %s", r.Status, r.Body)
	}
	ts.do("POST", agentPath(victim, "/sessions/"+sid), victim.Credential, api.SessionResult{Output: "genuine"})
	if r := <-done; !strings.Contains(string(r.Body), "genuine") {
		t.Fatalf("logs answered %d %s", r.Status, r.Body)
	}

	// Neither joining nor re-registering takes hv.
	hostHV := []api.HostSpec{{Name: "hv", Kinds: []string{"container"}, Capacity: api.Size{VCPUs: 8, MemoryMiB: 8192, DiskGiB: 100}}}
	if r := ts.do("PUT", agentPath(intruder, "/hosts"), intruder.Credential, api.AgentHostsPut{Hosts: hostHV}); r.Status != 409 || !strings.Contains(string(r.Body), "kumo host delete hv") {
		t.Fatalf("re-registering hv: %d %s", r.Status, r.Body)
	}
	if r := ts.do("POST", "/v1/agents", "", api.AgentsPost{JoinToken: jt.Token, Name: "local", Driver: "sim", Hosts: hostHV}); r.Status != 409 {
		t.Fatalf("joining with hv: %d %s", r.Status, r.Body)
	}

	// A host with a live instance is not deleted; once it is DONE, it is,
	// and its agent, left without hosts, is no longer recognised.
	if r := ts.do("DELETE", "/v1/hosts/hv", admin, nil); r.Status != 409 || !strings.Contains(string(r.Body), "p/i1") {
		t.Fatalf("deleting a host with a running instance: %d %s", r.Status, r.Body)
	}
	ts.do("POST", "/v1/projects/p/instances/i1/actions", admin, map[string]any{"action": "terminate"})
	for _, step := range [][2]api.State{{api.StateShutdown, api.StateEpilog}, {api.StateEpilog, api.StateDone}} {
		if res := report(victim, step[0], step[1]); res.Applied != 1 {
			t.Fatalf("victim's report %v: %+v", step, res)
		}
	}
	if r := ts.do("DELETE", "/v1/hosts/hv", admin, nil); r.Status != 204 {
		t.Fatalf("deleting an empty host: %d %s", r.Status, r.Body)
	}
	if r := ts.do("GET", agentPath(victim, "/assignments?wait=0"), victim.Credential, nil); r.Status != 401 {
		t.Fatalf("the agent of a deleted host: %d %s", r.Status, r.Body)
	}
	// Now hv may join again, under any agent.
	if r := ts.do("PUT", agentPath(intruder, "/hosts"), intruder.Credential, api.AgentHostsPut{Hosts: hostHV}); r.Status != 200 {
		t.Fatalf("re-registering a deleted host: %d %s", r.Status, r.Body)
	}
}
