package e2e

import (
	"context"
	"crypto/tls"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/input"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"

	"github.com/kumocloud/kumo/api"
	"github.com/kumocloud/kumo/client"
)

// browser is a headless chromium driven through the DevTools protocol.
type browser struct {
	t    *testing.T
	ctx  context.Context
	base string
	dir  string // screenshots

	mu  sync.Mutex
	csp []string // what the Content Security Policy refused
}

// cspViolations returns (and forgets) what the CSP refused so far.
func (b *browser) cspViolations() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	v := b.csp
	b.csp = nil
	return v
}

// newBrowser starts Debian's chromium (scripts/deps.sh installs it). The
// test skips only when chromium cannot exist here.
func newBrowser(t *testing.T, base string) *browser {
	t.Helper()
	path, err := exec.LookPath("chromium")
	if err != nil {
		t.Skip("chromium is not installed (scripts/deps.sh installs Debian's chromium): the browser tests need it")
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(path), chromedp.NoSandbox, chromedp.IgnoreCertErrors,
		chromedp.WindowSize(1280, 900), chromedp.UserDataDir(t.TempDir()),
		// A loaded machine (the whole suite at once) starts chromium slowly.
		chromedp.WSURLReadTimeout(2*time.Minute))
	actx, cancelA := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelC := chromedp.NewContext(actx)
	t.Cleanup(func() { cancelC(); cancelA() })
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("starting chromium: %v", err)
	}
	dir := os.Getenv("KUMO_SCREENSHOTS")
	if dir == "" {
		dir = t.TempDir()
	}
	os.MkdirAll(dir, 0o755)
	b := &browser{t: t, ctx: ctx, base: base, dir: dir}
	go func() {
		for m, err := range chromedp.Console(ctx) {
			if err != nil {
				return
			}
			if text := m.String(); strings.Contains(text, "Content Security Policy") {
				b.mu.Lock()
				b.csp = append(b.csp, text)
				b.mu.Unlock()
			}
		}
	}()
	return b
}

func (b *browser) do(steps ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 60*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		b.t.Fatalf("browser: %v (at %s)", err, b.eval("location.href"))
	}
}

// eval evaluates a JavaScript expression to a string.
func (b *browser) eval(expr string) string {
	ctx, cancel := context.WithTimeout(b.ctx, 10*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[string]("String("+expr+")"))
	if err != nil {
		return "error: " + err.Error()
	}
	return v
}

// evalAsync evaluates an expression giving a promise, to a string.
func (b *browser) evalAsync(expr string) string {
	ctx, cancel := context.WithTimeout(b.ctx, 20*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[string]("Promise.resolve("+expr+").then(String)", chromedp.EvalAwaitPromise))
	if err != nil {
		return "error: " + err.Error()
	}
	return v
}

