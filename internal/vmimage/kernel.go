// Package vmimage builds kumo's VM images offline, from Debian packages:
// tiny-vm (the Debian cloud kernel and a busybox initramfs that reads the
// NoCloud seed) and debian (debootstrap with the real cloud-init). It also
// defines the vm-kernel image layout the qemu driver boots, and checks
// disk images before anything trusts them (inspect.go, qcow2.go: kumo
// reads the qcow2 header itself and refuses disks that name host files,
// before qemu-img sees them).
//
// A vm-kernel image is a gzipped tarball holding:
//
//	vmlinuz      the kernel (required)
//	initrd       an initramfs (optional)
//	disk.qcow2   a root disk (optional; the instance gets a copy-on-write
//	             overlay of it, as a vm-disk image would)
//	cmdline      extra kernel arguments (optional, one line)
package vmimage

import (
	"bytes"
	"context"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
)

// KernelPackage is the Debian package whose dependency is the cloud kernel.
const KernelPackage = "linux-image-cloud-amd64"

// Kernel is an unpacked Debian kernel package.
type Kernel struct {
	Version string // "6.1.0-56-cloud-amd64"
	Vmlinuz string // path of the kernel image
	Modules string // lib/modules/<version>
}

// FetchKernel returns the cloud kernel unpacked under cacheDir, fetching
// it with apt-get download (the package is never installed on the host)
// the first time, or unpacking deb when one is given.
func FetchKernel(ctx context.Context, cacheDir, deb string) (Kernel, error) {
	if err := os.MkdirAll(cacheDir, 0o755); err != nil {
		return Kernel{}, err
	}
	unlock, err := lockDir(cacheDir)
	if err != nil {
		return Kernel{}, err
	}
	defer unlock()
	if deb == "" {
		if k, err := findKernel(filepath.Join(cacheDir, "kernel")); err == nil {
			return k, nil
		}
		var err error
		if deb, err = downloadKernel(ctx, cacheDir); err != nil {
			return Kernel{}, err
		}
	}
	tmp, err := os.MkdirTemp(cacheDir, ".kernel-*")
	if err != nil {
		return Kernel{}, err
	}
	defer os.RemoveAll(tmp)
	if out, err := exec.CommandContext(ctx, "dpkg-deb", "-x", deb, tmp).CombinedOutput(); err != nil {
		return Kernel{}, fmt.Errorf("dpkg-deb -x %s: %v: %s", deb, err, bytes.TrimSpace(out))
	}
	if _, err := findKernel(tmp); err != nil {
		return Kernel{}, fmt.Errorf("%s: %w", deb, err)
	}
	dst := filepath.Join(cacheDir, "kernel")
	os.RemoveAll(dst)
	if err := os.Rename(tmp, dst); err != nil {
		return Kernel{}, err
	}
	return findKernel(dst)
}

func findKernel(dir string) (Kernel, error) {
	vms, _ := filepath.Glob(filepath.Join(dir, "boot", "vmlinuz-*"))
	if len(vms) != 1 {
		return Kernel{}, errors.New("no single boot/vmlinuz-* in the kernel package")
	}
	v := strings.TrimPrefix(filepath.Base(vms[0]), "vmlinuz-")
	mods := filepath.Join(dir, "lib", "modules", v)
	if _, err := os.Stat(mods); err != nil {
		return Kernel{}, fmt.Errorf("kernel %s has no modules: %w", v, err)
	}
	return Kernel{Version: v, Vmlinuz: vms[0], Modules: mods}, nil
}

// downloadKernel fetches the package the metapackage depends on into
// cacheDir with apt-get download.
func downloadKernel(ctx context.Context, cacheDir string) (string, error) {
	out, err := exec.CommandContext(ctx, "apt-cache", "depends", KernelPackage).Output()
	if err != nil {
		return "", fmt.Errorf("apt-cache depends %s (is this Debian, after apt-get update?): %w", KernelPackage, err)
	}
	var pkg string
	for _, l := range strings.Split(string(out), "\n") {
		if f := strings.Fields(l); len(f) == 2 && f[0] == "Depends:" && strings.HasPrefix(f[1], "linux-image-") {
			pkg = f[1]
			break
		}
	}
	if pkg == "" {
		return "", fmt.Errorf("apt-cache depends %s names no linux-image package", KernelPackage)
	}
	dl := filepath.Join(cacheDir, "deb")
	os.MkdirAll(dl, 0o755)
	os.Chmod(dl, 0o755) // apt's sandbox user must be able to write here
	cmd := exec.CommandContext(ctx, "apt-get", "download", "-q", pkg)
	cmd.Dir = dl
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("apt-get download %s: %v: %s", pkg, err, lastLine(out))
	}
	debs, _ := filepath.Glob(filepath.Join(dl, pkg+"_*.deb"))
	if len(debs) == 0 {
		return "", fmt.Errorf("apt-get download %s left no .deb", pkg)
	}
	return debs[len(debs)-1], nil
}

func lastLine(b []byte) string {
	l := strings.Split(strings.TrimSpace(string(b)), "\n")
	return l[len(l)-1]
}

