package container

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/kumocloud/kumo/internal/driver"
)

// waitFor waits (generously: the machine is shared) for evidence.
func waitFor(t *testing.T, what string, f func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !f() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 60 s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// run runs a command in a container: output and exit status.
func run(t *testing.T, d *Driver, id string, cmd ...string) (string, int) {
	t.Helper()
	var out bytes.Buffer
	code, err := d.Exec(context.Background(), id, cmd, &out)
	if err != nil {
		t.Fatalf("exec %v in %s: %v", cmd, id, err)
	}
	return out.String(), code
}

// hostSide is what a hostile image aims at on the host: files and
// directories outside the driver's dirs, with known content and modes.
type hostSide struct{ dir string }

var (
	hostFiles = []string{"f-hostname", "f-userdata", "f-resolv"}
	hostDirs  = []string{"d-etc", "d-kumo", "d-evil"}
)

func newHostSide(t *testing.T) hostSide {
	h := hostSide{dir: t.TempDir()}
	for _, f := range hostFiles {
		if err := os.WriteFile(h.path(f), []byte("the host's own\n"), 0o640); err != nil {
			t.Fatal(err)
		}
	}
	for _, d := range hostDirs {
		if err := os.Mkdir(h.path(d), 0o750); err != nil {
			t.Fatal(err)
		}
	}
	return h
}

func (h hostSide) path(name string) string { return filepath.Join(h.dir, name) }

// rel is the host path as a relative link from anywhere (extra ..s stop
// at /).
func (h hostSide) rel(name string) string {
	return strings.Repeat("../", 24) + strings.TrimPrefix(h.path(name), "/")
}

// untouched checks that nothing outside changed: content, modes, and no
// new entries in the directories.
func (h hostSide) untouched(t *testing.T) bool {
	t.Helper()
	ok := true
	for _, f := range hostFiles {
		b, err := os.ReadFile(h.path(f))
		st, _ := os.Lstat(h.path(f))
		if err != nil || string(b) != "the host's own\n" || st.Mode() != 0o640 {
			t.Errorf("host file %s was changed: %q %v %v", f, b, st.Mode(), err)
			ok = false
		}
	}
	for _, d := range hostDirs {
		st, err := os.Lstat(h.path(d))
		es, _ := os.ReadDir(h.path(d))
		if err != nil || st.Mode() != os.ModeDir|0o750 || len(es) != 0 {
			t.Errorf("host dir %s was changed: mode %v, %d entries, %v", d, st.Mode(), len(es), err)
			ok = false
		}
	}
	return ok
}

// TestRootfsSymlinksStayInside: an image whose symlinks (absolute and
// relative, at the final name and on the way) point out of the root at
// every path kumo writes - the hostname, the user-data, the name servers,
// and a directory entry over a link, which extraction chmods - changes
// nothing on the host. The guest still gets its hostname, user-data and
// name servers where it looks for them: links on the way are followed
// inside the root, as the guest follows them; a link at a file's own
// name is replaced; a link on the way to nothing inside the root fails
// the PROLOG with the path.
func TestRootfsSymlinksStayInside(t *testing.T) {
	host := newHostSide(t)
	link := func(name, target string) entry { return entry{Name: name, Typeflag: tar.TypeSymlink, Linkname: target} }
	// The host's path, as a directory inside the image too.
	inside := func(name string) entry {
		return entry{Name: strings.TrimPrefix(host.path(name), "/") + "/", Typeflag: tar.TypeDir, Mode: 0o755}
	}
	evil := []entry{link("evil", host.path("d-evil")), {Name: "evil/", Typeflag: tar.TypeDir, Mode: 0o7777}}
	cases := []struct {
		name    string
		drop    []string
		extra   []entry
		wantErr string // Prepare fails, naming this
	}{
		{"final name, absolute", []string{"etc/hostname"}, append([]entry{
			link("etc/hostname", host.path("f-hostname")), link("var/lib/kumo/user-data", host.path("f-userdata")),
			link("etc/resolv.conf", host.path("f-resolv"))}, evil...), ""},
		{"final name, relative", []string{"etc/hostname"}, append([]entry{
			link("etc/hostname", host.rel("f-hostname")), link("var/lib/kumo/user-data", host.rel("f-userdata")),
			link("etc/resolv.conf", host.rel("f-resolv"))}, evil...), ""},
		{"on the way, absolute", []string{"etc", "var/lib/kumo"}, []entry{
			inside("d-etc"), inside("d-kumo"), link("etc", host.path("d-etc")), link("var/lib/kumo", host.path("d-kumo"))}, ""},
		{"on the way, relative", []string{"etc", "var/lib/kumo"}, []entry{
			inside("d-etc"), inside("d-kumo"), link("etc", host.rel("d-etc")), link("var/lib/kumo", host.rel("d-kumo"))}, ""},
		{"on the way, to nothing inside", []string{"var/lib/kumo"}, []entry{link("var/lib/kumo", host.path("d-kumo"))}, "var/lib/kumo"},
	}
	var images [][]byte
	sums := make([]string, len(cases))
	for i, c := range cases {
		var img []byte
		sums[i], img = imageWith(t, c.drop, c.extra...)
		images = append(images, img)
	}
	d := newDriver(t, t.TempDir(), serve(images...))
	t.Cleanup(func() { assertNoLeftovers(t, d) })
	ctx := context.Background()
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := spec("c-link"+string(rune('a'+i)), sums[i], 64, "echo ran > /root/ran\n")
			s.NICs = []driver.NIC{{DNS: []string{"10.9.8.7"}}}
			err := d.Prepare(ctx, s)
			defer d.Cleanup(ctx, s.ID, false)
			if !host.untouched(t) {
				t.FailNow()
			}
			if c.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), c.wantErr) {
					t.Fatalf("Prepare: %v; want an error naming %s", err, c.wantErr)
				}
				if _, err := os.Stat(d.dir(s.ID)); !os.IsNotExist(err) {
					t.Errorf("a failed Prepare left its dir: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer d.Stop(ctx, s.ID, true)
			if err := d.Start(ctx, s); err != nil {
				t.Fatal(err)
			}
			waitFor(t, "user-data ran", func() bool { out, _ := run(t, d, s.ID, "cat", "/root/ran"); return out == "ran\n" })
			if out, _ := run(t, d, s.ID, "cat", "/etc/hostname"); out != s.Name+"\n" {
				t.Errorf("the guest's /etc/hostname: %q", out)
			}
			if out, _ := run(t, d, s.ID, "hostname"); out != s.Name+"\n" {
				t.Errorf("the guest's hostname: %q", out)
			}
			if out, _ := run(t, d, s.ID, "cat", "/etc/resolv.conf"); out != "nameserver 10.9.8.7\n" {
				t.Errorf("the guest's /etc/resolv.conf: %q", out)
			}
			host.untouched(t)
		})
	}
}

