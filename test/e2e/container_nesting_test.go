package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestContainerNesting: containers make no user namespace, unless their
// flavor was made with --nesting (by a cloud admin).
func TestContainerNesting(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("runc containers need root; CI runs as root")
	}
	s := startServer(t, "--drivers", "container")
	root := []string{"KUMO_SOCKET=" + s.socket}
	img := filepath.Join(t.TempDir(), "tiny.tar.gz")
	must(t, root, "", "image", "build", "tiny-rootfs", "-f", img)
	must(t, root, "", "image", "import", img, "--name", "tiny")
	must(t, root, "", "flavor", "create", "nest", "--vcpus", "1", "--memory", "128", "--disk", "1", "--nesting")
	if out := must(t, root, "", "flavor", "show", "nest", "-o", "json"); !strings.Contains(out, `"nesting": true`) {
		t.Errorf("flavor show: %s", out)
	}
	for _, c := range []struct {
		name, flavor string
		userns       bool
	}{{"nested", "nest", true}, {"plain", "tiny", false}} {
		must(t, root, "", "instance", "create", c.name, "--type", "container", "--image", "tiny", "--flavor", c.flavor, "--wait")
		r := kumo(t, root, "", "instance", "exec", c.name, "--", "unshare", "-U", "-r", "true")
		if (r.code == 0) != c.userns {
			t.Errorf("a user namespace in a container of flavor %s: exit %d %s %s", c.flavor, r.code, r.out, r.err)
		}
		must(t, root, "", "instance", "terminate", c.name, "--wait")
	}
}
