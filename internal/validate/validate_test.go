package validate

import (
	"errors"
	"strings"
	"testing"

	"github.com/kumocloud/kumo/internal/errs"
)

func TestTextRefusesWhatATerminalObeys(t *testing.T) {
	for _, bad := range []string{"a\x00b", "red\x1b[31m", "line\nbreak", "over\rwrite", "tab\there", "del\x7f", "c1\u0085", "bidi\u202eevil", "iso\u2066late"} {
		err := Text("description", bad, 100)
		if !errors.Is(err, errs.ErrInvalid) || !strings.Contains(err.Error(), "control character") {
			t.Errorf("Text(%q) = %v", bad, err)
		}
		if err := Labels("labels", map[string]string{"k": bad}); err == nil {
			t.Errorf("label value %q accepted", bad)
		}
	}
	for _, good := range []string{"", "plain", "Grüße, 世界 ✓", "quotes \" and 'apostrophes'"} {
		if err := Text("description", good, 100); err != nil {
			t.Errorf("Text(%q) = %v", good, err)
		}
	}
	// Documents (user-data) keep their lines; NUL is still refused.
	if err := Document("user_data", "#!/bin/sh\necho hi\r\n\tdone\n", 100); err != nil {
		t.Error(err)
	}
	if err := Document("user_data", "a\x00b", 100); err == nil {
		t.Error("NUL accepted in a document")
	}
}