// TestContainerDisk: a container cannot write past its flavor's disk
// (ENOSPC, the host's disk untouched); its files survive stop/start, a
// save whose mounts were released (no mount, no loop device left while
// it is saved) and an agent restart; terminating leaves no mount and no
// loop device.
func TestContainerDisk(t *testing.T) {
	sum, fetch := tiny(t)
	dir := t.TempDir()
	d := newDriver(t, dir, fetch)
	t.Cleanup(func() { assertNoLeftovers(t, d) })
	ctx := context.Background()
	s := spec("c-disk", sum, 256, "") // DiskGiB 1
	if err := d.Prepare(ctx, s); err != nil {
		t.Fatal(err)
	}
	defer d.Cleanup(ctx, s.ID, false)
	if err := d.Start(ctx, s); err != nil {
		t.Fatal(err)
	}
	out, code := run(t, d, s.ID, "dd", "if=/dev/zero", "of=/root/big", "bs=1M", "count=1536")
	if code == 0 || !strings.Contains(out, "No space left on device") {
		t.Fatalf("1.5 GB written on a 1 GiB disk: exit %d: %s", code, out)
	}
	if out, code := run(t, d, s.ID, "sh", "-c", "rm /root/big && echo kept > /root/kept"); code != 0 {
		t.Fatalf("the disk is not usable after it was full: %s", out)
	}
	if err := d.Save(ctx, s.ID); err != nil {
		t.Fatal(err)
	}
	if err := d.Cleanup(ctx, s.ID, true); err != nil {
		t.Fatal(err)
	}
	noMountsOrLoops(t, d)

	d = newDriver(t, dir, fetch) // an agent restart
	if err := d.Start(ctx, s); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ {
		if out, _ := run(t, d, s.ID, "cat", "/root/kept"); out != "kept\n" {
			t.Fatalf("the container's files were lost (round %d): %q", i, out)
		}
		if err := d.Stop(ctx, s.ID, false); err != nil {
			t.Fatal(err)
		}
		if err := d.Start(ctx, s); err != nil {
			t.Fatal(err)
		}
	}
	d.Stop(ctx, s.ID, true)
	if err := d.Cleanup(ctx, s.ID, false); err != nil {
		t.Fatal(err)
	}
	noMountsOrLoops(t, d)
}

// noMountsOrLoops: no mount under the driver's dir and no loop device
// backed by a file there.
func noMountsOrLoops(t *testing.T, d *Driver) {
	t.Helper()
	if mi, _ := os.ReadFile("/proc/self/mountinfo"); strings.Contains(string(mi), d.root) {
		t.Errorf("mounts left under %s", d.root)
	}
	out, err := exec.Command("losetup", "-a").CombinedOutput()
	if err != nil {
		out, err = exec.Command("/usr/sbin/losetup", "-a").CombinedOutput()
	}
	if err != nil {
		t.Errorf("losetup -a: %v %s", err, out)
	}
	if strings.Contains(string(out), d.root) {
		t.Errorf("loop devices left: %s", out)
	}
}

