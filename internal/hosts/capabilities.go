package hosts

import (
	"regexp"
	"slices"

	"github.com/kumocloud/kumo/api"
	"github.com/kumocloud/kumo/internal/errs"
)

// capabilityName is how a capability is spelled: short lower-case words
// joined by dashes. Names the server does not know are kept (a newer
// agent's), shown, and ignored.
var capabilityName = regexp.MustCompile(`^[a-z][a-z0-9-]{0,31}$`)

// validateCapabilities checks what an agent says its driver can do on
// host h: one entry per kind the host offers at most, each a short list
// of well-formed names without repeats.
func validateCapabilities(field string, h api.HostSpec) error {
	for kind, caps := range h.Capabilities {
		if !slices.Contains(h.Kinds, kind) {
			return errs.Invalid(field, "host %q: capabilities for kind %q, which it does not offer", h.Name, kind)
		}
		if len(caps) > 32 {
			return errs.Invalid(field, "host %q: more than 32 capabilities for kind %q", h.Name, kind)
		}
		seen := map[string]bool{}
		for _, c := range caps {
			if !capabilityName.MatchString(c) {
				return errs.Invalid(field, "host %q: capability %q: use lower-case letters, digits and dashes (at most 32)", h.Name, c)
			}
			if seen[c] {
				return errs.Invalid(field, "host %q: capability %q twice for kind %q", h.Name, c, kind)
			}
			seen[c] = true
		}
	}
	return nil
}
