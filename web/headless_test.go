package web

import (
	"context"
	"encoding/json"
	"net/http"
	"os/exec"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// headless is a headless chromium for the web package's tests, which run
// the built app against fake APIs.
type headless struct {
	t   *testing.T
	ctx context.Context
}

// newHeadless starts chromium (skipping the test where it is not
// installed); it is closed when the test ends.
func newHeadless(t *testing.T) *headless {
	path, err := exec.LookPath("chromium")
	if err != nil {
		t.Skip("chromium is not installed (scripts/deps.sh installs Debian's chromium)")
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(path), chromedp.NoSandbox, chromedp.WindowSize(1280, 900), chromedp.UserDataDir(t.TempDir()),
		// A loaded machine (the whole suite at once) starts chromium slowly.
		chromedp.WSURLReadTimeout(2*time.Minute))
	actx, cancelA := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	ctx, cancelT := context.WithTimeout(ctx, 3*time.Minute)
	t.Cleanup(func() { cancelT(); cancel(); cancelA() })
	return &headless{t: t, ctx: ctx}
}

// eval evaluates a JavaScript expression in the page, as a string.
func (b *headless) eval(expr string) string {
	b.t.Helper()
	v, err := chromedp.Run(b.ctx, chromedp.Evaluate[string]("String("+expr+")"))
	if err != nil {
		b.t.Fatalf("%s: %v", expr, err)
	}
	return v
}

// waitFor waits up to a minute for a JavaScript predicate to hold.
func (b *headless) waitFor(what, pred string) {
	b.t.Helper()
	deadline := time.Now().Add(time.Minute)
	for b.eval("!!("+pred+")") != "true" {
		if time.Now().After(deadline) {
			b.t.Fatalf("waited a minute for %s; the page says: %s", what, b.eval("document.body.innerText"))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// navigate opens a URL.
func (b *headless) navigate(url string) error {
	return chromedp.Do(b.ctx, chromedp.Navigate(url))
}

// serveSession answers, on a fake API, a session of a member of project
// and the server information with the ID the event stream is at.
func serveSession(mux *http.ServeMux, project string, eventsAfter int) {
	mux.HandleFunc("GET /v1/session", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{"user": "u", "cloud_admin": false, "via": "cookie", "csrf_token": "x",
			"roles": []map[string]string{{"project": project, "role": "member"}}})
	})
	mux.HandleFunc("GET /v1", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{"events_after": eventsAfter})
	})
}