// probeSource calls keyctl, which Docker's default profile refuses (the
// kernel allows it to anyone): busybox has no applet that does.
const probeSource = `package main

import (
	"fmt"
	"os"
	"syscall"
)

func main() {
	// keyctl(KEYCTL_GET_KEYRING_ID, KEY_SPEC_SESSION_KEYRING, create)
	_, _, e := syscall.RawSyscall(syscall.SYS_KEYCTL, 0, ^uintptr(2), 1)
	if e != 0 {
		fmt.Println("keyctl:", e)
		os.Exit(1)
	}
	fmt.Println("keyctl: ok")
}
`

// buildProbe builds the keyctl probe as a static binary.
func buildProbe(t *testing.T) []byte {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "main.go"), []byte(probeSource), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(filepath.Join(runtime.GOROOT(), "bin", "go"), "build", "-o", "probe", "main.go")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOFLAGS=", "GO111MODULE=off")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building the probe: %v: %s", err, out)
	}
	// Without a profile the kernel allows it: the check below can fail.
	if out, err := exec.Command(filepath.Join(dir, "probe")).CombinedOutput(); err != nil || string(out) != "keyctl: ok\n" {
		t.Fatalf("keyctl on the host: %v %s", err, out)
	}
	b, err := os.ReadFile(filepath.Join(dir, "probe"))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestContainerConfinement: containers run under Docker's default seccomp
// profile and in a cgroup namespace, and make no user namespace unless
// their flavor allows nesting - which relaxes only the namespace and
// mount calls.
func TestContainerConfinement(t *testing.T) {
	sum, img := imageWith(t, nil, entry{Name: "bin/probe", Typeflag: tar.TypeReg, Mode: 0o755, Body: buildProbe(t)})
	d := newDriver(t, t.TempDir(), serve(img))
	t.Cleanup(func() { assertNoLeftovers(t, d) })
	ctx := context.Background()
	plain, nested := spec("c-plain", sum, 64, ""), spec("c-nested", sum, 64, "")
	nested.Nesting = true
	for _, s := range []driver.Spec{plain, nested} {
		if err := d.Prepare(ctx, s); err != nil {
			t.Fatal(err)
		}
		defer d.Cleanup(ctx, s.ID, false)
		defer d.Stop(ctx, s.ID, true)
		if err := d.Start(ctx, s); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range []struct {
		what          string
		cmd           []string
		plain, nested bool // whether it works
	}{
		{"a user namespace", []string{"unshare", "-U", "-r", "true"}, false, true},
		{"a mount in a user namespace", []string{"unshare", "-U", "-r", "-m", "sh", "-c", "mount -t tmpfs none /tmp && echo mounted"}, false, true},
		{"keyctl (Docker's profile refuses it)", []string{"/bin/probe"}, false, false},
		{"a plain command", []string{"true"}, true, true},
	} {
		for _, in := range []struct {
			s    driver.Spec
			want bool
		}{{plain, c.plain}, {nested, c.nested}} {
			out, code := run(t, d, in.s.ID, c.cmd...)
			if (code == 0) != in.want {
				t.Errorf("%s in %s: exit %d, want it to work: %v; %s", c.what, in.s.Name, code, in.want, out)
			}
		}
	}
	if out, _ := run(t, d, plain.ID, "/bin/probe"); !strings.Contains(out, "operation not permitted") {
		t.Errorf("keyctl was not refused by the profile: %q", out)
	}
	// The cgroup namespace: the container's cgroup is its root, while the
	// host sees it at /kumo/<id>.
	out, _ := run(t, d, plain.ID, "cat", "/proc/self/cgroup")
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		if !strings.HasSuffix(l, ":/") {
			t.Errorf("/proc/self/cgroup in the container is not namespaced: %q", out)
			break
		}
	}
	st, err := d.runcCmd(ctx, "state", plain.ID)
	var state struct{ Pid int }
	if err != nil || json.Unmarshal(st, &state) != nil || state.Pid == 0 {
		t.Fatalf("runc state: %v %s", err, st)
	}
	if b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", state.Pid)); !strings.Contains(string(b), d.cgroups.Path(plain.ID)) {
		t.Errorf("the host does not see the container in %s: %s", d.cgroups.Path(plain.ID), b)
	}
}

// TestResolvConf: a container's resolv.conf names its networks' servers
// and searches their domains.
func TestResolvConf(t *testing.T) {
	got := resolvConf([]driver.NIC{{DNS: []string{"10.20.0.1"}, Domain: "app.kumo.internal"}, {DNS: []string{"10.20.0.1", "10.30.0.1"}, Domain: "db.kumo.internal"}, {}})
	want := "nameserver 10.20.0.1\nnameserver 10.30.0.1\nsearch app.kumo.internal db.kumo.internal\n"
	if got != want {
		t.Fatalf("resolv.conf:\n%s\nwant:\n%s", got, want)
	}
	if got := resolvConf([]driver.NIC{{Domain: "x.kumo.internal"}}); got != "" {
		t.Fatalf("no servers, no resolv.conf: %q", got)
	}
}
