package local

import (
	"os"
	"path/filepath"
	"testing"
)

func TestReadiness(t *testing.T) {
	path := filepath.Join(t.TempDir(), "console.log")
	appendLog := func(s string) {
		f, _ := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
		f.WriteString(s)
		f.Close()
	}
	var r Readiness
	if r.Check(path, 0) {
		t.Fatal("ready without a log")
	}
	appendLog("booting\nkumo: ready (a)\n")
	if !r.Check(path, 0) {
		t.Fatal("the marker was missed")
	}
	// A reboot: the old marker is before the new boot and does not count.
	boot := int64(len("booting\nkumo: ready (a)\n"))
	if r.Check(path, boot) {
		t.Fatal("a marker from the boot before counted")
	}
	// A marker written in two pieces, seen across two checks.
	appendLog("kumo: re")
	if r.Check(path, boot) {
		t.Fatal("half a marker counted")
	}
	appendLog("ady (a)\n")
	if !r.Check(path, boot) {
		t.Fatal("a marker cut in two was missed")
	}
	// cloud-init's final line counts; its earlier lines do not.
	r.Forget(path)
	os.WriteFile(path, []byte("Cloud-init v. 22.4.2 running 'init-local' at ...\n"), 0o600)
	if r.Check(path, 0) {
		t.Fatal("cloud-init's first line counted as ready")
	}
	appendLog("Cloud-init v. 22.4.2 finished at Tue, 24 Nov 2026 09:00:00 +0000. Datasource DataSourceNoCloud.\n")
	if !r.Check(path, 0) {
		t.Fatal("cloud-init's final line was missed")
	}
	// The log rotated (truncated) after a boot far into it: what it holds
	// now is all new.
	r.Forget(path)
	os.WriteFile(path, make([]byte, 4096), 0o600)
	if r.Check(path, 4096) {
		t.Fatal("ready on an empty boot")
	}
	os.WriteFile(path, []byte("kumo: ready (a)\n"), 0o600)
	if !r.Check(path, 4096) {
		t.Fatal("the marker after a rotation was missed")
	}
}
