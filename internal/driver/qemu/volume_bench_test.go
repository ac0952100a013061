package qemu

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kumocloud/kumo/internal/driver"
	"github.com/kumocloud/kumo/internal/driver/local"
)

// fioJobs are the workloads BenchmarkVolumeIO runs in the guest, each on
// the volume's raw device with O_DIRECT and libaio (the guest's page cache
// out of the way): sequential 1 MiB reads and writes, random 4 KiB ones.
var fioJobs = []struct{ rw, bs, depth string }{
	{"read", "1M", "4"}, {"write", "1M", "4"}, {"randread", "4k", "16"}, {"randwrite", "4k", "16"},
}

// Serials the guest finds its disks by.
const (
	benchVolID   = "benchvolume-0000000000000000"
	benchToolsID = "benchtools-00000000000000000"
)

// fioScript is the user-data of the guest: find the volume and the tools
// disk by serial, run each fio job, print its terse line on the console.
func fioScript(runtime int) string {
	var jobs []string
	for _, j := range fioJobs {
		jobs = append(jobs, j.rw+" "+j.bs+" "+j.depth)
	}
	return `#!/bin/sh
(
V=; T=
while [ -z "$V" ] || [ -z "$T" ]; do
	for b in /sys/block/vd*; do
		case "$(cat $b/serial 2>/dev/null)" in
		` + benchVolID[:20] + `) V=/dev/${b##*/};;
		` + benchToolsID[:20] + `) T=/dev/${b##*/};;
		esac
	done
	sleep 0.2
done
mkdir -p /t && mount -t ext4 -o ro $T /t
for j in "` + strings.Join(jobs, `" "`) + `"; do
	set -- $j
	r=$(/t/lib/ld.so --library-path /t/lib /t/fio --minimal --name=$1 --filename=$V --direct=1 --ioengine=libaio \
		--rw=$1 --bs=$2 --iodepth=$3 --size=512M --ramp_time=1 --runtime=` + strconv.Itoa(runtime) + ` --time_based 2>&1 | tr '\n' ' ')
	echo "fio-result $1 $r" >/dev/ttyS0
done
echo "fio-done" >/dev/ttyS0
) &
`
}

// fioToolsDisk makes an ext4 image holding the host's fio (Debian's) and
// every library it links, with the dynamic loader as lib/ld.so: the
// guest runs it from there.
func fioToolsDisk(b *testing.B, dir string) string {
	fio, err := exec.LookPath("fio")
	if err != nil {
		b.Skip("fio is not installed (make deps installs it): the guest runs the host's fio")
	}
	root := filepath.Join(dir, "tools")
	os.MkdirAll(filepath.Join(root, "lib"), 0o755)
	cp := func(src, dst string) {
		if out, err := exec.Command("cp", "-L", src, dst).CombinedOutput(); err != nil {
			b.Fatalf("cp %s: %v %s", src, err, out)
		}
	}
	cp(fio, filepath.Join(root, "fio"))
	out, err := exec.Command("ldd", fio).Output()
	if err != nil {
		b.Fatalf("ldd fio: %v", err)
	}
	for _, l := range strings.Split(string(out), "\n") {
		f := strings.Fields(l)
		switch {
		case len(f) >= 3 && f[1] == "=>":
			cp(f[2], filepath.Join(root, "lib", f[0]))
		case len(f) >= 1 && strings.Contains(f[0], "ld-linux"):
			cp(f[0], filepath.Join(root, "lib", "ld.so"))
		}
	}
	img := filepath.Join(dir, "tools.img")
	if out, err := exec.Command("mkfs.ext4", "-q", "-F", "-d", root, img, "256M").CombinedOutput(); err != nil {
		b.Fatalf("mkfs.ext4: %v %s", err, out)
	}
	return img
}

