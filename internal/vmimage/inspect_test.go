package vmimage

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

func needQemuImg(t *testing.T) {
	if _, err := exec.LookPath("qemu-img"); err != nil {
		t.Skip("qemu-img is not installed (make test installs qemu-utils)")
	}
}

// qemuImg runs qemu-img to craft a test image.
func qemuImg(t *testing.T, args ...string) {
	t.Helper()
	for try := 1; ; try++ {
		out, err := exec.Command("qemu-img", args...).CombinedOutput()
		if err == nil {
			return
		}
		// A LUKS header's PBKDF is timed by QEMU with the thread's CPU
		// clock, which advances by whole ticks: a first round that fits
		// in one tick measures 0 and QEMU gives up (seen in CI). Another
		// try lands elsewhere on the tick.
		if try < 10 && strings.Contains(string(out), "Unable to get accurate CPU usage") {
			continue
		}
		t.Fatalf("qemu-img %v: %v %s", args, err, out)
	}
}

// patch overwrites bytes of a file at off.
func patch(t *testing.T, path string, off int64, b []byte) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}

func be64(v uint64) []byte { b := make([]byte, 8); binary.BigEndian.PutUint64(b, v); return b }

// TestInspectDiskRefusesReferences: every way a disk image can name
// another file on the host (backing file, json: backing spec, external
// data file, raw or not), encryption, unknown qcow2 features, and a raw
// disk that is really another format are refused with the reason; the
// file it names is never opened - a FIFO would block whoever opened it,
// so each check must end well before the deadline.
func TestInspectDiskRefusesReferences(t *testing.T) {
	needQemuImg(t)
	dir := t.TempDir()
	// The host file an attacker wants: a FIFO once the image is made (it
	// blocks whoever opens it), a plain file while qemu-img makes it.
	secret := filepath.Join(dir, "host-secret")
	fifo := func() {
		os.Remove(secret)
		if err := syscall.Mkfifo(secret, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	plain := filepath.Join(dir, "plain.qcow2")
	qemuImg(t, "create", "-q", "-f", "qcow2", plain, "64M")
	tests := []struct {
		name, format string
		make         func(p string)
		want         string // "" = accepted
	}{
		{"qcow2", "qcow2", func(p string) { qemuImg(t, "create", "-q", "-f", "qcow2", p, "64M") }, ""},
		{"qcow2 v2", "qcow2", func(p string) { qemuImg(t, "create", "-q", "-f", "qcow2", "-o", "compat=0.10", p, "64M") }, ""},
		{"qcow2 with a bitmap and an internal snapshot", "qcow2", func(p string) {
			qemuImg(t, "create", "-q", "-f", "qcow2", p, "64M")
			qemuImg(t, "bitmap", "--add", p, "b0")
			qemuImg(t, "snapshot", "-c", "s1", p)
		}, ""},
		{"raw", "raw", func(p string) { os.WriteFile(p, make([]byte, 1<<20), 0o600) }, ""},
		{"external data file, raw", "qcow2", func(p string) {
			qemuImg(t, "create", "-q", "-f", "qcow2", "-u", "-o", "data_file="+secret+",data_file_raw=on", p, "1M")
		}, "external data file"},
		{"external data file", "qcow2", func(p string) {
			qemuImg(t, "create", "-q", "-f", "qcow2", "-u", "-o", "data_file="+secret, p, "1M")
		}, "external data file"},
		{"data file named, feature bit cleared", "qcow2", func(p string) {
			qemuImg(t, "create", "-q", "-f", "qcow2", "-u", "-o", "data_file="+secret, p, "1M")
			patch(t, p, 72, be64(0))
		}, "names an external data file"},
		{"backing file", "qcow2", func(p string) { qemuImg(t, "create", "-q", "-f", "qcow2", "-u", "-F", "raw", "-b", secret, p, "1M") }, "backing file"},
		{"backing file without a format", "qcow2", func(p string) {
			qemuImg(t, "create", "-q", "-f", "qcow2", "-u", "-F", "raw", "-b", secret, p, "1M")
			patch(t, p, 112, make([]byte, 8)) // drop the backing format extension
		}, "backing file"},
		{"json: backing spec", "qcow2", func(p string) {
			qemuImg(t, "create", "-q", "-f", "qcow2", "-u", "-F", "raw", "-b", `json:{"driver":"raw","file":{"driver":"file","filename":"`+secret+`"}}`, p, "1M")
		}, "backing file"},
		{"encrypted", "qcow2", func(p string) {
			qemuImg(t, "create", "-q", "-f", "qcow2", "--object", "secret,id=s0,data=abc", "-o", "encrypt.format=luks,encrypt.key-secret=s0,encrypt.iter-time=10", p, "1M")
		}, "encrypted"},
		{"unknown incompatible feature", "qcow2", func(p string) {
			qemuImg(t, "create", "-q", "-f", "qcow2", p, "1M")
			patch(t, p, 72, be64(1<<40))
		}, "features kumo does not know"},
		{"unknown header extension", "qcow2", func(p string) {
			qemuImg(t, "create", "-q", "-f", "qcow2", p, "1M")
			patch(t, p, 112, []byte{0x12, 0x34, 0x56, 0x78, 0, 0, 0, 0})
		}, "extension kumo does not know"},
		{"qcow2 claimed raw", "raw", func(p string) { b, _ := os.ReadFile(plain); os.WriteFile(p, b, 0o600) }, "the disk is qcow2, not raw"},
		{"raw claimed qcow2", "qcow2", func(p string) { os.WriteFile(p, make([]byte, 1<<20), 0o600) }, "the disk is raw, not qcow2"},
		{"vmdk descriptor claimed raw", "raw", func(p string) {
			os.WriteFile(p, []byte("# Disk DescriptorFile\nversion=1\nRW 2048 FLAT \""+secret+"\" 0\n"), 0o600)
		}, "the disk is vmdk, not raw"},
		{"gzip claimed raw", "raw", func(p string) { os.WriteFile(p, []byte("\x1f\x8b\x08\x00rest"), 0o600) }, "the disk is gzip, not raw"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "disk")
			os.Remove(secret)
			os.WriteFile(secret, make([]byte, 1<<20), 0o600)
			tc.make(p)
			fifo()
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			info, err := InspectDisk(ctx, p, tc.format)
			if ctx.Err() != nil {
				t.Fatalf("the check blocked: something opened the FIFO the image names (%v)", err)
			}
			if tc.want == "" {
				if err != nil || info.Format != tc.format || info.VirtualSize <= 0 {
					t.Fatalf("refused: %+v %v", info, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("%v, want %q", err, tc.want)
			}
		})
	}
}

// TestCheckInfoFailsClosed: whatever qemu-img info reports that kumo does
// not know, or that names another file, is refused.
func TestCheckInfoFailsClosed(t *testing.T) {
	base := func() map[string]any {
		return map[string]any{"filename": "/d", "format": "qcow2", "virtual-size": json.Number("1"),
			"format-specific": map[string]any{"type": "qcow2", "data": map[string]any{"compat": "1.1"}}}
	}
	tests := []struct {
		name string
		edit func(m map[string]any)
		want string
	}{
		{"known", func(map[string]any) {}, ""},
		{"new top-level key", func(m map[string]any) { m["external-thing"] = "/etc/shadow" }, "does not know"},
		{"data-file in format data", func(m map[string]any) {
			m["format-specific"].(map[string]any)["data"].(map[string]any)["data-file"] = "/etc/shadow"
		}, "external data file"},
		{"new format data key", func(m map[string]any) {
			m["format-specific"].(map[string]any)["data"].(map[string]any)["mirror"] = "/x"
		}, "does not know"},
		{"another filename", func(m map[string]any) { m["filename"] = "/etc/shadow" }, "not the disk itself"},
		{"a data-file child", func(m map[string]any) {
			m["children"] = []any{map[string]any{"name": "data-file", "info": map[string]any{"filename": "/etc/shadow"}}}
		}, "another node"},
		{"the file child", func(m map[string]any) {
			m["children"] = []any{map[string]any{"name": "file", "info": map[string]any{"filename": "/d", "format": "file",
				"format-specific": map[string]any{"type": "file", "data": map[string]any{}}}}}
		}, ""},
		{"a file child elsewhere", func(m map[string]any) {
			m["children"] = []any{map[string]any{"name": "file", "info": map[string]any{"filename": "/etc/shadow", "format": "file"}}}
		}, "not the disk itself"},
		{"backing filename", func(m map[string]any) { m["backing-filename"] = "json:{}" }, "backing file"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := base()
			tc.edit(m)
			_, err := checkInfo(m, "/d", "qcow2")
			if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
				t.Fatalf("%v, want %q", err, tc.want)
			}
		})
	}
}

