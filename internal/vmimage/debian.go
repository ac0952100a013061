package vmimage

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// DebianOptions configure the debian image build.
type DebianOptions struct {
	Suite   string // default bookworm
	Mirror  string // default: this machine's Debian mirror, else deb.debian.org
	SizeGiB int64  // the root filesystem's size (default 2)
	WorkDir string // where the tree and disk are made (default: a temp dir)
	Log     io.Writer
}

// DebianPackages go into the debian image besides minbase: an init, the
// real cloud-init (python3-cffi-backend named because debootstrap does
// not resolve the virtual package python3-cryptography needs), the cloud
// kernel and what brings networking up.
var DebianPackages = []string{"systemd-sysv", "udev", "cloud-init", "python3-cffi-backend", "linux-image-cloud-amd64", "ifupdown", "isc-dhcp-client"}

// DebianCmdline boots the image's root filesystem, on the instance's first
// disk, with the serial console.
const DebianCmdline = "root=/dev/vda rw console=ttyS0"

// BuildDebian builds the debian image with debootstrap and writes it to w
// as a vm-kernel tarball: the system's own kernel and initramfs, and
// disk.qcow2 holding its ext4 root filesystem (made with mkfs.ext4 -d, so
// no loop device or mount is needed). cloud-init is told to look only for
// the NoCloud seed kumo gives, and every instance gets its own machine-id.
func BuildDebian(ctx context.Context, w io.Writer, o DebianOptions) error {
	if o.Suite == "" {
		o.Suite = "bookworm"
	}
	if o.Mirror == "" {
		o.Mirror = debianMirror()
	}
	if o.SizeGiB <= 0 {
		o.SizeGiB = 2
	}
	if o.Log == nil {
		o.Log = io.Discard
	}
	for _, tool := range []string{"debootstrap", "mkfs.ext4", "qemu-img"} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("building debian needs %s (apt-get install debootstrap e2fsprogs qemu-utils): %w", tool, err)
		}
	}
	work, err := os.MkdirTemp(o.WorkDir, "kumo-debian-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	root := filepath.Join(work, "root")
	run := func(name string, args ...string) error {
		fmt.Fprintf(o.Log, "+ %s %s\n", name, strings.Join(args, " "))
		cmd := exec.CommandContext(ctx, name, args...)
		cmd.Stdout, cmd.Stderr = o.Log, o.Log
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		return nil
	}
	if err := run("debootstrap", "--variant=minbase", "--include="+strings.Join(DebianPackages, ","), o.Suite, root, o.Mirror); err != nil {
		return err
	}
	if err := configureDebian(root); err != nil {
		return err
	}
	kernels, _ := filepath.Glob(filepath.Join(root, "boot", "vmlinuz-*"))
	if len(kernels) != 1 {
		return fmt.Errorf("debootstrap left %d kernels in /boot, want 1", len(kernels))
	}
	version := strings.TrimPrefix(filepath.Base(kernels[0]), "vmlinuz-")
	initrd := filepath.Join(root, "boot", "initrd.img-"+version)
	// The kernel and initramfs travel beside the disk; copy them out
	// before the tree becomes the filesystem.
	for _, f := range []struct{ from, to string }{{kernels[0], "vmlinuz"}, {initrd, "initrd"}} {
		if err := run("cp", f.from, filepath.Join(work, f.to)); err != nil {
			return err
		}
	}
	raw, disk := filepath.Join(work, "disk.raw"), filepath.Join(work, "disk.qcow2")
	if err := run("mkfs.ext4", "-q", "-F", "-L", "root", "-d", root, raw, fmt.Sprintf("%dG", o.SizeGiB)); err != nil {
		return err
	}
	os.RemoveAll(root)
	if err := run("qemu-img", "convert", "-O", "qcow2", raw, disk); err != nil {
		return err
	}
	os.Remove(raw)
	return WriteKernelImage(w, []Member{
		{Name: "vmlinuz", Path: filepath.Join(work, "vmlinuz")},
		{Name: "initrd", Path: filepath.Join(work, "initrd")},
		{Name: "cmdline", Data: []byte(DebianCmdline + "\n")},
		{Name: "disk.qcow2", Path: disk},
	})
}

// configureDebian makes the tree an image: the root from the kernel's
// command line, cloud-init looking only for NoCloud, a machine-id made at
// first boot, no package caches.
func configureDebian(root string) error {
	files := map[string]string{
		"etc/fstab":                         "LABEL=root / ext4 defaults,errors=remount-ro 0 1\n",
		"etc/cloud/cloud.cfg.d/90_kumo.cfg": "# kumo gives a NoCloud seed (a disk labelled cidata); look for nothing else.\ndatasource_list: [ NoCloud, None ]\n",
		"etc/machine-id":                    "",
		"etc/hostname":                      "debian\n",
	}
	for name, body := range files {
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			return err
		}
	}
	os.Remove(filepath.Join(root, "var/lib/dbus/machine-id"))
	for _, glob := range []string{"var/cache/apt/archives/*.deb", "var/lib/apt/lists/*_*", "var/log/*.log", "debootstrap"} {
		ms, _ := filepath.Glob(filepath.Join(root, glob))
		for _, m := range ms {
			os.RemoveAll(m)
		}
	}
	return nil
}

// debianMirror is the Debian mirror this machine's apt uses (deb822 or
// one-line sources), or deb.debian.org.
func debianMirror() string {
	for _, f := range []string{"/etc/apt/sources.list.d/debian.sources", "/etc/apt/sources.list"} {
		fh, err := os.Open(f)
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(fh)
		for sc.Scan() {
			fs := strings.Fields(sc.Text())
			if len(fs) == 0 || (fs[0] != "URIs:" && fs[0] != "deb") {
				continue
			}
			for _, f := range fs[1:] {
				if strings.HasPrefix(f, "http") && !strings.Contains(f, "security") {
					fh.Close()
					return f
				}
			}
		}
		fh.Close()
	}
	return "http://deb.debian.org/debian"
}
