package server

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/kumocloud/kumo/api"
)

// rootfsTarball is a small valid container rootfs.
func rootfsTarball(t *testing.T) string {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	tw.WriteHeader(&tar.Header{Name: "bin/busybox", Typeflag: tar.TypeReg, Mode: 0o755, Size: 3})
	tw.Write([]byte("elf"))
	tw.Close()
	zw.Close()
	return buf.String()
}

// TestImageNameSquatting, through the API: a tenant project named to sort
// first cannot publish, and its unsolicited share of "tiny" changes
// nothing for the project it targets until that project accepts it; then
// the bare name is ambiguous (409 listing OWNER/NAME), never silently the
// attacker's. An instance keeps the image it resolved to as OWNER/NAME, so
// the owner cannot delete it while it is in use from another project.
func TestImageNameSquatting(t *testing.T) {
	ts := newTestServer(t)
	for _, p := range []string{"aaa", "vic"} {
		ts.project(p)
	}
	admin := ts.user("cadmin", true)
	att := ts.user("mallory", false, "aaa", "member")
	vic := ts.user("victor", false, "vic", "member")
	upload := func(token, project, name string) {
		t.Helper()
		if r := ts.do("PUT", "/v1/projects/"+project+"/images/"+name+"/file", token, rootfsTarball(t), "Content-Type", "application/octet-stream"); r.Status != 200 {
			t.Fatalf("upload %s/%s: %d %s", project, name, r.Status, r.Body)
		}
	}
	if r := ts.do("POST", "/v1/projects/default/images", admin, api.ImagesPost{Name: "tiny", Kind: api.KindContainerRootfs, Visibility: api.VisibilityPublic}); r.Status != 201 {
		t.Fatalf("the cloud admin publishes: %d %s", r.Status, r.Body)
	}
	upload(admin, "default", "tiny")

	// A tenant may not publish: create, change, or snapshot.
	if r := ts.do("POST", "/v1/projects/aaa/images", att, api.ImagesPost{Name: "tiny", Kind: api.KindContainerRootfs, Visibility: api.VisibilityPublic}); r.Status != 403 || !strings.Contains(r.errBody(t).Message, "only a cloud admin may make an image public") {
		t.Fatalf("a tenant publishes: %d %s", r.Status, r.Body)
	}
	if r := ts.do("POST", "/v1/projects/aaa/images", att, api.ImagesPost{Name: "tiny", Kind: api.KindContainerRootfs, Visibility: api.VisibilityShared, SharedWith: []string{"vic"}}); r.Status != 201 {
		t.Fatalf("a tenant shares: %d %s", r.Status, r.Body)
	}
	upload(att, "aaa", "tiny")
	if r := ts.do("PATCH", "/v1/projects/aaa/images/tiny", att, map[string]any{"visibility": "public"}); r.Status != 403 {
		t.Fatalf("a tenant makes its image public: %d %s", r.Status, r.Body)
	}

	show := func() resp { return ts.do("GET", "/v1/projects/vic/images/tiny", vic, nil) }
	var img api.Image
	if r := show(); r.Status != 200 {
		t.Fatalf("vic's tiny: %d %s", r.Status, r.Body)
	} else if r.decode(t, &img); img.Project != "default" {
		t.Fatalf("with aaa's share pending, vic's tiny is %s's", img.Project)
	}
	if r := ts.do("GET", "/v1/projects/vic/images", vic, nil); strings.Contains(string(r.Body), `"project":"aaa"`) {
		t.Fatalf("a pending share is listed as usable: %s", r.Body)
	}
	var shares api.List[api.ImageShare]
	ts.do("GET", "/v1/projects/vic/image-shares", vic, nil).decode(t, &shares)
	if len(shares.Items) != 1 || shares.Items[0].Image != "aaa/tiny" || shares.Items[0].Status != api.SharePending {
		t.Fatalf("vic's offers: %+v", shares.Items)
	}
	var in api.Instance
	if r := ts.do("POST", "/v1/projects/vic/instances", vic, api.InstancesPost{Name: "c1", Type: "container", Flavor: "tiny", Image: "tiny"}); r.Status != 201 {
		t.Fatalf("create from tiny: %d %s", r.Status, r.Body)
	} else if r.decode(t, &in); in.Image != "default/tiny" {
		t.Fatalf("the instance keeps image %q, not the one it resolved to", in.Image)
	}
	// Only vic's members answer for vic.
	if r := ts.do("PUT", "/v1/projects/vic/image-shares/aaa/tiny", att, api.ImageSharePut{Status: "accepted"}); r.Status != 404 {
		t.Fatalf("the offerer accepts for vic: %d %s", r.Status, r.Body)
	}
	if r := ts.do("PUT", "/v1/projects/vic/image-shares/aaa/tiny", vic, api.ImageSharePut{Status: "accepted"}); r.Status != 200 {
		t.Fatalf("vic accepts: %d %s", r.Status, r.Body)
	}
	if r := show(); r.Status != 409 || !strings.Contains(r.errBody(t).Message, "aaa/tiny, default/tiny") {
		t.Fatalf("an ambiguous name: %d %s", r.Status, r.Body)
	}
	if r := ts.do("POST", "/v1/projects/vic/instances", vic, api.InstancesPost{Name: "c2", Type: "container", Flavor: "tiny", Image: "tiny"}); r.Status != 409 {
		t.Fatalf("create from an ambiguous name: %d %s", r.Status, r.Body)
	}
	if r := ts.do("POST", "/v1/projects/vic/instances", vic, api.InstancesPost{Name: "c2", Type: "container", Flavor: "tiny", Image: "aaa/tiny"}); r.Status != 201 {
		t.Fatalf("create from aaa/tiny: %d %s", r.Status, r.Body)
	} else if r.decode(t, &in); in.Image != "aaa/tiny" {
		t.Fatalf("the instance keeps image %q", in.Image)
	}
	if r := ts.do("GET", "/v1/projects/vic/images/aaa%2Ftiny", vic, nil); r.Status != 200 {
		t.Fatalf("OWNER/NAME: %d %s", r.Status, r.Body)
	}
	// vic's instance uses aaa's image: aaa cannot delete it (once compute's
	// cache, fed by a watch, has the instance).
	for i := 0; ; i++ {
		if n, err := ts.s.compute.ImageUsers(context.Background(), "aaa", "tiny"); err == nil && n == 1 {
			break
		} else if i == 500 {
			t.Fatalf("compute never counted vic's instance as a user of aaa/tiny: %d %v", n, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if r := ts.do("DELETE", "/v1/projects/aaa/images/tiny", att, nil); r.Status != 409 || !strings.Contains(string(r.Body), "used by 1 instances") {
		t.Fatalf("deleting an image another project's instance uses: %d %s", r.Status, r.Body)
	}
}

// TestAPIAnswersAreNotPages: a browser holding a console session must
// never render an API answer as a page of the console's origin - not a
// tenant's image bytes (an HTML file uploaded as an image), not an error
// that echoes a name.
func TestAPIAnswersAreNotPages(t *testing.T) {
	ts := newTestServer(t)
	ts.project("p")
	tok := ts.user("u", false, "p", "member")
	if r := ts.do("POST", "/v1/projects/p/images", tok, api.ImagesPost{Name: "page", Kind: api.KindContainerRootfs}); r.Status != 201 {
		t.Fatalf("create: %d %s", r.Status, r.Body)
	}
	if r := ts.do("PUT", "/v1/projects/p/images/page/file", tok, rootfsTarball(t), "Content-Type", "application/octet-stream"); r.Status != 200 {
		t.Fatalf("upload: %d %s", r.Status, r.Body)
	}
	for _, tc := range []struct {
		path        string
		disposition string
	}{
		{"/v1/projects/p/images/page/file", `attachment; filename=page`},
		{"/v1/projects/p/instances/%3Cscript%3E", ""},
	} {
		r := ts.do("GET", tc.path, tok, nil)
		if got := r.Header.Get("X-Content-Type-Options"); got != "nosniff" {
			t.Errorf("%s: X-Content-Type-Options %q", tc.path, got)
		}
		if got := r.Header.Get("Content-Security-Policy"); !strings.Contains(got, "sandbox") || !strings.Contains(got, "default-src 'none'") {
			t.Errorf("%s: Content-Security-Policy %q", tc.path, got)
		}
		if got := r.Header.Get("Content-Disposition"); got != tc.disposition {
			t.Errorf("%s: Content-Disposition %q, want %q", tc.path, got, tc.disposition)
		}
	}
}