// fioSummary is one run's figures: MiB/s sequential, IOPS random.
func fioSummary(r map[string][2]float64) string {
	var out []string
	for _, j := range fioJobs {
		if strings.HasPrefix(j.rw, "rand") {
			out = append(out, fmt.Sprintf("%s %.0f IOPS", j.rw, r[j.rw][1]))
		} else {
			out = append(out, fmt.Sprintf("%s %.0f MiB/s", j.rw, r[j.rw][0]/1024))
		}
	}
	return strings.Join(out, ", ")
}

var fioLine = regexp.MustCompile(`fio-result (\S+) (3;[^\r\n]*)`)

// fioResults waits for the guest's fio-done line in a console log and
// returns each job's bandwidth (KiB/s) and IOPS.
func fioResults(b *testing.B, log string) map[string][2]float64 {
	deadline := time.Now().Add(15 * time.Minute)
	for {
		bs, _ := os.ReadFile(log)
		if bytes.Contains(bs, []byte("fio-done")) {
			res := map[string][2]float64{}
			for _, m := range fioLine.FindAllStringSubmatch(string(bs), -1) {
				f := strings.Split(m[2], ";")
				bw, iops := 6, 7 // read
				if strings.HasSuffix(m[1], "write") {
					bw, iops = 47, 48
				}
				if len(f) <= iops {
					b.Fatalf("fio %s: %s", m[1], m[2])
				}
				x, _ := strconv.ParseFloat(f[bw], 64)
				y, _ := strconv.ParseFloat(f[iops], 64)
				res[m[1]] = [2]float64{x, y}
			}
			if len(res) != len(fioJobs) {
				b.Fatalf("fio ran %d jobs of %d: %s", len(res), len(fioJobs), bs)
			}
			return res
		}
		if time.Now().After(deadline) {
			b.Fatalf("no fio-done in %s: %s", log, bs)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// BenchmarkVolumeIO measures, in one run, I/O inside a tiny-vm guest on a
// kumo volume (the driver's Start, the volume hot-plugged by AttachVolume
// as 'kumo volume attach' does) against the bare qemu-system-x86_64 with
// the same arguments and the same volume file given as QEMU's
// documentation advises for a local qcow2 (-drive ...,cache=none): fio from the host's Debian in the guest, O_DIRECT and
// libaio on the raw device, sequential 1 MiB and random 4 KiB reads and
// writes. The volume is a 1 GiB qcow2 written whole first (as a volume in
// use is), so neither side pays for allocating clusters. The two sides
// alternate which goes first. KUMO_BENCH_FIO_SECONDS sets each job's
// length (default 8).
func BenchmarkVolumeIO(b *testing.B) {
	sum, fetch := tinyVM(b)
	dir := b.TempDir()
	tools := fioToolsDisk(b, dir)
	d := newDriver(b, filepath.Join(dir, "state"), fetch)
	ctx := context.Background()
	secs := 8
	if v, err := strconv.Atoi(os.Getenv("KUMO_BENCH_FIO_SECONDS")); err == nil && v > 0 {
		secs = v
	}
	script := fioScript(secs)

	vol := filepath.Join(dir, "vol.qcow2")
	if out, err := exec.Command("qemu-img", "create", "-q", "-f", "qcow2", "-o", "preallocation=full", vol, "1G").CombinedOutput(); err != nil {
		b.Fatalf("qemu-img create: %v %s", err, out)
	}
	// Written through the page cache: flushed now, so that the first side
	// to open it with O_DIRECT does not pay for writing back 1 GiB.
	if out, err := exec.Command("sync", vol).CombinedOutput(); err != nil {
		b.Fatalf("sync: %v %s", err, out)
	}
	toolsVol := driver.Volume{ID: benchToolsID, Format: "raw", Source: tools, Device: "vdc"}
	dataVol := driver.Volume{ID: benchVolID, Format: "qcow2", Source: vol, Device: "vdb"}

	base := spec("bare", sum, 512, script)
	if err := d.Prepare(ctx, base); err != nil {
		b.Fatal(err)
	}
	defer d.Cleanup(ctx, base.ID, false)
	m, _ := d.readMeta(base.ID)
	args := d.args(base.ID, m, "")
	slot, _ := volSlot(dataVol.Device)
	// The bare command: kumo's arguments for the same VM (without the
	// volume), the tools disk as kumo gives it, the volume by hand.
	args = append(args[:len(args)-2:len(args)-2], volumeArgs([]driver.Volume{toolsVol})...)
	args = append(args, "-drive", "file="+vol+",format=qcow2,if=none,id=bench,cache=none",
		"-device", "virtio-blk-pci,drive=bench,serial="+benchVolID[:20]+",addr="+slot,
		"-sandbox", "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny")

	// The bare QEMU goes into a cgroup of its own as kumo's does, with
	// the same limits (KUMO_BENCH_BARE_LIMITS=0: none): on a loaded host a
	// cgroup competes for CPU as one, where a process outside any takes a
	// share per thread, and under TCG the guest's I/O is CPU-bound.
	bareCgroup := "bench-bare-" + filepath.Base(dir)
	bareLimits := d.limits(base.Size)
	if os.Getenv("KUMO_BENCH_BARE_LIMITS") == "0" {
		bareLimits = local.Limits{}
	}
	kumo := map[string][2]float64{}
	bare := map[string][2]float64{}
	add := func(to, r map[string][2]float64) {
		for k, v := range r {
			to[k] = [2]float64{to[k][0] + v[0], to[k][1] + v[1]}
		}
	}
	runKumo := func(i int) {
		s := spec(fmt.Sprintf("k%d", i), sum, 512, script)
		s.Volumes = []driver.Volume{toolsVol}
		if err := d.Prepare(ctx, s); err != nil {
			b.Fatal(err)
		}
		defer d.Cleanup(ctx, s.ID, false)
		if err := d.Start(ctx, s); err != nil {
			b.Fatal(err)
		}
		defer d.Stop(ctx, s.ID, true)
		if err := d.AttachVolume(ctx, s.ID, dataVol); err != nil {
			b.Fatal(err)
		}
		r := fioResults(b, d.path(s.ID, "console.log"))
		b.Logf("kumo, run %d: %s", i, fioSummary(r))
		add(kumo, r)
	}
	runBare := func(i int) {
		log := d.path(base.ID, "console.log")
		os.Remove(log)
		os.MkdirAll(d.sock(base.ID, ""), 0o700)
		var out bytes.Buffer
		cmd := exec.Command(d.qemu, args...)
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Start(); err != nil {
			b.Fatalf("bare qemu: %v", err)
		}
		go func() { cmd.Wait() }() // QEMU does not daemonize (its sandbox forbids the fork)
		defer local.Cgroups{}.Remove(bareCgroup)
		defer d.ensureQuit(ctx, base.ID)
		if err := (local.Cgroups{}).Join(cmd.Process.Pid, bareCgroup, bareLimits); err != nil {
			b.Fatal(err)
		}
		r := fioResults(b, log)
		b.Logf("bare, run %d: %s", i, fioSummary(r))
		add(bare, r)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if i%2 == 0 {
			runKumo(i)
			runBare(i)
		} else {
			runBare(i)
			runKumo(i)
		}
	}
	b.StopTimer()
	n := float64(b.N)
	for _, j := range fioJobs {
		k, q := kumo[j.rw], bare[j.rw]
		if strings.HasPrefix(j.rw, "rand") {
			b.ReportMetric(k[1]/n, j.rw+"-kumo-iops")
			b.ReportMetric(q[1]/n, j.rw+"-qemu-iops")
			b.ReportMetric(k[1]/q[1], j.rw+"-ratio")
		} else {
			b.ReportMetric(k[0]/1024/n, j.rw+"-kumo-MiB/s")
			b.ReportMetric(q[0]/1024/n, j.rw+"-qemu-MiB/s")
			b.ReportMetric(k[0]/q[0], j.rw+"-ratio")
		}
	}
}