// wait waits for a JavaScript predicate, up to d.
func (b *browser) wait(what, pred string, d time.Duration) {
	b.t.Helper()
	deadline := time.Now().Add(d)
	for b.eval("!!("+pred+")") != "true" {
		if time.Now().After(deadline) {
			b.shot("failed-" + strings.ReplaceAll(what, " ", "-"))
			b.t.Fatalf("waited %s for %s (%s); the page says: %s", d, what, pred, b.eval("document.body.innerText.slice(0, 2000)"))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// open goes to a path of the app with a full page load.
func (b *browser) open(path, readySel string) {
	b.t.Helper()
	b.do(chromedp.Navigate(b.base + path))
	b.wait(path+" loaded", "document.querySelector("+jsString(readySel)+")", 30*time.Second)
}

func (b *browser) shot(name string) {
	ctx, cancel := context.WithTimeout(b.ctx, 20*time.Second)
	defer cancel()
	buf, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		b.t.Logf("screenshot %s: %v", name, err)
		return
	}
	p := filepath.Join(b.dir, name+".png")
	os.WriteFile(p, buf, 0o644)
}

func (b *browser) fill(sel, value string) {
	b.t.Helper()
	b.do(chromedp.SetValue(chromedp.CSS(sel), value))
}

func (b *browser) login(user, password string) {
	b.t.Helper()
	b.open("/", "#login-user")
	b.do(chromedp.SendKeys(chromedp.CSS("#login-user"), user), chromedp.SendKeys(chromedp.CSS("#login-pass"), password), chromedp.Click(chromedp.CSS("#login-submit")))
	b.wait("the app after login", "document.querySelector('#logout')", 30*time.Second)
}

func jsString(s string) string { return fmt.Sprintf("%q", s) }

// xss is put in every field a tenant controls that the API takes it in.
const xss = `<img src=x onerror="window.__xss=1"><script>window.__xss=1</script>"'>`

// TestWebConsole drives the web console in a real browser against a real
// server with the container driver: log in, create a container and watch
// it reach RUNNING without a reload, upload an image with progress, make a
// network and a security rule, see usage; hostile strings stay text; a
// member of another project sees none of it; logging out ends the session.
func TestWebConsole(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("runc containers need root; CI runs as root")
	}
	s := startServer(t, "--drivers", "container")
	root := []string{"KUMO_SOCKET=" + s.socket}
	dir := t.TempDir()
	img := filepath.Join(dir, "tiny-rootfs.tar.gz")
	must(t, root, "", "image", "build", "tiny-rootfs", "-f", img)
	must(t, root, "", "image", "import", img, "--name", "tiny", "--public")
	ctx := context.Background()
	adm := client.Socket(s.socket)
	for _, u := range []string{"alice", "bob"} {
		if _, err := adm.CreateUser(ctx, api.UsersPost{Name: u, Password: "password-" + u}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := adm.CreateProject(ctx, api.ProjectsPost{Name: "other"}); err != nil {
		t.Fatal(err)
	}
	if _, err := adm.SetMember(ctx, "default", "alice", "member"); err != nil {
		t.Fatal(err)
	}
	if _, err := adm.SetMember(ctx, "other", "bob", "admin"); err != nil {
		t.Fatal(err)
	}

	b := newBrowser(t, s.url())
	b.login("alice", "password-alice")
	b.wait("the dashboard", "document.querySelector('h1') && document.querySelector('h1').textContent.includes('Dashboard')", 30*time.Second)
	b.shot("dashboard")

	// The session cookie has its flags; the page cannot read the token.
	cookies, err := chromedp.Call(b.ctx, network.GetCookies, network.GetCookiesParams{URLs: []string{s.url()}})
	if err != nil {
		t.Fatal(err)
	}
	var session string
	for _, c := range cookies.Cookies {
		if c.Name == "__Host-kumo_session" {
			session = c.Value
			if !c.HTTPOnly || !c.Secure || c.SameSite != network.CookieSameSiteStrict || c.Path != "/" {
				t.Fatalf("session cookie flags: %+v", c)
			}
		}
	}
	if session == "" || strings.Contains(b.eval("document.cookie"), session) {
		t.Fatalf("session cookie missing or readable by the page: %v / %s", cookies.Cookies, b.eval("document.cookie"))
	}

	t.Run("create a container and watch it run", func(t *testing.T) {
		b.t = t
		b.open("/p/default/instances/new", "#create-instance")
		b.fill("#create-instance [name=name]", "web-1")
		b.fill("#create-instance [name=flavor]", "tiny")
		b.fill("#create-instance [name=image]", "tiny")
		b.fill("#create-instance [name=labels]", "app=web, note="+xss)
		b.fill("#create-instance [name=user_data]", "echo "+xss)
		b.shot("create")
		b.do(chromedp.Click(chromedp.CSS("#create-instance button[type=submit]")))
		b.wait("the instance page", "location.pathname === '/p/default/instances/web-1'", 60*time.Second)
		// To the list without a reload, then watch the row change as the
		// instance does: only the event stream can tell the page.
		b.do(chromedp.Click(chromedp.CSS(`nav a[href="/p/default/instances"]`)))
		b.wait("the list", "document.querySelector('#instances tr[data-name=\"web-1\"]')", 30*time.Second)
		b.eval("window.__noReload = 'yes'")
		row := `document.querySelector('#instances tr[data-name="web-1"]').dataset.state`
		b.wait("web-1 RUNNING", row+" === 'RUNNING'", 2*time.Minute)
		if _, err := adm.InstanceAction(ctx, "default", "web-1", api.ActionStop); err != nil {
			t.Fatal(err)
		}
		b.wait("web-1 STOPPED", row+" === 'STOPPED'", 2*time.Minute)
		if _, err := adm.InstanceAction(ctx, "default", "web-1", api.ActionStart); err != nil {
			t.Fatal(err)
		}
		b.wait("web-1 RUNNING again", row+" === 'RUNNING'", 2*time.Minute)
		if got := b.eval("window.__noReload"); got != "yes" {
			t.Fatalf("the page reloaded (marker %q)", got)
		}
		b.shot("instances")
		// Nothing fits: the form shows the scheduler's explain.
		b.open("/p/default/instances/new", "#create-instance")
		b.fill("#create-instance [name=name]", "web-2")
		b.fill("#create-instance [name=requirements]", `RACK = "nowhere"`)
		b.do(chromedp.Click(chromedp.CSS("#create-instance button[type=submit]")))
		b.wait("the explain answer", "document.querySelector('#create-result .explain table')", time.Minute)
		if text := b.eval("document.querySelector('#create-result').textContent"); !strings.Contains(text, "Nothing fits web-2") || !strings.Contains(text, "RACK") {
			t.Fatalf("the explain answer: %s", text)
		}
		b.shot("create-nothing-fits")
		// A destructive action asks first; cancelling does nothing.
		b.open("/p/default/instances/web-2", "button[data-action=terminate]")
		b.do(chromedp.Click(chromedp.CSS("button[data-action=terminate]")))
		b.wait("the confirmation", "document.querySelector('dialog.confirm[open]')", 10*time.Second)
		b.do(chromedp.Click(chromedp.CSS("dialog.confirm button[value=cancel]")))
		b.wait("the dialog gone", "!document.querySelector('dialog.confirm')", 10*time.Second)
		if in, err := adm.Instance(ctx, "default", "web-2"); err != nil || in.State != api.StatePending {
			t.Fatalf("web-2 after a cancelled terminate: %v %v", in.State, err)
		}
		b.do(chromedp.Click(chromedp.CSS("button[data-action=terminate]")))
		b.do(chromedp.Click(chromedp.CSS("dialog.confirm button[value=ok]")))
		b.wait("web-2 going", "document.querySelector('.page-head .state') && !['PENDING'].includes(document.querySelector('.page-head .state').textContent)", time.Minute)
		b.open("/p/default/instances/web-1", ".timeline li")
		b.wait("the history", "document.querySelectorAll('.timeline li').length >= 4", 30*time.Second)
		b.shot("instance")
	})

	t.Run("upload an image with progress", func(t *testing.T) {
		b.t = t
		b.open("/p/default/images", "#upload-form")
		b.eval(`(() => { window.__progress = []; new MutationObserver(() => window.__progress.push(document.querySelector('#upload-progress').value))
			.observe(document.querySelector('#upload-progress'), {attributes: true}); return 1; })()`)
		b.fill("#image-name", "uploaded")
		b.fill("#image-kind", "container-rootfs")
		b.fill("#image-format", "tar.gz")
		// A slow link (the browser's own throttle), so the upload takes a
		// few seconds and its progress has steps to show.
		if _, err := chromedp.Call(b.ctx, emulateNetwork, networkConditions{UploadThroughput: 256 << 10, DownloadThroughput: -1}); err != nil {
			t.Fatal(err)
		}
		b.do(chromedp.SetUploadFiles(chromedp.CSS("#image-file"), []string{img}))
		b.do(chromedp.Click(chromedp.CSS("#upload-form button[type=submit]")))
		b.wait("the upload's end", "document.querySelector('#upload-form [role=status]').textContent.includes('Uploaded uploaded')", 2*time.Minute)
		if p := b.eval("document.querySelector('#upload-progress').value"); p != "100" || !strings.Contains(b.eval("document.querySelector('#upload-pct').textContent"), "100% (") {
			t.Fatalf("progress at the end: %s %s", p, b.eval("document.querySelector('#upload-pct').textContent"))
		}
		seen := b.eval("window.__progress.join(' ')")
		t.Logf("upload progress seen: %s", seen)
		if !strings.Contains(" "+seen+" ", " 100 ") || len(strings.Fields(seen)) < 3 {
			t.Fatalf("the progress bar did not move in steps: %q", seen)
		}
		chromedp.Call(b.ctx, emulateNetwork, networkConditions{UploadThroughput: -1, DownloadThroughput: -1})
		b.wait("the image active", `[...document.querySelectorAll('[data-status]')].some(e => e.dataset.status === 'active' && e.closest('tr').textContent.includes('uploaded'))`, time.Minute)
		b.shot("images")
		if im, err := adm.Image(ctx, "default", "uploaded"); err != nil || im.Status != api.ImageActive {
			t.Fatalf("the uploaded image: %+v %v", im, err)
		}
	})

	t.Run("network and security rule", func(t *testing.T) {
		b.t = t
		b.open("/p/default/networks", "#net-name")
		b.fill("#net-name", "webnet")
		b.fill("#net-cidr", "10.77.0.0/24")
		b.fill("form.inline [name=labels]", "x="+xss)
		b.do(chromedp.Click(chromedp.CSS("form.inline button[type=submit]")))
		b.wait("the network listed", "document.querySelector('main table').textContent.includes('10.77.0.0/24')", 30*time.Second)
		b.shot("networks")
		b.open("/p/default/security-groups", "#sg-name")
		b.fill("#sg-name", "websg")
		b.fill("form.inline [name=description]", xss)
		b.do(chromedp.Click(chromedp.CSS("form.inline button[type=submit]")))
		b.wait("the group listed", `document.querySelector('main table a[href="/p/default/security-groups/websg"]')`, 30*time.Second)
		b.do(chromedp.Click(chromedp.CSS(`main table a[href="/p/default/security-groups/websg"]`)))
		b.wait("the group page", "document.querySelector('#rule-form')", 30*time.Second)
		b.fill("#rule-port-min", "22")
		b.fill("#rule-cidr", "192.0.2.0/24")
		b.do(chromedp.Click(chromedp.CSS("#rule-form button[type=submit]")))
		b.wait("the rule listed", "document.querySelector('main table').textContent.includes('ingress tcp 22 192.0.2.0/24')", 30*time.Second)
		b.shot("security-group")
		g, err := adm.SecurityGroup(ctx, "default", "websg")
		if err != nil || !slices.ContainsFunc(g.Rules, func(r api.SecurityRule) bool {
			return r.Direction == "ingress" && r.PortMin == 22 && r.RemoteCIDR == "192.0.2.0/24"
		}) {
			t.Fatalf("the rule in the API: %+v %v", g, err)
		}
	})

	t.Run("usage", func(t *testing.T) {
		b.t = t
		b.open("/p/default/usage", "#usage-total")
		b.wait("a chart", "document.querySelector('figure.chart svg rect')", 30*time.Second)
		if href := b.eval("document.querySelector('#usage-csv').href"); !strings.HasPrefix(href, "blob:") {
			t.Fatalf("CSV link: %s", href)
		}
		b.shot("usage")
	})

	t.Run("hostile strings stay text", func(t *testing.T) {
		b.t = t
		// Some more fields, through the API.
		if _, err := adm.CreateImage(ctx, "default", api.ImagesPost{Name: "evil", Kind: "container-rootfs", Labels: map[string]string{"x": xss}, Properties: map[string]string{"p": xss}}); err != nil {
			t.Logf("image with hostile labels refused by the API: %v", err)
		}
		for _, page := range []struct{ path, ready string }{
			{"/p/default/instances", "#instances tr[data-name]"},
			{"/p/default/instances/web-1", "dl.props"},
			{"/p/default/networks", "main table"},
			{"/p/default/security-groups", "main table"},
			{"/p/default/images", "main table"},
			{"/p/default/events", "main table"},
			{"/p/default/dashboard", "main table"},
		} {
			b.open(page.path, page.ready)
			b.wait("the page's data", "document.querySelector('main').textContent.length > 50", 30*time.Second)
			bad := b.eval(`[window.__xss, document.querySelectorAll('img[src="x"], main script').length].join()`)
			if bad != ",0" {
				t.Fatalf("%s: markup from data came alive: %s", page.path, bad)
			}
		}
		// ... and they are shown as the text they are.
		b.open("/p/default/instances/web-1", "dl.props")
		if !strings.Contains(b.eval("document.querySelector('main').textContent"), `note=<img src=x onerror="window.__xss=1">`) {
			t.Fatalf("the label is not shown as text: %s", b.eval("document.querySelector('main').textContent"))
		}
	})

	// The app lives within its policy: nothing refused on any page so far
	// (hostile strings included).
	if v := b.cspViolations(); len(v) > 0 {
		t.Errorf("the Content Security Policy refused: %q", v)
	}
	t.Run("on a phone", func(t *testing.T) {
		b.t = t
		b.do(chromedp.EmulateViewport(390, 844, chromedp.EmulateMobile))
		b.open("/p/default/instances", "#instances tr[data-name]")
		if w := b.eval("document.documentElement.scrollWidth <= window.innerWidth + 1"); w != "true" {
			t.Errorf("the page is wider than a phone: %s > %s", b.eval("document.documentElement.scrollWidth"), b.eval("window.innerWidth"))
		}
		b.do(chromedp.Click(chromedp.CSS(".menu-toggle")))
		b.wait("the menu open", "getComputedStyle(document.querySelector('#nav')).display !== 'none'", 10*time.Second)
		b.shot("phone")
		b.do(chromedp.EmulateViewport(1280, 900))
	})

	t.Run("console", func(t *testing.T) {
		b.t = t
		if !consoleIsWebSocket(t, s.url(), session) {
			t.Skip("this build's console endpoint does not speak WebSocket yet (the console backend, branch h-console)")
		}
		b.open("/p/default/instances/web-1/console?kind=shell", "#console")
		b.wait("the console open", "document.querySelector('#console').dataset.state === 'open'", time.Minute)
		b.do(chromedp.Click(chromedp.CSS("#console")))
		// Typed as a keyboard would: the text, then Enter.
		if _, err := chromedp.Call(b.ctx, input.InsertText, input.InsertTextParams{Text: "echo hel''lo"}); err != nil {
			t.Fatal(err)
		}
		for _, typ := range []input.DispatchKeyEventType{input.DispatchKeyEventTypeRawKeyDown, input.DispatchKeyEventTypeKeyUp} {
			if _, err := chromedp.Call(b.ctx, input.DispatchKeyEvent, input.DispatchKeyEventParams{Type: typ, Key: "Enter", Code: "Enter", WindowsVirtualKeyCode: 13, NativeVirtualKeyCode: 13}); err != nil {
				t.Fatal(err)
			}
		}
		term := `(() => { const b = window.kumoTerminal.buffer.active; let s = ''; for (let i = 0; i < b.length; i++) s += b.getLine(i).translateToString(true) + '\n'; return s; })()`
		b.wait("hello in the terminal", term+".split('\\n').some(l => l.trim() === 'hello')", time.Minute)
		b.shot("console")
	})

	t.Run("another project sees none of it", func(t *testing.T) {
		b.t = t
		b.do(chromedp.Click(chromedp.CSS("#logout")))
		b.wait("the login page", "location.pathname === '/login'", 30*time.Second)
		// The revoked session is refused, by the page and by anyone holding the cookie.
		if st := b.evalAsync(`fetch('/v1/projects/default/instances').then(r => r.status)`); st != "401" {
			t.Fatalf("after logout the page's own request gets %s", st)
		}
		if st := cookieStatus(t, s.url()+"/v1/projects/default/instances", session); st != 401 {
			t.Fatalf("the logged-out session cookie still works: %d", st)
		}
		b.login("bob", "password-bob")
		if opts := b.eval(`[...document.querySelectorAll('#project-picker option')].map(o => o.value).join()`); strings.Contains(opts, "default") {
			t.Fatalf("bob's project picker offers default: %s", opts)
		}
		for _, p := range []string{"/p/default/instances", "/p/default/networks", "/p/default/images", "/p/default/usage", "/p/default/instances/web-1"} {
			b.open(p, "main .error, main table")
			text := b.eval("document.querySelector('main').textContent")
			if !strings.Contains(text, "not found") || strings.Contains(text, "web-1\t") || strings.Contains(text, "webnet") || strings.Contains(text, "uploaded") {
				t.Fatalf("%s as bob: %s", p, text)
			}
		}
		b.shot("other-project")
		b.open("/p/other/instances", "#instances")
		if text := b.eval("document.querySelector('main').textContent"); strings.Contains(text, "web-1") {
			t.Fatalf("bob's own project shows alice's instance: %s", text)
		}
	})
}

// emulateNetwork is Network.emulateNetworkConditions, which Debian's
// chromium has (cdproto, made from the newest protocol, only has its
// successor).
var emulateNetwork = cdp.Command[networkConditions, struct{}]{Method: "Network.emulateNetworkConditions"}

type networkConditions struct {
	Offline            bool    `json:"offline"`
	Latency            float64 `json:"latency"`
	DownloadThroughput float64 `json:"downloadThroughput"`
	UploadThroughput   float64 `json:"uploadThroughput"`
}

// cookieStatus is the status of a GET authenticated by a session cookie.
func cookieStatus(t *testing.T, url, session string) int {
	req, _ := http.NewRequest("GET", url, nil)
	req.AddCookie(&http.Cookie{Name: "__Host-kumo_session", Value: session})
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}, Timeout: 10 * time.Second}
	res, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	return res.StatusCode
}

// consoleIsWebSocket asks whether the console endpoint upgrades to WebSocket.
func consoleIsWebSocket(t *testing.T, base, session string) bool {
	req, _ := http.NewRequest("GET", base+"/v1/projects/default/instances/web-1/console?kind=shell", nil)
	req.AddCookie(&http.Cookie{Name: "__Host-kumo_session", Value: session})
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", "websocket")
	req.Header.Set("Sec-WebSocket-Version", "13")
	req.Header.Set("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
	req.Header.Set("Origin", base)
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}, Timeout: 30 * time.Second}
	res, err := hc.Do(req)
	if err != nil {
		t.Logf("console probe: %v", err)
		return false
	}
	res.Body.Close()
	return res.StatusCode == http.StatusSwitchingProtocols
}

