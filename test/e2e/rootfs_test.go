package e2e

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"testing"
)

// tinyRootfs builds a small rootfs tarball in memory (a stand-in for the
// busybox one: the image service checks structure, not contents).
func tinyRootfs(t *testing.T, extra ...*tar.Header) []byte {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	w := tar.NewWriter(zw)
	files := []*tar.Header{
		{Name: "bin/", Typeflag: tar.TypeDir, Mode: 0o755},
		{Name: "bin/busybox", Typeflag: tar.TypeReg, Mode: 0o755, Size: 5},
		{Name: "bin/sh", Typeflag: tar.TypeSymlink, Linkname: "busybox", Mode: 0o777},
		{Name: "sbin/init", Typeflag: tar.TypeSymlink, Linkname: "/bin/busybox", Mode: 0o777},
	}
	for _, h := range append(files, extra...) {
		if err := w.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if h.Typeflag == tar.TypeReg {
			w.Write(bytes.Repeat([]byte("x"), int(h.Size)))
		}
	}
	w.Close()
	zw.Close()
	return buf.Bytes()
}
