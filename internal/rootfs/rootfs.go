// Package rootfs builds kumo's tiny container rootfs offline, from the
// busybox-static Debian package: busybox with its applets as links, and an
// init that applies the hostname, runs the user-data once, says it is
// ready, and stays up until it is told to stop.
package rootfs

import (
	"archive/tar"
	"compress/gzip"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"time"
)

// Busybox is where Debian's busybox-static puts the binary.
const Busybox = "/bin/busybox"

// Init is PID 1 of the tiny rootfs.
const Init = `#!/bin/sh
# kumo tiny rootfs init: PID 1.
export PATH=/bin:/sbin
[ -f /etc/hostname ] && hostname "$(cat /etc/hostname)"
if [ -f /var/lib/kumo/user-data ] && [ ! -f /var/lib/kumo/user-data.done ]; then
	sh /var/lib/kumo/user-data >/var/log/user-data.log 2>&1
	echo "$?" >/var/lib/kumo/user-data.done
fi
echo "kumo: ready"
trap 'echo "kumo: stopping"; exit 0' TERM INT
while :; do sleep 1 & wait $!; done
`

// Build writes the tiny rootfs as a gzipped tarball to w, using the
// busybox binary at busybox.
func Build(w io.Writer, busybox string) error {
	bin, err := os.ReadFile(busybox)
	if err != nil {
		return fmt.Errorf("busybox-static is needed (apt-get install busybox-static): %w", err)
	}
	out, err := exec.Command(busybox, "--list").Output()
	if err != nil {
		return fmt.Errorf("%s --list: %w", busybox, err)
	}
	zw := gzip.NewWriter(w)
	tw := tar.NewWriter(zw)
	now := time.Unix(0, 0)
	dir := func(name string, mode int64) error {
		return tw.WriteHeader(&tar.Header{Name: name + "/", Typeflag: tar.TypeDir, Mode: mode, ModTime: now})
	}
	file := func(name string, mode int64, data []byte) error {
		if err := tw.WriteHeader(&tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: mode, Size: int64(len(data)), ModTime: now}); err != nil {
			return err
		}
		_, err := tw.Write(data)
		return err
	}
	for _, d := range []string{"bin", "sbin", "etc", "proc", "sys", "dev", "tmp", "root", "var", "var/lib", "var/lib/kumo", "var/log", "run"} {
		mode := int64(0o755)
		if d == "tmp" {
			mode = 0o1777
		}
		if err := dir(d, mode); err != nil {
			return err
		}
	}
	if err := file("bin/busybox", 0o755, bin); err != nil {
		return err
	}
	for _, applet := range strings.Fields(string(out)) {
		if applet == "busybox" || strings.Contains(applet, "/") {
			continue
		}
		if err := tw.WriteHeader(&tar.Header{Name: "bin/" + applet, Typeflag: tar.TypeSymlink, Linkname: "busybox", Mode: 0o777, ModTime: now}); err != nil {
			return err
		}
	}
	files := map[string]string{
		"sbin/init":      Init,
		"etc/hostname":   "tiny\n",
		"etc/passwd":     "root:x:0:0:root:/root:/bin/sh\n",
		"etc/group":      "root:x:0:\n",
		"etc/os-release": "NAME=\"kumo tiny\"\nID=kumo-tiny\n",
	}
	for _, name := range []string{"sbin/init", "etc/hostname", "etc/passwd", "etc/group", "etc/os-release"} {
		mode := int64(0o644)
		if name == "sbin/init" {
			mode = 0o755
		}
		if err := file(name, mode, []byte(files[name])); err != nil {
			return err
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	return zw.Close()
}