// TestCheckKernelImageSizes: the unpacked size is the members' bytes as
// read, and a small archive that expands past the limit is refused.
func TestCheckKernelImageSizes(t *testing.T) {
	mk := func(members map[string][]byte) []byte {
		var buf bytes.Buffer
		zw := gzip.NewWriter(&buf)
		tw := tar.NewWriter(zw)
		for _, n := range []string{"vmlinuz", "initrd", "cmdline"} {
			if b, ok := members[n]; ok {
				tw.WriteHeader(&tar.Header{Name: n, Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(b))})
				tw.Write(b)
			}
		}
		tw.Close()
		zw.Close()
		return buf.Bytes()
	}
	img := mk(map[string][]byte{"vmlinuz": make([]byte, 3<<20), "initrd": make([]byte, 1<<20), "cmdline": []byte("quiet\n")})
	if len(img) > 64<<10 {
		t.Fatalf("the test archive is %d bytes: zeros should compress", len(img))
	}
	ctx := context.Background()
	u, err := CheckKernelImage(ctx, bytes.NewReader(img), t.TempDir(), -1)
	if err != nil || u.Bytes != 4<<20+6 {
		t.Fatalf("unpacked %+v %v, want %d bytes", u, err, 4<<20+6)
	}
	if _, err := CheckKernelImage(ctx, bytes.NewReader(img), t.TempDir(), 4<<20); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("over the limit: %v", err)
	}
	if _, err := CheckKernelImage(ctx, bytes.NewReader(img[:len(img)-4]), t.TempDir(), -1); err == nil {
		t.Fatal("a truncated archive (no gzip trailer) was accepted")
	}
}

func TestSniff(t *testing.T) {
	for head, want := range map[string]string{
		"QFI\xfb\x00\x00\x00\x03": "qcow2",
		"QFI\xfb\x00\x00\x00\x01": "qcow",
		"\x1f\x8b\x08":            "gzip",
		"KDMV....":                "vmdk",
		"#comment\n  \nversion=2\nRW 1 FLAT \"/x\" 0\n": "vmdk",
		"version=9\n":         "raw",
		"conectix":            "vpc",
		"\xeb\x63\x90MBR....": "raw",
		"":                    "raw",
	} {
		if got := Sniff([]byte(head)); got != want {
			t.Errorf("Sniff(%q) = %s, want %s", head, got, want)
		}
	}
}
