package server

import (
	"context"
	"strings"
	"testing"

	"github.com/kumocloud/kumo/api"
)

// Names a request body carries resolve in the project of its path only:
// project q's admin, naming project p's backup, snapshot, instance,
// volume or private image in q's requests, is told they do not exist in
// q (404, or 400 naming the field), never given them or told they exist
// elsewhere.
func TestBodyNamesStayInTheirProject(t *testing.T) {
	f := newFixture(t)
	ts, q := f.ts, f.tokens["qA"]
	var qv api.Volume
	if r := ts.do("POST", "/v1/projects/q/volumes", q, map[string]any{"name": "qv", "size_gib": 1}); r.Status != 201 {
		t.Fatalf("q's own volume: %d %s", r.Status, r.Body)
	} else {
		r.decode(t, &qv)
	}
	// Made by its host.
	if err := ts.s.volumes.Report(context.Background(), map[string]bool{qv.Host: true}, liveInstances{ts.s.compute}, []api.VolumeReport{{ID: qv.ID, Status: "ready", SizeGiB: 1}}); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		what, method, path string
		body               any
		want               int
	}{
		{"a volume restored from p's backup", "POST", "/v1/projects/q/volumes", map[string]any{"name": "x1", "size_gib": 1, "backup": "b1"}, 404},
		{"a volume made from p's snapshot", "POST", "/v1/projects/q/volumes", map[string]any{"name": "x2", "size_gib": 1, "snapshot": "v3/s1"}, 404},
		{"a volume near p's instance", "POST", "/v1/projects/q/volumes", map[string]any{"name": "x3", "size_gib": 1, "near": "i1"}, 404},
		{"a volume of p's private image", "POST", "/v1/projects/q/volumes", map[string]any{"name": "x4", "size_gib": 1, "image": "p/img1"}, 404},
		{"q's volume attached to p's instance", "POST", "/v1/projects/q/volumes/qv/attach", map[string]any{"instance": "i1"}, 404},
		{"q's volume moved near p's instance", "POST", "/v1/projects/q/volumes/qv/move", map[string]any{"near": "i1"}, 404},
		{"q's volume reverted to p's snapshot", "POST", "/v1/projects/q/volumes/qv/revert", map[string]any{"snapshot": "s1"}, 404},
		{"an instance booting from p's volume", "POST", "/v1/projects/q/instances", map[string]any{"name": "x5", "type": "vm", "flavor": "tiny", "image": "x", "boot_volume": "v1"}, 400},
		{"p's instance backed up from q", "POST", "/v1/projects/q/instances/i1/backups", map[string]any{"name": "x6"}, 404},
		{"p's instance backup restored in q", "POST", "/v1/projects/q/instance-backups/ib1/restore", map[string]any{"name": "x7"}, 404},
	} {
		r := ts.do(c.method, c.path, q, c.body)
		if r.Status != c.want {
			t.Errorf("%s: %d %s, want %d", c.what, r.Status, r.Body, c.want)
		}
		if strings.Contains(string(r.Body), `"p"`) || strings.Contains(string(r.Body), "project \\\"p\\\"") {
			t.Errorf("%s: the answer names project p: %s", c.what, r.Body)
		}
	}
}