// moduleDeps reads the "depends=" entry of a kernel module's .modinfo
// section (what depmod would read), so the initramfs carries and loads a
// module's dependencies first without modules.dep.
func moduleDeps(path string) ([]string, error) {
	f, err := elf.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	sec := f.Section(".modinfo")
	if sec == nil {
		return nil, fmt.Errorf("%s: no .modinfo section", path)
	}
	data, err := sec.Data()
	if err != nil {
		return nil, err
	}
	for _, kv := range bytes.Split(data, []byte{0}) {
		if v, ok := bytes.CutPrefix(kv, []byte("depends=")); ok {
			if len(v) == 0 {
				return nil, nil
			}
			return strings.Split(string(v), ","), nil
		}
	}
	return nil, nil
}

// moduleOrder finds the wanted modules under modDir and returns their
// paths with every dependency before its users.
func moduleOrder(modDir string, want []string) ([]string, error) {
	paths := map[string]string{}
	err := filepath.WalkDir(filepath.Join(modDir, "kernel"), func(p string, d os.DirEntry, err error) error {
		if err == nil && strings.HasSuffix(p, ".ko") {
			// Module names use _ where file names may use -.
			paths[strings.ReplaceAll(strings.TrimSuffix(d.Name(), ".ko"), "-", "_")] = p
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	var order []string
	seen := map[string]bool{}
	if b, err := os.ReadFile(filepath.Join(modDir, "modules.builtin")); err == nil {
		for _, l := range strings.Fields(string(b)) {
			seen[strings.ReplaceAll(strings.TrimSuffix(filepath.Base(l), ".ko"), "-", "_")] = true
		}
	}
	var visit func(name string, chain []string) error
	visit = func(name string, chain []string) error {
		name = strings.ReplaceAll(name, "-", "_")
		if seen[name] {
			return nil
		}
		p, ok := paths[name]
		if !ok {
			return fmt.Errorf("module %s (needed by %v) is not in %s (built in?)", name, chain, modDir)
		}
		seen[name] = true
		deps, err := moduleDeps(p)
		if err != nil {
			return err
		}
		for _, dep := range deps {
			if err := visit(dep, append(chain, name)); err != nil {
				return err
			}
		}
		order = append(order, p)
		return nil
	}
	for _, w := range want {
		if err := visit(w, nil); err != nil {
			return nil, err
		}
	}
	return order, nil
}

// DefaultCache is where builders and the qemu driver's probe keep the
// unpacked kernel package, shared by every user of this machine.
const DefaultCache = "/var/cache/kumo/vm"

// TinyVMCached returns the tiny-vm image built once under cacheDir (the
// kernel package fetched on first use): tests and the accel probe share it.
func TinyVMCached(ctx context.Context, cacheDir, busybox string) (string, error) {
	k, initrd, err := TinyPartsCached(ctx, cacheDir, busybox)
	if err != nil {
		return "", err
	}
	return cached(filepath.Join(cacheDir, "tiny-vm-"+k.Version+"-"+tinyRevision()+".tar.gz"), func(w io.Writer) error {
		rd, err := os.ReadFile(initrd)
		if err != nil {
			return err
		}
		return writeTinyVM(w, k.Vmlinuz, rd)
	})
}

// TinyPartsCached returns the cloud kernel and the tiny initramfs, built
// once under cacheDir.
func TinyPartsCached(ctx context.Context, cacheDir, busybox string) (Kernel, string, error) {
	if err := os.MkdirAll(cacheDir, 0o755); err != nil {
		return Kernel{}, "", err
	}
	k, err := FetchKernel(ctx, cacheDir, "")
	if err != nil {
		return Kernel{}, "", err
	}
	initrd, err := cached(filepath.Join(cacheDir, "tiny-initrd-"+k.Version+"-"+tinyRevision()+".img"), func(w io.Writer) error { return BuildInitramfs(w, busybox, k) })
	return k, initrd, err
}

// cached makes path with build once (through a temp file renamed into
// place, so a half-written file is never used).
func cached(path string, build func(io.Writer) error) (string, error) {
	unlock, err := lockDir(filepath.Dir(path))
	if err != nil {
		return "", err
	}
	defer unlock()
	if _, err := os.Stat(path); err == nil {
		return path, nil
	}
	f, err := os.CreateTemp(filepath.Dir(path), ".build-*")
	if err != nil {
		return "", err
	}
	defer os.Remove(f.Name())
	defer f.Close()
	if err := build(f); err != nil {
		return "", err
	}
	if err := f.Close(); err != nil {
		return "", err
	}
	return path, os.Rename(f.Name(), path)
}

// lockDir takes an exclusive lock on dir's .lock file: several processes
// (an agent's probe, a build, tests run in parallel) may fill one cache.
func lockDir(dir string) (func(), error) {
	f, err := os.OpenFile(filepath.Join(dir, ".lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, err
	}
	return func() { syscall.Flock(int(f.Fd()), syscall.LOCK_UN); f.Close() }, nil
}
