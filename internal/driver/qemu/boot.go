package qemu

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/kumocloud/kumo/internal/driver"
	"github.com/kumocloud/kumo/internal/driver/local"
	"github.com/kumocloud/kumo/internal/qmp"
	"github.com/kumocloud/kumo/internal/vmimage"
)

// image returns the cached image: a vm-disk becomes disk.qcow2 or
// disk.raw, a vm-kernel tarball is unpacked (vmlinuz, initrd, cmdline,
// disk.qcow2). What the bytes are is decided by kumo (vmimage.Sniff, the
// rule the image service checked the declared format against), never by
// QEMU's probe; a disk is checked again here, when the cache is filled
// (it may name no other file), and what the check said is kept beside
// it in disk.json for every instance made from it.
func (d *Driver) image(ctx context.Context, s driver.Spec) (string, error) {
	return d.cache.Get(ctx, s.Image, s.ImageSHA256, imageForm, func(blob, out string) error {
		keep := func(info vmimage.DiskInfo) error { return keepDisk(out, info) }
		format, err := vmimage.SniffFile(blob)
		if err != nil {
			return err
		}
		switch format {
		case vmimage.FormatGzip: // a vm-kernel tarball
			f, err := os.Open(blob)
			if err != nil {
				return err
			}
			defer f.Close()
			if err := local.Extract(f, true, out, d.o.MaxUnpacked); err != nil {
				return err
			}
			if _, err := os.Stat(filepath.Join(out, "vmlinuz")); err != nil {
				return errors.New("a vm-kernel image needs a vmlinuz")
			}
			if disk := filepath.Join(out, "disk.qcow2"); exists(disk) {
				info, err := vmimage.InspectDisk(ctx, disk, vmimage.FormatQcow2)
				if err != nil {
					return fmt.Errorf("disk.qcow2: %w", err)
				}
				return keep(info)
			}
			return nil
		case vmimage.FormatQcow2, vmimage.FormatRaw:
			info, err := vmimage.InspectDisk(ctx, blob, format)
			if err != nil {
				return err
			}
			if err := keep(info); err != nil {
				return err
			}
			// The cache keeps the bytes: the disk is the same file.
			return local.LinkOrCopy(blob, filepath.Join(out, "disk."+info.Format))
		}
		return fmt.Errorf("the image is %s: a VM takes a qcow2 or raw disk or a vm-kernel tarball", format)
	})
}

// diskCheck is the version of the check a cached disk passed. A cache
// filled by an older kumo, whose check let external data files through, is
// checked again before an instance uses it.
const diskCheck = 2

// cachedInfo is disk.json: what the check said of a cached disk.
type cachedInfo struct {
	vmimage.DiskInfo
	Check int `json:"check,omitempty"`
}

// keepDisk writes disk.json in a cache entry (through a rename: Prepares
// read it meanwhile).
func keepDisk(dir string, info vmimage.DiskInfo) error {
	b, _ := json.Marshal(cachedInfo{DiskInfo: info, Check: diskCheck})
	tmp := filepath.Join(dir, ".disk.json.tmp")
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(dir, "disk.json"))
}

// cachedDisk is what the check said of a cached image's disk, if it has
// one; a disk checked by an older check is checked again (and refused if
// it fails now).
func cachedDisk(ctx context.Context, img string) (vmimage.DiskInfo, bool, error) {
	var ci cachedInfo
	b, err := os.ReadFile(filepath.Join(img, "disk.json"))
	if errors.Is(err, os.ErrNotExist) {
		return ci.DiskInfo, false, nil
	}
	if err == nil {
		err = json.Unmarshal(b, &ci)
	}
	if err != nil {
		return ci.DiskInfo, false, err
	}
	if ci.Check < diskCheck {
		info, err := vmimage.InspectDisk(ctx, filepath.Join(img, "disk."+ci.Format), ci.Format)
		if err != nil {
			return info, false, err
		}
		if err := keepDisk(img, info); err != nil {
			return info, false, err
		}
		ci.DiskInfo = info
	}
	return ci.DiskInfo, true, nil
}

// MinMemoryMiB is the least memory a VM is given.
const MinMemoryMiB = 128

func exists(p string) bool { _, err := os.Stat(p); return err == nil }

