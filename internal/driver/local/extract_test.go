package local

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// ent is one archive entry: a file (Body), a dir, a symlink or hard link.
type ent struct {
	name string
	typ  byte
	link string
	mode int64
	body string
}

func archive(t *testing.T, es ...ent) *bytes.Buffer {
	t.Helper()
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for _, e := range es {
		h := &tar.Header{Name: e.name, Typeflag: e.typ, Linkname: e.link, Mode: e.mode}
		if e.typ == tar.TypeReg {
			h.Size = int64(len(e.body))
		}
		if h.Mode == 0 {
			h.Mode = 0o644
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		io.WriteString(tw, e.body)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return &b
}

// TestExtractNeverLeavesRoot: whatever links an archive makes - absolute
// or relative, met at an entry's own name or on the way to it, by files,
// directories (which are chmodded) or hard links - nothing outside the
// root is written, chmodded or linked, and what is inside is a real
// file or directory, not a way out.
func TestExtractNeverLeavesRoot(t *testing.T) {
	out := t.TempDir()
	hostFile, hostDir := filepath.Join(out, "file"), filepath.Join(out, "dir")
	rel := func(p string) string { return strings.Repeat("../", 24) + strings.TrimPrefix(p, "/") }
	sym := func(name, target string) ent { return ent{name: name, typ: tar.TypeSymlink, link: target} }
	file := func(name, body string) ent { return ent{name: name, typ: tar.TypeReg, body: body, mode: 0o4777} }
	dir := func(name string) ent { return ent{name: name, typ: tar.TypeDir, mode: 0o7777} }
	hard := func(name, src string) ent { return ent{name: name, typ: tar.TypeLink, link: src} }
	cases := []struct {
		name    string
		entries []ent
		wantErr string
		check   func(t *testing.T, root string)
	}{
		{"file over an absolute link", []ent{sym("x", hostFile), file("x", "evil")}, "", isFile("x", "evil")},
		{"file over a relative link", []ent{sym("x", rel(hostFile)), file("x", "evil")}, "", isFile("x", "evil")},
		{"dir over an absolute link (chmod)", []ent{sym("d", hostDir), dir("d")}, "", isDir("d")},
		{"dir over a relative link (chmod)", []ent{sym("d", rel(hostDir)), dir("d/")}, "", isDir("d")},
		{"file through an absolute link", []ent{sym("d", hostDir), file("d/x", "evil")}, `"d" goes through a symlink`, nil},
		{"file through a relative link", []ent{sym("d", rel(hostDir)), file("d/x", "evil")}, `"d" goes through a symlink`, nil},
		{"dir through a link", []ent{sym("d", hostDir), dir("d/sub")}, `"d" goes through a symlink`, nil},
		{"link through a link", []ent{sym("d", hostDir), sym("d/l", "/")}, `"d" goes through a symlink`, nil},
		{"hard link to a file through a link", []ent{sym("d", out), hard("h", "d/file")}, `"d" goes through a symlink`, nil},
		{"hard link to a link is the link", []ent{sym("l", hostFile), hard("h", "l"), file("h", "evil")}, "", isFile("h", "evil")},
		{"hard link out by name", []ent{hard("h", "../file")}, "leaves the root", nil},
		{"hard link through a link, placed", []ent{sym("d", hostDir), file("f", "x"), hard("d/h", "f")}, `"d" goes through a symlink`, nil},
		{"file over a hard link", []ent{file("a", "A"), hard("b", "a"), file("b", "B")}, "", isFile("a", "A")},
		{"absolute name", []ent{file(hostFile, "evil")}, "leaves the root", nil},
		{"name with ..", []ent{file("a/../../file", "evil")}, "leaves the root", nil},
		{"setuid and sticky bits kept", []ent{dir("t"), file("t/s", "x")}, "", func(t *testing.T, root string) {
			if st, _ := os.Stat(filepath.Join(root, "t/s")); st.Mode()&fs.ModeSetuid == 0 {
				t.Errorf("setuid bit lost: %v", st.Mode())
			}
			if st, _ := os.Stat(filepath.Join(root, "t")); st.Mode()&fs.ModeSticky == 0 {
				t.Errorf("sticky bit lost: %v", st.Mode())
			}
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			// The host side afresh (a case before may have broken it).
			os.RemoveAll(hostDir)
			os.Remove(hostFile)
			if os.WriteFile(hostFile, []byte("host"), 0o640) != nil || os.Chmod(hostFile, 0o640) != nil ||
				os.Mkdir(hostDir, 0o750) != nil || os.Chmod(hostDir, 0o750) != nil {
				t.Fatal("cannot set the host side up")
			}
			root := t.TempDir()
			err := Extract(archive(t, c.entries...), false, root, 0)
			switch {
			case c.wantErr != "" && (err == nil || !strings.Contains(err.Error(), c.wantErr)):
				t.Errorf("Extract: %v; want an error with %q", err, c.wantErr)
			case c.wantErr == "" && err != nil:
				t.Errorf("Extract: %v", err)
			}
			if b, _ := os.ReadFile(hostFile); string(b) != "host" {
				t.Errorf("the host file was written: %q", b)
			}
			var st syscall.Stat_t
			if syscall.Stat(hostFile, &st); st.Mode&0o7777 != 0o640 || st.Nlink != 1 {
				t.Errorf("the host file was chmodded or linked: mode %o, %d links", st.Mode&0o7777, st.Nlink)
			}
			es, _ := os.ReadDir(hostDir)
			if fi, _ := os.Stat(hostDir); fi.Mode() != fs.ModeDir|0o750 || len(es) != 0 {
				t.Errorf("the host dir was chmodded or written: %v, %d entries", fi.Mode(), len(es))
			}
			if c.check != nil && err == nil {
				c.check(t, root)
			}
		})
	}
}

func isFile(name, body string) func(*testing.T, string) {
	return func(t *testing.T, root string) {
		fi, err := os.Lstat(filepath.Join(root, name))
		b, _ := os.ReadFile(filepath.Join(root, name))
		if err != nil || !fi.Mode().IsRegular() || string(b) != body {
			t.Errorf("%s: %v %q %v; want a regular file holding %q", name, fi.Mode(), b, err, body)
		}
	}
}

func isDir(name string) func(*testing.T, string) {
	return func(t *testing.T, root string) {
		fi, err := os.Lstat(filepath.Join(root, name))
		if err != nil || !fi.IsDir() || fi.Mode().Perm() != 0o777 {
			t.Errorf("%s: %v %v; want a real directory, mode 7777", name, fi.Mode(), err)
		}
	}
}

// TestExtractLimit: an archive that unpacks past the limit - one huge
// file, or many that each fit - fails with the reason and leaves no more
// than the limit on disk; one under it unpacks.
func TestExtractLimit(t *testing.T) {
	const limit = 16 << 20
	zeros := func(n int) string { return string(make([]byte, n)) }
	gz := func(b *bytes.Buffer) *bytes.Buffer {
		var out bytes.Buffer
		zw := gzip.NewWriter(&out)
		io.Copy(zw, b)
		zw.Close()
		return &out
	}
	many := func(n, size int) []ent {
		var es []ent
		for i := 0; i < n; i++ {
			es = append(es, ent{name: fmt.Sprintf("f/%d", i), typ: tar.TypeReg, body: zeros(size)})
		}
		return es
	}
	cases := []struct {
		name    string
		entries []ent
		ok      bool
	}{
		{"one 64 MiB file", []ent{{name: "bomb", typ: tar.TypeReg, body: zeros(64 << 20)}}, false},
		{"twenty 4 MiB files", many(20, 4<<20), false},
		{"50,000 empty files", many(50000, 0), false},
		{"three 4 MiB files", many(3, 4<<20), true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			bomb := gz(archive(t, c.entries...))
			root := t.TempDir()
			err := Extract(bomb, true, root, limit)
			if c.ok != (err == nil) {
				t.Fatalf("Extract of %d KiB gzipped: %v", bomb.Len()>>10, err)
			}
			if !c.ok && !strings.Contains(err.Error(), "unpacks to more than 16 MiB") {
				t.Errorf("the reason: %v", err)
			}
			if used := diskUse(t, root); used > limit {
				t.Errorf("%d bytes on disk past the %d limit", used, limit)
			}
		})
	}
}

// diskUse is the space the files under dir take (their blocks).
func diskUse(t *testing.T, dir string) int64 {
	var n int64
	filepath.WalkDir(dir, func(p string, e fs.DirEntry, err error) error {
		var st syscall.Stat_t
		if err == nil && syscall.Lstat(p, &st) == nil && !e.IsDir() {
			n += st.Blocks * 512
		}
		return nil
	})
	return n
}
