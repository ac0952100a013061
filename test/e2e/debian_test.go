package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kumocloud/kumo/client"
)

// TestDebianCloudInit: the debian image, built with debootstrap through
// the CLI, boots under kumo and its real cloud-init applies kumo's
// hostname and user-data from the NoCloud seed; cloud-init's final
// message makes the instance ready.
func TestDebianCloudInit(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("debootstrap and VMs' cgroups need root; CI runs as root")
	}
	for _, tool := range []string{"qemu-system-x86_64", "debootstrap"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s is not installed (make test installs it)", tool)
		}
	}
	s := startServer(t, "--drivers", "qemu")
	t.Cleanup(func() { exec.Command("pkill", "-9", "-f", filepath.Join(s.dir, "agent", "qemu")).Run() })
	root := []string{"KUMO_SOCKET=" + s.socket}
	dir := t.TempDir()
	t0 := time.Now()
	must(t, root, "", "image", "build", "debian", "-f", filepath.Join(dir, "debian.tar.gz"), "--import")
	t.Logf("debian built and imported in %s", time.Since(t0).Round(time.Second))
	ud := filepath.Join(dir, "ud.sh")
	os.WriteFile(ud, []byte("#!/bin/sh\necho \"kumo-userdata ran on $(hostname)\" >/dev/ttyS0\n"), 0o644)
	must(t, root, "", "instance", "create", "deb1", "--type", "vm", "--image", "debian", "--flavor", "tiny", "--user-data", ud, "--wait")
	c := client.Socket(s.socket)
	t0 = time.Now()
	eventually(t, 6*time.Minute, "cloud-init to finish (ready)", func() (bool, string) {
		in, _ := instanceState(t, c, "default", "deb1")
		return in.Ready, fmt.Sprint(in.State, " ready=", in.Ready, " ", in.ReadyReason)
	})
	t.Logf("deb1 ready %s after RUNNING", time.Since(t0).Round(time.Second))
	logs := must(t, root, "", "instance", "logs", "deb1", "--tail", "2000")
	if !strings.Contains(logs, "kumo-userdata ran on deb1") {
		t.Fatalf("cloud-init did not run kumo's user-data with kumo's hostname; console:\n%s", logs)
	}
	if !strings.Contains(logs, "Cloud-init v.") || !strings.Contains(logs, "Datasource DataSourceNoCloud") {
		t.Errorf("cloud-init did not say it used the NoCloud seed; console:\n%s", logs)
	}
	must(t, root, "", "instance", "terminate", "deb1", "--wait")
}
