// Package validate checks user input and names the field that is wrong.
package validate

import (
	"regexp"
	"unicode/utf8"

	"github.com/kumocloud/kumo/internal/errs"
)

var nameRE = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)

// MaxNameLen is the longest name: a DNS label.
const MaxNameLen = 63

// Name checks a DNS-label-like name: lower-case letters, digits and '-', not
// starting or ending with '-', 1 to 63 characters.
func Name(field, v string) error {
	switch {
	case v == "":
		return errs.Invalid(field, "%s is required", field)
	case len(v) > MaxNameLen:
		return errs.Invalid(field, "%s is %d characters long; the limit is %d", field, len(v), MaxNameLen)
	case !nameRE.MatchString(v):
		return errs.Invalid(field, "%s %q is not a valid name: use lower-case letters, digits and '-', starting and ending with a letter or digit", field, v)
	}
	return nil
}

var labelKeyRE = regexp.MustCompile(`^[A-Za-z0-9]([-A-Za-z0-9_./]*[A-Za-z0-9])?$`)

// Labels checks label keys (up to 63 characters, letters, digits, - _ . /)
// and values (up to 255 bytes of UTF-8), at most 64 labels.
func Labels(field string, labels map[string]string) error {
	if len(labels) > 64 {
		return errs.Invalid(field, "%s: at most 64 labels, got %d", field, len(labels))
	}
	for k, v := range labels {
		if len(k) > 63 || !labelKeyRE.MatchString(k) {
			return errs.Invalid(field+"."+k, "label key %q is not valid: up to 63 letters, digits, '-', '_', '.', '/'", k)
		}
		if len(v) > 255 || !utf8.ValidString(v) {
			return errs.Invalid(field+"."+k, "label %q: value must be UTF-8 of at most 255 bytes", k)
		}
	}
	return nil
}

// Text checks free text such as descriptions.
func Text(field, v string, max int) error {
	if len(v) > max {
		return errs.Invalid(field, "%s is %d bytes long; the limit is %d", field, len(v), max)
	}
	if !utf8.ValidString(v) {
		return errs.Invalid(field, "%s is not valid UTF-8", field)
	}
	return nil
}

// Password checks a new password's length.
func Password(field, v string) error {
	switch {
	case len(v) < 8:
		return errs.Invalid(field, "%s must be at least 8 characters", field)
	case len(v) > 72:
		// bcrypt reads at most 72 bytes; longer would silently truncate.
		return errs.Invalid(field, "%s must be at most 72 bytes", field)
	}
	return nil
}

// Role checks a project role name.
func Role(field, v string) error {
	switch v {
	case "admin", "member", "reader":
		return nil
	}
	return errs.Invalid(field, "%s %q is not a role: use admin, member or reader", field, v)
}
