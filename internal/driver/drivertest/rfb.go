package drivertest

import (
	"encoding/binary"
	"fmt"
	"io"
)

// Frame is what a VNC server showed: the framebuffer's size and the
// pixels of one full update (32 bits each, as the server's pixel format).
type Frame struct {
	Width, Height int
	Name          string
	Pixels        []byte
}

// Lit counts the pixels that are not black.
func (f Frame) Lit() int {
	n := 0
	for i := 0; i+4 <= len(f.Pixels); i += 4 {
		if f.Pixels[i]|f.Pixels[i+1]|f.Pixels[i+2] != 0 {
			n++
		}
	}
	return n
}

// RFBFrame speaks RFB 3.8 (RFC 6143) as a viewer does over rw: the
// version banner, security type None, a shared ClientInit, then one
// non-incremental update request for the whole screen in 32-bit raw
// pixels; it returns the frame the server sent back.
func RFBFrame(rw io.ReadWriter) (Frame, error) {
	var f Frame
	banner := make([]byte, 12)
	if _, err := io.ReadFull(rw, banner); err != nil {
		return f, fmt.Errorf("banner: %w", err)
	}
	if string(banner) != "RFB 003.008\n" {
		return f, fmt.Errorf("banner %q, want RFB 003.008", banner)
	}
	if _, err := rw.Write(banner); err != nil {
		return f, err
	}
	var n [1]byte
	if _, err := io.ReadFull(rw, n[:]); err != nil || n[0] == 0 {
		return f, fmt.Errorf("security types: %d, %v", n[0], err)
	}
	types := make([]byte, n[0])
	if _, err := io.ReadFull(rw, types); err != nil {
		return f, err
	}
	none := false
	for _, t := range types {
		none = none || t == 1
	}
	if !none {
		return f, fmt.Errorf("security types %v offer no None (1)", types)
	}
	if _, err := rw.Write([]byte{1}); err != nil {
		return f, err
	}
	var result uint32
	if err := binary.Read(rw, binary.BigEndian, &result); err != nil || result != 0 {
		return f, fmt.Errorf("security result %d, %v", result, err)
	}
	if _, err := rw.Write([]byte{1}); err != nil { // shared
		return f, err
	}
	var init struct {
		W, H    uint16
		Format  [16]byte
		NameLen uint32
	}
	if err := binary.Read(rw, binary.BigEndian, &init); err != nil {
		return f, fmt.Errorf("server init: %w", err)
	}
	if init.NameLen > 1<<16 {
		return f, fmt.Errorf("server name of %d bytes", init.NameLen)
	}
	name := make([]byte, init.NameLen)
	if _, err := io.ReadFull(rw, name); err != nil {
		return f, err
	}
	f.Width, f.Height, f.Name = int(init.W), int(init.H), string(name)
	// SetPixelFormat: 32 bpp, depth 24, little endian, true colour.
	pf := []byte{0, 0, 0, 0, 32, 24, 0, 1, 0, 255, 0, 255, 0, 255, 16, 8, 0, 0, 0, 0}
	// SetEncodings: raw only.
	enc := []byte{2, 0, 0, 1, 0, 0, 0, 0}
	req := []byte{3, 0, 0, 0, 0, 0, byte(init.W >> 8), byte(init.W), byte(init.H >> 8), byte(init.H)}
	for _, m := range [][]byte{pf, enc, req} {
		if _, err := rw.Write(m); err != nil {
			return f, err
		}
	}
	f.Pixels = make([]byte, 4*f.Width*f.Height)
	for {
		var typ [1]byte
		if _, err := io.ReadFull(rw, typ[:]); err != nil {
			return f, fmt.Errorf("update: %w", err)
		}
		if typ[0] != 0 { // only updates were asked for
			return f, fmt.Errorf("server message type %d, want a framebuffer update", typ[0])
		}
		var hdr struct {
			Pad   uint8
			Rects uint16
		}
		if err := binary.Read(rw, binary.BigEndian, &hdr); err != nil {
			return f, err
		}
		for range hdr.Rects {
			var r struct {
				X, Y, W, H uint16
				Encoding   int32
			}
			if err := binary.Read(rw, binary.BigEndian, &r); err != nil {
				return f, err
			}
			if r.Encoding != 0 {
				return f, fmt.Errorf("rectangle in encoding %d, want raw", r.Encoding)
			}
			if int(r.X)+int(r.W) > f.Width || int(r.Y)+int(r.H) > f.Height {
				return f, fmt.Errorf("rectangle %+v outside %dx%d", r, f.Width, f.Height)
			}
			row := make([]byte, 4*int(r.W))
			for y := range int(r.H) {
				if _, err := io.ReadFull(rw, row); err != nil {
					return f, err
				}
				copy(f.Pixels[4*((int(r.Y)+y)*f.Width+int(r.X)):], row)
			}
		}
		if hdr.Rects > 0 {
			return f, nil
		}
	}
}
