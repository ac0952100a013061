package agent

import (
	"errors"
	"testing"
)

func TestTenantReasonHidesHostPaths(t *testing.T) {
	for _, c := range []struct{ err, want string }{
		{"dial unix /run/kumo/vm/i-7/qmp.sock: connect: connection refused", "dial unix …/qmp.sock: connect: connection refused"},
		{"open /var/lib/kumo/agent/overlays/i-7.qcow2: no space left on device", "open …/i-7.qcow2: no space left on device"},
		{"qemu exited: exit status 1", "qemu exited: exit status 1"},
		{"image sha256 abc/def mismatch", "image sha256 abc/def mismatch"},
		{"a/b and /x", "a/b and /x"},
		{"layer abc/def/ghi", "layer abc/def/ghi"},
		{`stat "/srv/kumo/pool/v-1.raw"`, `stat "…/v-1.raw"`},
		{"/tmp/a/b: gone", "…/b: gone"},
	} {
		if got := tenantReason(errors.New(c.err)); got != c.want {
			t.Errorf("tenantReason(%q) = %q, want %q", c.err, got, c.want)
		}
	}
}
