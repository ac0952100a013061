package vmimage

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/cavaliergopher/cpio"
)

// ReadyMarker is the console line the tiny images print when they are up
// (the qemu driver watches the serial console for it).
const ReadyMarker = "kumo: ready"

// tinyModules are what the tiny initramfs loads: virtio disks and NICs,
// the seed's filesystem, and the ACPI power button (graceful shutdown).
var tinyModules = []string{"virtio_pci", "virtio_blk", "virtio_net", "isofs", "button", "evdev"}

// TinyInit is /init of the tiny-vm initramfs: load the modules, find the
// NoCloud seed (a disk labelled cidata), use a swap disk labelled
// kumo-swap if there is one, apply the hostname, run the
// user-data if it is a script, bring each NIC up by DHCP, print the
// readiness line on the serial
// console, hand ACPI power-button presses to poweroff, and keep a shell
// on the console.
const TinyInit = `#!/bin/busybox sh
/bin/busybox mkdir -p /bin /sbin /usr/bin /usr/sbin /proc /sys /dev /tmp /run /mnt/seed /var/log
/bin/busybox --install -s
export PATH=/bin:/sbin:/usr/bin:/usr/sbin HOME=/root
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts && mount -t devpts devpts /dev/pts
while read -r m; do insmod "/lib/modules/$m" 2>/dev/null; done </lib/modules/load
hostname tiny
seed=""
i=0
while [ $i -lt 30 ]; do
	seed=$(findfs LABEL=cidata 2>/dev/null) && break
	i=$((i+1)); sleep 0.1
done
sw=$(findfs LABEL=kumo-swap 2>/dev/null) && swapon "$sw"
if [ -n "$seed" ] && mount -t iso9660 -o ro "$seed" /mnt/seed; then
	h=$(sed -n 's/^local-hostname:[[:space:]]*//p' /mnt/seed/meta-data | tr -d "\"'\r")
	[ -n "$h" ] && hostname "$h"
	if [ -f /mnt/seed/user-data ] && [ "$(head -c 2 /mnt/seed/user-data)" = "#!" ]; then
		cp /mnt/seed/user-data /run/user-data && chmod 700 /run/user-data
		/run/user-data >/var/log/user-data.log 2>&1
		echo "kumo: user-data exited $?"
	fi
fi
for n in /sys/class/net/eth*; do
	[ -e "$n" ] || continue
	i=${n##*/}
	ip link set "$i" up
	udhcpc -i "$i" -t 10 -T 1 -b -s /etc/udhcpc.script >/dev/null 2>&1
done
acpid -c /etc/acpi
echo "` + ReadyMarker + ` ($(hostname))"
while :; do setsid cttyhack sh -l; done
`

// udhcpcScript applies a DHCP lease (busybox udhcpc calls it): address,
// MTU, default route, name servers; it says what it got on the console.
const udhcpcScript = `#!/bin/sh
case "$1" in
bound|renew)
	ip addr flush dev "$interface"
	ip addr add "$ip/$mask" dev "$interface"
	[ -n "$mtu" ] && ip link set "$interface" mtu "$mtu"
	[ -n "$router" ] && ip route replace default via "${router%% *}" dev "$interface"
	: >/etc/resolv.conf
	for d in $dns; do echo "nameserver $d" >>/etc/resolv.conf; done
	echo "kumo: $interface $ip/$mask" >/dev/console
	;;
deconfig)
	ip addr flush dev "$interface"
	ip link set "$interface" up
	;;
esac
`

// poweroff is what acpid runs on a power-button press (busybox acpid runs
// /etc/acpi/PWRF/00000080); PID 1 is a shell, so poweroff must not ask init.
const poweroff = "#!/bin/sh\necho 'kumo: powering off'\nsync\npoweroff -f\n"

// tinyRevision names what goes into the tiny initramfs besides the
// kernel's files (its scripts and module list), so a cached build is never
// used after they change.
func tinyRevision() string {
	h := sha256.Sum256([]byte(TinyInit + poweroff + udhcpcScript + TinyCmdline + strings.Join(tinyModules, ",")))
	return hex.EncodeToString(h[:4])
}

