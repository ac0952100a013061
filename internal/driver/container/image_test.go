package container

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/kumocloud/kumo/internal/rootfs"
)

// entry is one file of a test image (Typeflag, and Linkname or Body).
type entry struct {
	Name     string
	Typeflag byte
	Linkname string
	Mode     int64
	Body     []byte
}

// imageWith is the tiny rootfs without the entries at or below the names
// in drop, and with extra entries at its end: its sha256 and bytes.
func imageWith(t testing.TB, drop []string, extra ...entry) (string, []byte) {
	t.Helper()
	var base bytes.Buffer
	if err := rootfs.Build(&base, rootfs.Busybox); err != nil {
		t.Fatal(err)
	}
	zr, err := gzip.NewReader(&base)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	zw := gzip.NewWriter(&out)
	tw := tar.NewWriter(zw)
	tr := tar.NewReader(zr)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		name := strings.TrimSuffix(h.Name, "/")
		dropped := false
		for _, d := range drop {
			if name == d || strings.HasPrefix(name, d+"/") {
				dropped = true
			}
		}
		if dropped {
			continue
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if _, err := io.Copy(tw, tr); err != nil {
			t.Fatal(err)
		}
	}
	for _, e := range extra {
		h := &tar.Header{Name: e.Name, Typeflag: e.Typeflag, Linkname: e.Linkname, Mode: e.Mode, Size: int64(len(e.Body))}
		if e.Typeflag != tar.TypeReg {
			h.Size = 0
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if h.Size > 0 {
			tw.Write(e.Body)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(out.Bytes())
	return hex.EncodeToString(sum[:]), out.Bytes()
}

// serve serves images by sha256 like the image service (bypassing its
// checks of uploads: the driver must be safe on its own).
func serve(images ...[]byte) func(context.Context, string) (io.ReadCloser, error) {
	by := map[string][]byte{}
	for _, b := range images {
		sum := sha256.Sum256(b)
		by[hex.EncodeToString(sum[:])] = b
	}
	return func(_ context.Context, sum string) (io.ReadCloser, error) {
		b, ok := by[sum]
		if !ok {
			return nil, fmt.Errorf("no image %s", sum)
		}
		return io.NopCloser(bytes.NewReader(b)), nil
	}
}
