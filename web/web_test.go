package web

import (
	"compress/gzip"
	"io"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

func TestServesAppWithCSPAndCaching(t *testing.T) {
	h, err := New()
	if err != nil {
		t.Fatal(err)
	}
	get := func(path string, hdr ...string) *httptest.ResponseRecorder {
		r := httptest.NewRequest("GET", path, nil)
		for i := 0; i+1 < len(hdr); i += 2 {
			r.Header.Set(hdr[i], hdr[i+1])
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w
	}
	var scripts []string
	for _, p := range []string{"/", "/login", "/p/demo/instances/web-1"} {
		w := get(p)
		if w.Code != 200 || !strings.Contains(w.Body.String(), `<div id="app">`) {
			t.Fatalf("%s: %d %s", p, w.Code, w.Body)
		}
		if w.Header().Get("Content-Security-Policy") != CSP || !strings.Contains(CSP, "script-src 'self';") || strings.Contains(CSP, "unsafe") {
			t.Fatalf("%s: CSP %q", p, w.Header().Get("Content-Security-Policy"))
		}
		if w.Header().Get("Cache-Control") != "no-cache" {
			t.Fatalf("%s: Cache-Control %q", p, w.Header().Get("Cache-Control"))
		}
		// No inline script: every <script> has a src under /assets/.
		if regexp.MustCompile(`<script(?:\s[^>]*)?>[^<]`).MatchString(w.Body.String()) || strings.Contains(w.Body.String(), "style=") {
			t.Fatalf("inline script or style in index.html: %s", w.Body)
		}
		scripts = regexp.MustCompile(`(?:src|href)="(/assets/[^"]+)"`).FindAllString(w.Body.String(), -1)
	}
	if len(scripts) < 2 {
		t.Fatalf("index.html names no assets")
	}
	for _, s := range scripts {
		path := s[strings.Index(s, `"`)+1 : len(s)-1]
		if !regexp.MustCompile(`-[A-Z0-9]{8}\.(js|css)$`).MatchString(path) {
			t.Fatalf("asset %s has no content hash in its name", path)
		}
		w := get(path, "Accept-Encoding", "gzip, br")
		if w.Code != 200 || w.Header().Get("Cache-Control") != "public, max-age=31536000, immutable" || w.Header().Get("Content-Encoding") != "gzip" {
			t.Fatalf("%s: %d %v", path, w.Code, w.Header())
		}
		zr, err := gzip.NewReader(w.Body)
		if err != nil {
			t.Fatal(err)
		}
		plain, _ := io.ReadAll(zr)
		if id := get(path); id.Header().Get("Content-Encoding") != "" || id.Body.String() != string(plain) {
			t.Fatalf("%s: identity and gzip bodies differ", path)
		}
		if nm := get(path, "If-None-Match", w.Header().Get("ETag")); nm.Code != 304 {
			t.Fatalf("%s: If-None-Match gives %d", path, nm.Code)
		}
	}
	if w := get("/assets/nope-12345678.js"); w.Code != 404 {
		t.Fatalf("missing asset: %d", w.Code)
	}
	r := httptest.NewRequest("POST", "/", nil)
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	if w.Code != 405 {
		t.Fatalf("POST /: %d", w.Code)
	}
	n := h.FirstPageGzipBytes()
	t.Logf("first page: %d bytes gzip (goal <= 300 KiB)", n)
	if n < 1000 {
		t.Fatalf("first page %d bytes: the count misses assets", n)
	}
}

// The app never turns strings into markup: no innerHTML and friends in
// its sources (dom.js builds every element from text nodes).
func TestSourcesRenderTextOnly(t *testing.T) {
	bad := regexp.MustCompile(`innerHTML|outerHTML|insertAdjacentHTML|document\.write|\beval\(|new Function\(|setAttribute\(['"]on`)
	err := filepath.Walk("src", func(p string, info os.FileInfo, err error) error {
		if err != nil || info.IsDir() || !strings.HasSuffix(p, ".js") {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if m := bad.Find(b); m != nil {
			t.Errorf("%s uses %s: render API strings with textContent", p, m)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
