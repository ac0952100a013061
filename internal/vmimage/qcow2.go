package vmimage

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"os"
)

// Formats kumo knows a disk image's bytes by, decided by kumo itself (never by
// QEMU's probe, which would open whatever a hostile header names). The image
// service accepts an image only when its declared format is the one Sniff
// finds, so the bytes alone say how every host opens them.
const (
	FormatQcow2 = "qcow2"
	FormatRaw   = "raw"
	// FormatGzip is a vm-kernel tarball (or a container rootfs).
	FormatGzip = "gzip"
	// FormatKernelTarball is the declared format of a vm-kernel image
	// (its bytes sniff as FormatGzip).
	FormatKernelTarball = "tar.gz"
)

// probeSize is how much of a file Sniff looks at (QEMU's probe buffer).
const probeSize = 2048

// magics are the headers of the disk formats QEMU can open (its probes,
// block/*.c): a "raw" disk that begins like one of them is refused, so no
// tool that probes could ever read it as that format. vdi's sits at 64.
var magics = []struct {
	format string
	at     int
	magic  string
}{
	{"qcow", 0, "QFI\xfb"}, // qcow2 when the version is 2 or 3 (below)
	{"qed", 0, "QED\x00"},
	{"vmdk", 0, "KDMV"},
	{"vmdk", 0, "COWD"},
	{"vdi", 64, "\x7f\x10\xda\xbe"},
	{"vpc", 0, "conectix"},
	{"vhdx", 0, "vhdxfile"},
	{"luks", 0, "LUKS\xba\xbe"},
	{"parallels", 0, "WithoutFreeSpace"},
	{"parallels", 0, "WithouFreSpacExt"},
	{"bochs", 0, "Bochs Virtual HD Image"},
	{"cloop", 0, "#!/bin/sh\n#V2.0 Format\n"},
	{FormatGzip, 0, "\x1f\x8b"},
}

// Sniff says what a disk image's first bytes are: qcow2, gzip, another
// format QEMU knows (vmdk, qed...), or raw when they look like none.
func Sniff(head []byte) string {
	for _, m := range magics {
		if len(head) >= m.at+len(m.magic) && string(head[m.at:m.at+len(m.magic)]) == m.magic {
			if m.format == "qcow" && len(head) >= 8 {
				if v := binary.BigEndian.Uint32(head[4:8]); v == 2 || v == 3 {
					return FormatQcow2
				}
			}
			return m.format
		}
	}
	if vmdkDescriptor(head) {
		return "vmdk"
	}
	return FormatRaw
}

// SniffFile is Sniff of a file's first bytes.
func SniffFile(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	head := make([]byte, probeSize)
	n, err := io.ReadFull(f, head)
	if err != nil && err != io.ErrUnexpectedEOF && err != io.EOF {
		return "", err
	}
	return Sniff(head[:n]), nil
}

// vmdkDescriptor is QEMU's test for a text VMDK descriptor (which names
// extent files anywhere): comment and blank lines, then "version=N".
func vmdkDescriptor(b []byte) bool {
	for len(b) > 0 {
		line, rest, _ := bytes.Cut(b, []byte("\n"))
		t := bytes.TrimRight(bytes.TrimLeft(line, " "), "\r")
		switch {
		case bytes.HasPrefix(line, []byte("#")), len(t) == 0:
			b = rest
			continue
		}
		return bytes.HasPrefix(line, []byte("version=")) && len(t) == len("version=N") && t[8] >= '1' && t[8] <= '3'
	}
	return false
}

// qcow2 header extension types (QEMU's docs/interop/qcow2.txt).
const (
	extEnd          = 0x00000000
	extBackingFmt   = 0xe2792aca
	extFeatureTable = 0x6803f857
	extBitmaps      = 0x23852875
	extEncryption   = 0x0537be77
	extDataFile     = 0x44415441
)

// Incompatible feature bits: dirty (0), corrupt (1), external data file
// (2), compression type (3), extended L2 entries (4). A bit QEMU adds later
// is unknown here and refused.
const (
	incompatDirty        = 1 << 0
	incompatCorrupt      = 1 << 1
	incompatDataFile     = 1 << 2
	incompatKnownAndSafe = incompatDirty | 1<<3 | 1<<4
)

