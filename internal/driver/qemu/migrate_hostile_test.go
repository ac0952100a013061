package qemu

import (
	"archive/tar"
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestReceiveColdRefusesALargerDisk: the overlay a cold migration brings
// is checked against the one this host prepared for the instance: one
// whose virtual size is larger (a source agent that crafted it) would let
// the guest fill this host's disk far past its flavor's. Nothing boots.
func TestReceiveColdRefusesALargerDisk(t *testing.T) {
	sum, fetch := tinyVM(t)
	dst := newDriver(t, t.TempDir(), fetch)
	t.Cleanup(func() { assertNoLeftovers(t, dst) })
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for name, size := range map[string]string{"1 TiB": "1T", "fits": "1G"} {
		disk := filepath.Join(t.TempDir(), "disk.qcow2")
		if out, err := exec.Command("qemu-img", "create", "-q", "-f", "qcow2", disk, size).CombinedOutput(); err != nil {
			t.Fatalf("qemu-img create: %v: %s", err, out)
		}
		bs, err := os.ReadFile(disk)
		if err != nil {
			t.Fatal(err)
		}
		var b bytes.Buffer
		tw := tar.NewWriter(&b)
		rec := []byte(`{"want":"stopped"}`)
		tw.WriteHeader(&tar.Header{Name: "record.json", Mode: 0o600, Size: int64(len(rec)), Typeflag: tar.TypeReg})
		tw.Write(rec)
		tw.WriteHeader(&tar.Header{Name: "disk.qcow2", Mode: 0o600, Size: int64(len(bs)), Typeflag: tar.TypeReg})
		tw.Write(bs)
		tw.Close()
		s := spec("vm-disk-"+strings.ReplaceAll(name, " ", ""), sum, 128, "")
		err = dst.ReceiveCold(ctx, s, &b)
		if name == "fits" {
			if err != nil {
				t.Fatalf("a disk of the flavor's size: %v", err)
			}
			if err := dst.Cleanup(ctx, s.ID, false); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if err == nil {
			dst.Cleanup(ctx, s.ID, false)
			t.Fatalf("a %s disk for a 1 GiB flavor was taken", name)
		}
		if dst.Has(s.ID) {
			t.Errorf("a refused stream left the VM behind")
		}
	}
}
