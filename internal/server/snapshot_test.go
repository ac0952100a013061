package server

import (
	"bufio"
	"strings"
	"testing"
)

// TestDiskHead: the first line of an agent's snapshot stream is its word,
// read bounded and shown only as printable text.
func TestDiskHead(t *testing.T) {
	tests := []struct {
		name, head string
		size       int64
		err        string // "" = accepted
	}{
		{"size", "ok 1234\nDATA", 1234, ""},
		{"an older agent", "ok\nDATA", 0, ""},
		{"a size that is not one", "ok lots\n", 0, ""},
		{"a negative size", "ok -5\n", 0, ""},
		{"error", "error: the sim driver cannot snapshot disks\n", 0, `snapshot of "vm1": the sim driver cannot snapshot disks`},
		{"escapes in the error", "error: \x1b[2Jgone\r\n", 0, `snapshot of "vm1": ?[2Jgone`},
		{"not a snapshot stream", "HTTP/1.1 200 OK\n", 0, "not a snapshot stream"},
		{"an endless line", strings.Repeat("o", 5000), 0, "first line of more than 1024 bytes"},
		{"nothing", "", 0, "broke off"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			br := bufio.NewReaderSize(strings.NewReader(tc.head), maxDiskHead)
			size, err := parseDiskHead(br, "vm1")
			if tc.err == "" && (err != nil || size != tc.size) || tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)) {
				t.Fatalf("size %d, err %v; want %d, %q", size, err, tc.size, tc.err)
			}
			if tc.err == "" && tc.size > 0 {
				if rest, _ := br.ReadString(0); rest != "DATA" {
					t.Fatalf("the bytes after the line: %q", rest)
				}
			}
		})
	}
}