// BuildInitramfs writes the tiny initramfs (a gzipped newc cpio archive)
// to w: busybox, the modules kernel needs for virtio and the seed, /init.
func BuildInitramfs(w io.Writer, busybox string, k Kernel) error {
	bb, err := os.ReadFile(busybox)
	if err != nil {
		return fmt.Errorf("busybox-static is needed (apt-get install busybox-static): %w", err)
	}
	mods, err := moduleOrder(k.Modules, tinyModules)
	if err != nil {
		return err
	}
	zw, _ := gzip.NewWriterLevel(w, gzip.BestCompression)
	cw := cpio.NewWriter(zw)
	put := func(name string, mode cpio.FileMode, data []byte) error {
		if err := cw.WriteHeader(&cpio.Header{Name: name, Mode: mode, Size: int64(len(data)), ModTime: time.Unix(0, 0)}); err != nil {
			return err
		}
		_, err := cw.Write(data)
		return err
	}
	for _, d := range []string{"bin", "dev", "etc", "etc/acpi", "etc/acpi/PWRF", "lib", "lib/modules", "proc", "root", "run", "sys", "tmp"} {
		if err := put(d, cpio.TypeDir|0o755, nil); err != nil {
			return err
		}
	}
	var load []string
	for _, p := range mods {
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if err := put("lib/modules/"+filepath.Base(p), cpio.TypeReg|0o644, b); err != nil {
			return err
		}
		load = append(load, filepath.Base(p))
	}
	files := []struct {
		name string
		mode cpio.FileMode
		data []byte
	}{
		{"bin/busybox", 0o755, bb},
		{"init", 0o755, []byte(TinyInit)},
		{"lib/modules/load", 0o644, []byte(strings.Join(load, "\n") + "\n")},
		{"etc/acpi/PWRF/00000080", 0o755, []byte(poweroff)},
		{"etc/udhcpc.script", 0o755, []byte(udhcpcScript)},
		{"etc/passwd", 0o644, []byte("root:x:0:0:root:/root:/bin/sh\n")},
		{"etc/group", 0o644, []byte("root:x:0:\n")},
		{"etc/os-release", 0o644, []byte("NAME=\"kumo tiny-vm\"\nID=kumo-tiny-vm\n")},
	}
	for _, f := range files {
		if err := put(f.name, cpio.TypeReg|f.mode, f.data); err != nil {
			return err
		}
	}
	if err := cw.Close(); err != nil {
		return err
	}
	return zw.Close()
}

// TinyCmdline are the kernel arguments of tiny-vm: the serial console,
// quiet boot, and no waiting for a root device.
const TinyCmdline = "console=ttyS0 quiet panic=-1"

// BuildTinyVM writes the tiny-vm image (a vm-kernel tarball) to w.
func BuildTinyVM(w io.Writer, busybox string, k Kernel) error {
	var initrd bytes.Buffer
	if err := BuildInitramfs(&initrd, busybox, k); err != nil {
		return err
	}
	return writeTinyVM(w, k.Vmlinuz, initrd.Bytes())
}

// writeTinyVM writes the tiny-vm tarball of a kernel and an initramfs.
func writeTinyVM(w io.Writer, vmlinuz string, initrd []byte) error {
	return WriteKernelImage(w, []Member{{Name: "vmlinuz", Path: vmlinuz}, {Name: "initrd", Data: initrd}, {Name: "cmdline", Data: []byte(TinyCmdline + "\n")}})
}

// Member is one file of a vm-kernel tarball: its bytes, or a file to
// stream them from (a root disk may be gigabytes).
type Member struct {
	Name string
	Data []byte
	Path string
}

// WriteKernelImage writes a vm-kernel tarball with the given members
// (gzip at its fastest: kernels are compressed already, and a root disk
// of gigabytes would take minutes at the default level).
func WriteKernelImage(w io.Writer, members []Member) error {
	zw, _ := gzip.NewWriterLevel(w, gzip.BestSpeed)
	tw := tar.NewWriter(zw)
	for _, m := range members {
		if !slices.Contains(KernelImageFiles, m.Name) {
			return fmt.Errorf("%q is not a member of a vm-kernel image", m.Name)
		}
		var src io.Reader = bytes.NewReader(m.Data)
		size := int64(len(m.Data))
		if m.Path != "" {
			f, err := os.Open(m.Path)
			if err != nil {
				return err
			}
			defer f.Close()
			st, err := f.Stat()
			if err != nil {
				return err
			}
			src, size = f, st.Size()
		}
		if err := tw.WriteHeader(&tar.Header{Name: m.Name, Typeflag: tar.TypeReg, Mode: 0o644, Size: size, ModTime: time.Unix(0, 0)}); err != nil {
			return err
		}
		if _, err := io.Copy(tw, src); err != nil {
			return err
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	return zw.Close()
}

// KernelImageFiles are the members a vm-kernel tarball may have.
var KernelImageFiles = []string{"vmlinuz", "initrd", "cmdline", "disk.qcow2"}
