package e2e

import (
	"archive/tar"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kumocloud/kumo/api"
	"github.com/kumocloud/kumo/client"
)

// TestImageCLI: import, list, show, share and delete images through the
// CLI; bad tarballs are refused and leave nothing behind.
func TestImageCLI(t *testing.T) {
	s := startServer(t)
	root := []string{"KUMO_SOCKET=" + s.socket}
	dir := t.TempDir()
	good := filepath.Join(dir, "tiny-rootfs.tar.gz")
	body := tinyRootfs(t)
	os.WriteFile(good, body, 0o644)
	sum := sha256.Sum256(body)

	var img api.Image
	if err := json.Unmarshal([]byte(must(t, root, "", "image", "import", good, "--name", "tiny", "--public", "-o", "json")), &img); err != nil {
		t.Fatal(err)
	}
	if img.Status != api.ImageActive || img.SHA256 != hex.EncodeToString(sum[:]) || img.Size != int64(len(body)) || img.Visibility != "public" {
		t.Fatalf("imported: %+v", img)
	}
	if out := must(t, root, "", "image", "list"); !strings.Contains(out, "tiny") || !strings.Contains(out, "active") {
		t.Errorf("image list:\n%s", out)
	}
	// Another project sees the public image.
	must(t, root, "", "project", "create", "other")
	if out := must(t, root, "", "image", "list", "-p", "other"); !strings.Contains(out, "default/tiny") {
		t.Errorf("public image not listed in another project:\n%s", out)
	}
	// Its bytes come back as uploaded.
	rc, err := client.Socket(s.socket).DownloadImage(context.Background(), "other", "tiny")
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(rc)
	rc.Close()
	if sha256.Sum256(got) != sum {
		t.Error("downloaded bytes differ")
	}

	evil := filepath.Join(dir, "evil.tar.gz")
	os.WriteFile(evil, tinyRootfs(t, &tar.Header{Name: "../../etc/cron.d/x", Typeflag: tar.TypeReg, Mode: 0o644, Size: 1}), 0o644)
	dev := filepath.Join(dir, "dev.tar.gz")
	os.WriteFile(dev, tinyRootfs(t, &tar.Header{Name: "dev/sda", Typeflag: tar.TypeBlock, Mode: 0o600}), 0o644)
	trunc := filepath.Join(dir, "trunc.tar.gz")
	os.WriteFile(trunc, body[:len(body)-12], 0o644)
	for file, want := range map[string]string{evil: "climbs out", dev: "device nodes", trunc: "truncated or corrupt"} {
		r := kumo(t, root, "", "image", "import", file)
		if r.code != 1 || !strings.Contains(r.err, want) {
			t.Errorf("import %s: exit %d %s, want %q", filepath.Base(file), r.code, r.err, want)
		}
	}
	// Nothing of the refused uploads is on disk: one file, the good one.
	blobs, _ := os.ReadDir(filepath.Join(s.dir, "images", "blobs"))
	tmps, _ := os.ReadDir(filepath.Join(s.dir, "images", "tmp"))
	if len(blobs) != 1 || len(tmps) != 0 {
		t.Errorf("%d blobs and %d temp files on disk, want 1 and 0", len(blobs), len(tmps))
	}
	if out := must(t, root, "", "image", "show", "evil"); !strings.Contains(out, "status: error") || !strings.Contains(out, "climbs out") {
		t.Errorf("refused image:\n%s", out)
	}
	must(t, root, "", "image", "delete", "evil")
	must(t, root, "", "image", "set", "tiny", "--visibility", "shared", "--share", "other")
	if out := must(t, root, "", "image", "show", "tiny", "-o", "json"); !strings.Contains(out, `"shared_with": [`) {
		t.Errorf("shared image:\n%s", out)
	}
	must(t, root, "", "image", "delete", "tiny")
	if blobs, _ := os.ReadDir(filepath.Join(s.dir, "images", "blobs")); len(blobs) != 0 {
		t.Errorf("%d blobs left after deleting every image", len(blobs))
	}
}