// TestWebConsoleVMDisplay opens a VM's display in the browser (noVNC over
// the console WebSocket) and waits for its canvas to show something. TCG
// boots are slow on a loaded machine: the deadline is generous.
func TestWebConsoleVMDisplay(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("VMs' cgroups need root; CI runs as root")
	}
	if _, err := exec.LookPath("qemu-system-x86_64"); err != nil {
		t.Skip("qemu-system-x86_64 is not installed (make test installs it)")
	}
	s := startServer(t, "--drivers", "qemu")
	t.Cleanup(func() { exec.Command("pkill", "-9", "-f", filepath.Join(s.dir, "agent", "qemu")).Run() })
	root := []string{"KUMO_SOCKET=" + s.socket}
	must(t, root, "", "image", "build", "tiny-vm", "-f", filepath.Join(t.TempDir(), "tiny-vm.tar.gz"), "--import", "--public")
	must(t, root, "", "instance", "create", "vm1", "--type", "vm", "--image", "tiny-vm", "--flavor", "tiny", "--wait")

	b := newBrowser(t, s.url())
	b.login("admin", s.AdminPassword)
	b.open("/p/default/instances/vm1/console?kind=vnc", "#console")
	b.wait("the display connected", "document.querySelector('#console').dataset.state === 'open'", 2*time.Minute)
	nonBlank := `[...document.querySelectorAll('#console canvas')].some(c => {
		if (!c.width || !c.height) return false;
		const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
		for (let i = 0; i < d.length; i += 4) if (d[i] | d[i + 1] | d[i + 2]) return true;
		return false;
	})`
	b.wait("a non-blank display", nonBlank, 3*time.Minute)
	b.shot("vm-display")
}
