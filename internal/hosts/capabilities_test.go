package hosts

import (
	"errors"
	"strings"
	"testing"

	"github.com/kumocloud/kumo/api"
	"github.com/kumocloud/kumo/internal/errs"
)

// What an agent says its driver can do is hostile input: a kind the host
// does not offer, malformed or repeated names, or too many are refused
// with the field named; a newer agent's unknown names are kept.
func TestValidateCapabilities(t *testing.T) {
	base := func(caps map[string][]string) []api.HostSpec {
		return []api.HostSpec{{Name: "h", Kinds: []string{api.TypeVM}, Capacity: api.Size{VCPUs: 1, MemoryMiB: 1}, Capabilities: caps}}
	}
	if err := validateSpecs(base(map[string][]string{api.TypeVM: {"migrate", "live-migrate", "future-thing"}})); err != nil {
		t.Fatal(err)
	}
	if err := validateSpecs(base(nil)); err != nil {
		t.Fatal(err)
	}
	many := make([]string, 33)
	for i := range many {
		many[i] = "c" + strings.Repeat("x", i%20) + string(rune('a'+i%26))
	}
	for name, caps := range map[string]map[string][]string{
		"other kind": {api.TypeContainer: {"exec"}},
		"bad name":   {api.TypeVM: {"Live Migrate\x1b[2J"}},
		"empty":      {api.TypeVM: {""}},
		"long":       {api.TypeVM: {strings.Repeat("a", 33)}},
		"twice":      {api.TypeVM: {"exec", "exec"}},
		"too many":   {api.TypeVM: many},
	} {
		var e *errs.Error
		if err := validateSpecs(base(caps)); !errors.As(err, &e) || !errors.Is(err, errs.ErrInvalid) || e.Field != "hosts[0].capabilities" {
			t.Errorf("%s: %v", name, err)
		}
	}
}