// checkQcow2Header reads a qcow2 header and its extensions and refuses
// everything that names or needs another file: a backing file (its name
// may be a json: spec opening any driver on anything), an external data
// file (whose bytes the guest would read as its disk), encryption, and
// any feature or extension kumo does not know (fail closed). It runs
// before qemu-img sees the file, so no tool is asked to open a reference.
func checkQcow2Header(f io.ReaderAt) error {
	hdr := make([]byte, 112)
	n, err := f.ReadAt(hdr, 0)
	if n < 72 {
		return fmt.Errorf("truncated qcow2 header: %v", err)
	}
	be := binary.BigEndian
	if string(hdr[:4]) != "QFI\xfb" {
		return fmt.Errorf("not a qcow2 image")
	}
	version := be.Uint32(hdr[4:])
	if version != 2 && version != 3 {
		return fmt.Errorf("qcow2 version %d: kumo takes versions 2 and 3", version)
	}
	if off, size := be.Uint64(hdr[8:]), be.Uint32(hdr[16:]); off != 0 || size != 0 {
		name := ""
		if size > 0 && size < 1024 {
			b := make([]byte, size)
			if _, err := f.ReadAt(b, int64(off)); err == nil {
				name = fmt.Sprintf(" %q", b)
			}
		}
		return fmt.Errorf("the disk has a backing file%s: upload a standalone disk (qemu-img convert -O qcow2)", name)
	}
	clusterBits := be.Uint32(hdr[20:])
	if clusterBits < 9 || clusterBits > 21 {
		return fmt.Errorf("qcow2 cluster bits %d out of range", clusterBits)
	}
	if m := be.Uint32(hdr[32:]); m != 0 {
		return fmt.Errorf("the disk is encrypted (method %d)", m)
	}
	extStart := uint32(72)
	if version == 3 {
		if n < 104 {
			return fmt.Errorf("truncated qcow2 v3 header: %v", err)
		}
		incompat := be.Uint64(hdr[72:])
		switch {
		case incompat&incompatDataFile != 0:
			return fmt.Errorf("the disk has an external data file: its data would be read from another file on the host; upload a standalone disk (qemu-img convert -O qcow2)")
		case incompat&incompatCorrupt != 0:
			return fmt.Errorf("the disk is marked corrupt (qemu-img check -r all)")
		case incompat&^uint64(incompatKnownAndSafe) != 0:
			return fmt.Errorf("the disk uses qcow2 features kumo does not know (incompatible bits %#x)", incompat&^uint64(incompatKnownAndSafe))
		}
		extStart = be.Uint32(hdr[100:])
		if extStart < 104 {
			return fmt.Errorf("qcow2 header length %d is too short", extStart)
		}
	}
	// Extensions lie in the first cluster, each type, length and data
	// padded to 8 bytes, up to an end marker.
	cluster := uint32(1) << clusterBits
	for off := extStart; ; {
		if off+8 > cluster {
			return fmt.Errorf("qcow2 header extensions run past the first cluster")
		}
		var eh [8]byte
		if _, err := f.ReadAt(eh[:], int64(off)); err != nil {
			return fmt.Errorf("truncated qcow2 header extension: %v", err)
		}
		typ, length := be.Uint32(eh[:]), be.Uint32(eh[4:])
		switch typ {
		case extEnd:
			return nil
		case extFeatureTable, extBitmaps:
		case extBackingFmt:
			return fmt.Errorf("the disk names a backing file format: upload a standalone disk (qemu-img convert -O qcow2)")
		case extDataFile:
			return fmt.Errorf("the disk names an external data file: upload a standalone disk (qemu-img convert -O qcow2)")
		case extEncryption:
			return fmt.Errorf("the disk is encrypted")
		default:
			return fmt.Errorf("the disk has a qcow2 header extension kumo does not know (%#x)", typ)
		}
		next := uint64(off) + 8 + (uint64(length)+7)&^7
		if next > uint64(cluster) {
			return fmt.Errorf("qcow2 header extensions run past the first cluster")
		}
		off = uint32(next)
	}
}