// Prepare implements driver.Driver (PROLOG): the overlay disk on the
// cached base, grown to the flavor's disk, and the NoCloud seed. Nothing
// is left when it fails.
func (d *Driver) Prepare(ctx context.Context, s driver.Spec) (err error) {
	l := d.lock(s.ID)
	l.Lock()
	defer l.Unlock()
	if _, err := d.readMeta(s.ID); err == nil {
		return nil
	}
	if s.Size.MemoryMiB < MinMemoryMiB {
		// Below this a Linux guest does not come up: it resets in a loop
		// without a word on the console.
		return fmt.Errorf("a VM needs at least %d MiB of memory; the flavor gives %d MiB", MinMemoryMiB, s.Size.MemoryMiB)
	}
	if s.BootVolume != "" {
		return d.prepareBootVolume(ctx, s)
	}
	if s.RootDisk != "" {
		return d.prepareRootDisk(ctx, s)
	}
	img, err := d.image(ctx, s)
	if err != nil {
		return err
	}
	dir := d.dir(s.ID)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	defer func() {
		if err != nil {
			os.RemoveAll(dir)
		}
	}()
	m := meta{Spec: s, Want: wantPrepared, BaseKnown: true}
	size := s.Size.DiskGiB << 30
	args := []string{"create", "-q", "-f", "qcow2"}
	if info, ok, err := cachedDisk(ctx, img); err != nil {
		return fmt.Errorf("cached image %s: %w", s.Image, err)
	} else if ok {
		size = max(size, info.VirtualSize)
		m.Base, m.BaseFormat = filepath.Join(img, "disk."+info.Format), info.Format
		// -u: the size is given, so qemu-img need not open the base; the
		// name written into the overlay is only for people reading it
		// (QEMU is given the base as a node of its own, see args).
		args = append(args, "-u", "-F", info.Format, "-b", m.Base)
	}
	m = withKernel(m, img)
	if size <= 0 {
		size = 1 << 30
	}
	args = append(args, d.path(s.ID, "disk.qcow2"), strconv.FormatInt(size, 10))
	if out, err := exec.CommandContext(ctx, "qemu-img", args...).CombinedOutput(); err != nil {
		return fmt.Errorf("qemu-img create: %v: %s", err, strings.TrimSpace(string(out)))
	}
	return d.finishPrepare(ctx, s, m)
}

// finishPrepare makes what every VM has besides its root disk - the
// NoCloud seed, the swap disk of a flavor with swap - and writes its
// record.
func (d *Driver) finishPrepare(ctx context.Context, s driver.Spec, m meta) error {
	if err := d.writeSeed(ctx, s); err != nil {
		return err
	}
	if s.Size.SwapMiB > 0 {
		if err := makeSwap(ctx, d.path(s.ID, "swap.img"), s.Size.SwapMiB); err != nil {
			return err
		}
	}
	return d.writeMeta(s.ID, m)
}

// withKernel takes a vm-kernel image's kernel, initrd and command line
// (a cached image without a vmlinuz boots from its disk).
func withKernel(m meta, img string) meta {
	if exists(filepath.Join(img, "vmlinuz")) {
		m.Kernel = filepath.Join(img, "vmlinuz")
		if p := filepath.Join(img, "initrd"); exists(p) {
			m.Initrd = p
		}
		if b, err := os.ReadFile(filepath.Join(img, "cmdline")); err == nil {
			m.Cmdline = strings.TrimSpace(string(b))
		}
	}
	return m
}

// makeSwap makes the swap disk of a flavor with swap, formatted on the
// host as Nova does (mkswap, labelled kumo-swap so guests can find it),
// sparse until the guest swaps.
func makeSwap(ctx context.Context, path string, mib int64) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	err = f.Truncate(mib << 20)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	if out, err := exec.CommandContext(ctx, "mkswap", "-L", "kumo-swap", path).CombinedOutput(); err != nil {
		return fmt.Errorf("mkswap: %v: %s", err, strings.TrimSpace(string(out)))
	}
	return nil
}

