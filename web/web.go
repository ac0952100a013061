// Package web is kumo's web console: a single-page app (web/src, built by
// `make web` into web/dist, which is committed) embedded in the binary and
// served by the API's listener at every path outside the API.
package web

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"io/fs"
	"mime"
	"net/http"
	"path"
	"strconv"
	"strings"
)

//go:embed dist
var dist embed.FS

// CSP is the Content Security Policy of every page and asset: scripts and
// styles only from the app's own files (no inline script or style), data
// only from this site, no framing.
const CSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; font-src 'self'; " +
	"connect-src 'self'; worker-src 'self' blob:; manifest-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"

type asset struct {
	body, gz    []byte
	contentType string
	etag        string
}

// Handler serves the app: /assets/* are the hashed bundles (immutable,
// cached for a year), every other path is index.html (no-cache), so the
// app's own routes load it. Both go gzip-compressed when the browser takes
// it.
type Handler struct {
	assets map[string]*asset
	index  *asset
}

// New loads and compresses the embedded app once.
func New() (*Handler, error) {
	h := &Handler{assets: map[string]*asset{}}
	err := fs.WalkDir(dist, "dist", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := dist.ReadFile(p)
		if err != nil {
			return err
		}
		a := &asset{body: b, contentType: mime.TypeByExtension(path.Ext(p))}
		if strings.HasSuffix(p, ".LEGAL.txt") {
			a.contentType = "text/plain; charset=utf-8"
		}
		sum := sha256.Sum256(b)
		a.etag = `"` + hex.EncodeToString(sum[:8]) + `"`
		var buf bytes.Buffer
		zw, _ := gzip.NewWriterLevel(&buf, gzip.BestCompression)
		zw.Write(b)
		zw.Close()
		if buf.Len() < len(b) {
			a.gz = buf.Bytes()
		}
		h.assets[strings.TrimPrefix(p, "dist")] = a
		return nil
	})
	h.index = h.assets["/index.html"]
	delete(h.assets, "/index.html")
	return h, err
}

// FirstPageGzipBytes is what a browser downloads, compressed, to show the
// first page: index.html and the assets it names (the stylesheet, the
// entry and the chunks it imports at load time; bundles split off for
// later pages, like the console's, are not counted).
func (h *Handler) FirstPageGzipBytes() int {
	n := h.index.size()
	for name, a := range h.assets {
		if bytes.Contains(h.index.body, []byte(`"`+name+`"`)) {
			n += a.size()
		}
	}
	return n
}

func (a *asset) size() int {
	if a.gz != nil {
		return len(a.gz)
	}
	return len(a.body)
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	hd := w.Header()
	hd.Set("Content-Security-Policy", CSP)
	hd.Set("X-Content-Type-Options", "nosniff")
	hd.Set("Referrer-Policy", "no-referrer")
	hd.Set("X-Frame-Options", "DENY")
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		hd.Set("Allow", "GET, HEAD")
		http.Error(w, "the web console only answers GET", http.StatusMethodNotAllowed)
		return
	}
	a := h.index
	if strings.HasPrefix(r.URL.Path, "/assets/") {
		var ok bool
		if a, ok = h.assets[r.URL.Path]; !ok {
			http.Error(w, "no such asset", http.StatusNotFound)
			return
		}
		hd.Set("Cache-Control", "public, max-age=31536000, immutable")
	} else {
		hd.Set("Cache-Control", "no-cache")
	}
	hd.Set("Content-Type", a.contentType)
	hd.Set("ETag", a.etag)
	hd.Add("Vary", "Accept-Encoding")
	if match := r.Header.Get("If-None-Match"); match != "" && match == a.etag {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	body := a.body
	if a.gz != nil && acceptsGzip(r) {
		hd.Set("Content-Encoding", "gzip")
		body = a.gz
	}
	hd.Set("Content-Length", strconv.Itoa(len(body)))
	if r.Method == http.MethodHead {
		return
	}
	w.Write(body)
}

func acceptsGzip(r *http.Request) bool {
	for _, part := range strings.Split(r.Header.Get("Accept-Encoding"), ",") {
		enc, q, _ := strings.Cut(strings.TrimSpace(part), ";")
		if strings.EqualFold(strings.TrimSpace(enc), "gzip") && strings.TrimSpace(q) != "q=0" {
			return true
		}
	}
	return false
}
