package cli

import (
	"bytes"
	"strings"
	"testing"
)

// TestOutputNeverEmitsControlCharacters: whatever a stored string holds
// (a reason quoting a guest's console, a description stored before control
// characters were refused), tables, YAML and errors show it escaped.
func TestOutputNeverEmitsControlCharacters(t *testing.T) {
	hostile := "evil\x1b]52;c;cm0gLXJmIH4=\x07\r\x1b[2Jdone\u202efdp.exe"
	type row struct{ Name, Reason string }
	for _, format := range []string{"table", "yaml", "json"} {
		var out bytes.Buffer
		a := &app{stdout: &out, output: format}
		if err := printList(a, []row{{"a", hostile}}, []column[row]{col("NAME", func(r row) string { return r.Name }), col("REASON", func(r row) string { return r.Reason })}); err != nil {
			t.Fatal(err)
		}
		if format != "table" {
			if err := a.printObject(row{"a", hostile}); err != nil {
				t.Fatal(err)
			}
		}
		if i := strings.IndexFunc(out.String(), func(r rune) bool { return r == 0x1b || r == 0x07 || r == '\r' || r == 0x202e }); i >= 0 {
			t.Fatalf("-o %s printed a control character at %d: %q", format, i, out.String())
		}
		if !strings.Contains(out.String(), "evil") || !strings.Contains(out.String(), "done") {
			t.Fatalf("-o %s lost the text: %q", format, out.String())
		}
	}
	if got := oneLine("bad name \x1b[31mred"); strings.ContainsRune(got, 0x1b) || !strings.Contains(got, `\x1b[31mred`) {
		t.Fatalf("error line: %q", got)
	}
}