// writeSeed makes the NoCloud seed: an ISO 9660 disk labelled cidata with
// meta-data, user-data and, for a VM with ports, network-config (version
// 2: each port's address, default route and name servers, matched by MAC;
// cloud-init applies it, the tiny image asks DHCP for the same).
func (d *Driver) writeSeed(ctx context.Context, s driver.Spec) error {
	tmp, err := os.MkdirTemp(d.dir(s.ID), "seed-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	ud := s.UserData
	if ud == "" {
		ud = "#cloud-config\n{}\n"
	}
	files := map[string]string{
		"meta-data": fmt.Sprintf("instance-id: %s\nlocal-hostname: %s\n", s.ID, s.Name),
		"user-data": ud,
	}
	if len(s.NICs) > 0 {
		files["network-config"] = networkConfig(s.NICs)
	}
	var names []string
	for name, body := range files {
		names = append(names, filepath.Join(tmp, name))
		if err := os.WriteFile(filepath.Join(tmp, name), []byte(body), 0o600); err != nil {
			return err
		}
	}
	sort.Strings(names)
	args := append([]string{"-quiet", "-output", d.path(s.ID, "seed.iso"), "-volid", "cidata", "-joliet", "-rock"}, names...)
	out, err := exec.CommandContext(ctx, "genisoimage", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("genisoimage: %v: %s", err, strings.TrimSpace(string(out)))
	}
	return nil
}

// networkConfig is the NoCloud network-config (version 2) of a VM's ports.
func networkConfig(nics []driver.NIC) string {
	var b strings.Builder
	b.WriteString("version: 2\nethernets:\n")
	for i, n := range nics {
		fmt.Fprintf(&b, "  eth%d:\n    match:\n      macaddress: %q\n    set-name: eth%d\n    addresses: [%q]\n", i, n.MAC, i, n.Address)
		if n.MTU > 0 {
			fmt.Fprintf(&b, "    mtu: %d\n", n.MTU)
		}
		if i == 0 && n.Gateway != "" {
			fmt.Fprintf(&b, "    routes:\n      - to: default\n        via: %s\n", n.Gateway)
		}
		if len(n.DNS) > 0 {
			fmt.Fprintf(&b, "    nameservers:\n      addresses: [%s]\n", strings.Join(n.DNS, ", "))
			if n.Domain != "" {
				fmt.Fprintf(&b, "      search: [%s]\n", n.Domain)
			}
		}
	}
	return b.String()
}

// args is the QEMU command line of a VM (without the binary), from its
// meta; incoming names a saved state to restore.
func (d *Driver) args(id string, m meta, incoming string) []string {
	p := func(name string) string { return d.path(id, name) }
	a := []string{
		"-name", "kumo-" + m.Spec.Name + ",debug-threads=on",
		"-machine", "pc,accel=" + d.accel,
		"-m", strconv.FormatInt(m.Spec.Size.MemoryMiB, 10),
		"-smp", strconv.FormatInt(max(m.Spec.Size.VCPUs, 1), 10),
		"-nodefaults", "-no-user-config", "-display", "none", "-no-shutdown",
		"-pidfile", p("qemu.pid"),
		"-qmp", "unix:" + d.sock(id, "qmp.sock") + ",server=on,wait=off",
		"-chardev", "socket,id=serial0,path=" + d.sock(id, "console.sock") + ",server=on,wait=off,logfile=" + p("console.log") + ",logappend=on",
		"-serial", "chardev:serial0",
	}
	if len(m.Spec.NICs) == 0 {
		a = append(a, "-nic", "none")
	}
	for i, n := range m.Spec.NICs {
		// The agent plugged the TAP into the network's bridge.
		a = append(a, "-netdev", fmt.Sprintf("tap,id=net%d,ifname=%s,script=no,downscript=no", i, n.Device),
			"-device", fmt.Sprintf("virtio-net-pci,netdev=net%d,mac=%s", i, n.MAC))
	}
	// The disks come after the NICs, in this order, as they did when they
	// were -drive if=virtio: the guest's PCI layout (and so a state saved
	// before) stays the same.
	seed := vmimage.Node(p("seed.iso"), vmimage.FormatRaw)
	readOnly(seed)
	root := d.diskTree(id, m)
	if m.Spec.BootVolume != "" {
		root = bootNode(m)
	}
	disks := []struct {
		name string
		node map[string]any
	}{{"disk", root}, {"seed", seed}}
	if exists(p("swap.img")) {
		disks = append(disks, struct {
			name string
			node map[string]any
		}{"swap", vmimage.Node(p("swap.img"), vmimage.FormatRaw)})
	}
	for _, disk := range disks {
		disk.node["node-name"] = disk.name
		b, _ := json.Marshal(disk.node)
		a = append(a, "-blockdev", string(b), "-device", "virtio-blk-pci,drive="+disk.name)
	}
	a = append(a, volumeArgs(m.Spec.Volumes)...)
	if m.Kernel != "" {
		a = append(a, "-kernel", m.Kernel)
		if m.Initrd != "" {
			a = append(a, "-initrd", m.Initrd)
		}
		cmdline := m.Cmdline
		if cmdline == "" {
			cmdline = "console=ttyS0 root=/dev/vda rw"
		}
		a = append(a, "-append", cmdline)
	}
	// The display comes last, so that the devices above keep their PCI
	// slots (and states saved without a display restore): VNC on a unix
	// socket only, never a TCP port (console.go bridges it).
	a = append(a, displayArgs(d.sock(id, vncSocket))...)
	switch incoming {
	case "":
	case incomingLive:
		// A live migration's target: paused until its source says the
		// disk is complete too (live.go).
		a = append(a, "-S", "-incoming", "defer")
	default:
		// A saved state: QEMU waits for the descriptor of the file kumo
		// opens for it (restore).
		a = append(a, "-incoming", "defer")
	}
	// libvirt's sandbox: no obsolete or privilege-raising system calls, no
	// new processes, no scheduler or resource changes. QEMU runs as root
	// here, so a guest that escapes emulation still cannot exec a shell.
	return append(a, "-sandbox", "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny")
}

// diskTree is the VM's disk as one QEMU node tree: the overlay (qcow2,
// written by kumo) over the cached base given explicitly as its backing
// node - or "backing": null - every node naming its format driver and the
// file protocol driver. QEMU probes nothing and follows no name found in a
// header; the files it opens are the instance's overlay and the cached
// base the driver checked when it filled the cache.
func (d *Driver) diskTree(id string, m meta) map[string]any {
	n := vmimage.Node(d.path(id, "disk.qcow2"), vmimage.FormatQcow2)
	n["discard"] = "unmap"
	n["file"].(map[string]any)["discard"] = "unmap"
	if m.Base != "" {
		b := vmimage.Node(m.Base, m.BaseFormat)
		b["node-name"] = "base"
		readOnly(b)
		n["backing"] = b
	}
	return n
}

// readOnly opens a node and its file read-only.
func readOnly(n map[string]any) {
	n["read-only"] = true
	n["file"].(map[string]any)["read-only"] = true
}

// legacyBase finds the base of an overlay made before meta kept it (the
// overlay is kumo's own file: its header is trusted to name the base).
func legacyBase(ctx context.Context, overlay string) (string, string, error) {
	n := vmimage.Node(overlay, vmimage.FormatQcow2)
	delete(n, "backing")
	out, err := exec.CommandContext(ctx, "qemu-img", "info", "-U", "--output=json", vmimage.JSONFilename(n)).Output()
	if err != nil {
		return "", "", fmt.Errorf("qemu-img info of the overlay: %w", err)
	}
	var info struct {
		Backing string `json:"backing-filename"`
		Format  string `json:"backing-filename-format"`
	}
	if err := json.Unmarshal(out, &info); err != nil {
		return "", "", err
	}
	if info.Format != "" && info.Format != vmimage.FormatQcow2 && info.Format != vmimage.FormatRaw {
		return "", "", fmt.Errorf("the overlay's base is %s", info.Format)
	}
	return info.Backing, info.Format, nil
}

// withBase fills in the base of a VM prepared before meta kept it.
func (d *Driver) withBase(ctx context.Context, id string, m meta) (meta, error) {
	if m.BaseKnown {
		return m, nil
	}
	base, format, err := legacyBase(ctx, d.path(id, "disk.qcow2"))
	if err != nil {
		return m, err
	}
	m.Base, m.BaseFormat, m.BaseKnown = base, format, true
	return d.movePaths(m), nil
}

// Start implements driver.Driver (BOOT): a fresh boot, or the restore of a
// saved state. It returns when QEMU runs the guest.
func (d *Driver) Start(ctx context.Context, s driver.Spec) error {
	return d.act(ctx, s.ID, func(m meta, qs string) error {
		switch qs {
		case "running":
			return nil
		case "paused":
			return fmt.Errorf("%w: suspended (resume it)", driver.ErrState)
		case "":
		default: // a guest that powered off, not yet reaped
			d.ensureQuit(ctx, s.ID)
		}
		m = withVolumes(m, s)
		if _, ok := bootVolume(m.Spec); m.Spec.BootVolume != "" && !ok {
			return fmt.Errorf("boot volume %s is not attached on this host", m.Spec.BootVolume)
		}
		return d.boot(ctx, s.ID, m)
	})
}

// boot starts QEMU for a VM: a fresh boot, or the restore of its saved
// state; on failure the record says what is still there to start.
func (d *Driver) boot(ctx context.Context, id string, m meta) error {
	state := d.path(id, "state.bin")
	incoming := ""
	if m.Want == wantSaved && exists(state) {
		if m.Accel != "" && m.Accel != d.accel {
			return fmt.Errorf("the VM was saved under %s and this host runs %s: a saved state restores only under the same acceleration", m.Accel, d.accel)
		}
		incoming = state
	} else {
		m.BootAt, m.BootOffset = time.Now().UTC(), logSize(d.path(id, "console.log"))
	}
	m.Want, m.Reason, m.Accel = wantRunning, "", d.accel
	var err error
	if m, err = d.withBase(ctx, id, m); err != nil {
		return err
	}
	if err := d.writeMeta(id, m); err != nil {
		return err
	}
	if err := d.spawn(ctx, id, m, incoming); err != nil {
		m.Want = wantStopped
		if incoming != "" {
			m.Want = wantSaved // the state is still there to try again
		}
		d.writeMeta(id, m)
		return err
	}
	if incoming != "" {
		err := d.restore(ctx, id, incoming)
		if err == nil {
			err = d.waitRunning(ctx, id)
		}
		if err != nil {
			d.ensureQuit(ctx, id)
			m.Want = wantSaved
			d.writeMeta(id, m)
			return fmt.Errorf("restoring the saved state: %w", err)
		}
		os.Remove(state)
	}
	return nil
}

// spawn starts QEMU in its own session; its errors go to qemu.log. QEMU
// does not daemonize itself: its seccomp sandbox (args) forbids the fork
// -daemonize needs. It is ready when its QMP socket answers; a QEMU that
// exits first failed to start. The agent reaps it; an agent that restarts
// leaves it to init, and finds it again by its pidfile.
func (d *Driver) spawn(ctx context.Context, id string, m meta, incoming string) error {
	os.Remove(d.path(id, "qemu.pid"))
	os.RemoveAll(d.sock(id, ""))
	if err := os.MkdirAll(d.sock(id, ""), 0o700); err != nil {
		return err
	}
	logf, err := os.Create(d.path(id, "qemu.log"))
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd := exec.Command(d.qemu, d.args(id, m, incoming)...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("qemu did not start: %v", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	if err := d.waitQMP(ctx, id, exited); err != nil {
		cmd.Process.Kill()
		b, _ := os.ReadFile(d.path(id, "qemu.log"))
		return fmt.Errorf("qemu did not start: %v: %s", err, oneLine(b))
	}
	if err := d.cgroups.Join(cmd.Process.Pid, id, d.limits(m.Spec.Size)); err != nil {
		d.ensureQuit(ctx, id)
		return fmt.Errorf("moving qemu into its cgroup: %w", err)
	}
	return nil
}

// waitQMP waits until a starting QEMU's QMP socket answers, or it exits.
func (d *Driver) waitQMP(ctx context.Context, id string, exited <-chan error) error {
	wc, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	for {
		select {
		case err := <-exited:
			return fmt.Errorf("it exited (%v)", err)
		default:
		}
		if c, err := qmp.Dial(wc, d.sock(id, "qmp.sock")); err == nil {
			c.Close()
			return nil
		}
		select {
		case err := <-exited:
			return fmt.Errorf("it exited (%v)", err)
		case <-wc.Done():
			return fmt.Errorf("its QMP socket did not answer: %w", wc.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// restore hands a QEMU started with -incoming defer its saved state: kumo
// opens the file and passes the descriptor over QMP.
func (d *Driver) restore(ctx context.Context, id, state string) error {
	f, err := os.Open(state)
	if err != nil {
		return err
	}
	defer f.Close()
	c, err := d.dial(ctx, id)
	if err != nil {
		return err
	}
	defer c.Close()
	if err := c.ExecuteWithFile(ctx, "getfd", map[string]any{"fdname": "kumo-restore"}, nil, f); err != nil {
		return err
	}
	return c.Execute(ctx, "migrate-incoming", map[string]any{"uri": "fd:kumo-restore"}, nil)
}

// waitRunning waits for a restore to finish (the guest then runs).
func (d *Driver) waitRunning(ctx context.Context, id string) error {
	wc, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	for {
		qs, err := d.qemuState(wc, id)
		switch {
		case qs == "running":
			return nil
		case qs == "paused":
			// The state was saved from a paused VM (Save pauses first):
			// once loaded, it continues.
			if err := d.do(wc, id, "cont", nil, nil); err != nil {
				return err
			}
			continue
		case qs == "" && err == nil:
			b, _ := os.ReadFile(d.path(id, "qemu.log"))
			return fmt.Errorf("qemu exited: %s", oneLine(b))
		case qs != "inmigrate" && qs != "prelaunch" && qs != "" && qs != "restore-vm":
			return fmt.Errorf("qemu is %s after the restore", qs)
		}
		select {
		case <-wc.Done():
			return wc.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}
