package vmimage

import (
	"encoding/binary"
	"fmt"
	"os"
)

// ReadQcow2Bitmap reads a persistent dirty bitmap QEMU stored in a qcow2
// file kumo made (docs/interop/qcow2.txt in QEMU's sources: the bitmaps
// header extension, its directory, each bitmap's table of clusters, one
// bit a granule, least significant bit first). It returns the bitmap's
// granularity and the indices of its set granules. A bitmap QEMU left
// in use (it did not close the file), or one with extra data kumo does
// not know, is an error: nothing is guessed.
func ReadQcow2Bitmap(path, name string) (granularity int64, set []int64, err error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, nil, err
	}
	defer f.Close()
	be := binary.BigEndian
	read := func(off uint64, n int) ([]byte, error) {
		if n < 0 || n > 64<<20 {
			return nil, fmt.Errorf("qcow2 bitmap: a read of %d bytes", n)
		}
		b := make([]byte, n)
		if _, err := f.ReadAt(b, int64(off)); err != nil {
			return nil, fmt.Errorf("qcow2 bitmap: reading %d bytes at %d: %w", n, off, err)
		}
		return b, nil
	}
	hdr, err := read(0, 104)
	if err != nil {
		return 0, nil, err
	}
	if string(hdr[:4]) != "QFI\xfb" || be.Uint32(hdr[4:]) != 3 {
		return 0, nil, fmt.Errorf("%s is not a qcow2 v3 file", path)
	}
	clusterBits := be.Uint32(hdr[20:])
	if clusterBits < 9 || clusterBits > 21 {
		return 0, nil, fmt.Errorf("qcow2 cluster bits %d out of range", clusterBits)
	}
	cluster := uint64(1) << clusterBits
	size := be.Uint64(hdr[24:])
	var dirOff, dirSize uint64
	var nb uint32
	found := false
	for off := uint64(be.Uint32(hdr[100:])); off+8 <= cluster; {
		eh, err := read(off, 8)
		if err != nil {
			return 0, nil, err
		}
		typ, length := be.Uint32(eh), be.Uint32(eh[4:])
		if typ == extEnd {
			break
		}
		if typ == extBitmaps {
			if length < 24 {
				return 0, nil, fmt.Errorf("qcow2 bitmaps extension of %d bytes", length)
			}
			e, err := read(off+8, 24)
			if err != nil {
				return 0, nil, err
			}
			nb, dirSize, dirOff, found = be.Uint32(e), be.Uint64(e[8:]), be.Uint64(e[16:]), true
		}
		off += 8 + (uint64(length)+7)&^7
	}
	if !found || nb == 0 {
		return 0, nil, fmt.Errorf("%s has no bitmap %q", path, name)
	}
	if dirSize > 64<<20 {
		return 0, nil, fmt.Errorf("qcow2 bitmap directory of %d bytes", dirSize)
	}
	dir, err := read(dirOff, int(dirSize))
	if err != nil {
		return 0, nil, err
	}
	for p, i := uint64(0), uint32(0); i < nb; i++ {
		if p+24 > uint64(len(dir)) {
			return 0, nil, fmt.Errorf("qcow2 bitmap directory truncated")
		}
		e := dir[p:]
		tableOff, tableSize, flags := be.Uint64(e), be.Uint32(e[8:]), be.Uint32(e[12:])
		gbits, nameSize, extra := uint32(e[17]), uint64(be.Uint16(e[18:])), uint64(be.Uint32(e[20:]))
		if p+24+extra+nameSize > uint64(len(dir)) {
			return 0, nil, fmt.Errorf("qcow2 bitmap directory truncated")
		}
		n := string(e[24+extra : 24+extra+nameSize])
		p += (24 + extra + nameSize + 7) &^ 7
		if n != name {
			continue
		}
		switch {
		case flags&1 != 0:
			return 0, nil, fmt.Errorf("bitmap %q is in use: QEMU did not close the file", name)
		case extra != 0 || e[16] != 1 || gbits < 9 || gbits > 31:
			return 0, nil, fmt.Errorf("bitmap %q: a kind kumo does not read (type %d, granularity bits %d, %d bytes of extra data)", name, e[16], gbits, extra)
		}
		granularity = int64(1) << gbits
		granules := (size + uint64(granularity) - 1) / uint64(granularity)
		perCluster := cluster * 8
		if want := (granules + perCluster - 1) / perCluster; uint64(tableSize) != want {
			return 0, nil, fmt.Errorf("bitmap %q: a table of %d clusters for %d granules", name, tableSize, granules)
		}
		table, err := read(tableOff, int(tableSize)*8)
		if err != nil {
			return 0, nil, err
		}
		for c := uint64(0); c < uint64(tableSize); c++ {
			ent := be.Uint64(table[c*8:])
			first := c * perCluster
			last := min(granules, first+perCluster)
			dataOff := ent & 0x00fffffffffffe00
			switch {
			case dataOff == 0 && ent&1 == 0: // all zeros
			case dataOff == 0: // all ones
				for g := first; g < last; g++ {
					set = append(set, int64(g))
				}
			default:
				bits, err := read(dataOff, int(cluster))
				if err != nil {
					return 0, nil, err
				}
				for g := first; g < last; g++ {
					k := g - first
					if bits[k/8]&(1<<(k%8)) != 0 {
						set = append(set, int64(g))
					}
				}
			}
		}
		return granularity, set, nil
	}
	return 0, nil, fmt.Errorf("%s has no bitmap %q", path, name)
}
