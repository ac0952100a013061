// Package validate checks user input and names the field that is wrong.
package validate

import (
	"regexp"
	"strings"
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
		if i := Unprintable(v); i >= 0 {
			return errs.Invalid(field+"."+k, "label %q: value has a control character (%U at byte %d)", k, []rune(v[i:])[0], i)
		}
	}
	return nil
}

// Text checks one line of free text, such as a description or a
// reference to an object: UTF-8 without control characters (which a
// terminal would obey when the text is printed: escape sequences, CR, NUL)
// or the invisible marks that reorder text (bidi controls).
func Text(field, v string, max int) error {
	if err := utf8Within(field, v, max); err != nil {
		return err
	}
	if i := Unprintable(v); i >= 0 {
		return errs.Invalid(field, "%s has a control character (%U at byte %d): it must be printable text on one line", field, []rune(v[i:])[0], i)
	}
	return nil
}

// Document checks a multi-line text kept as it is, such as user-data:
// UTF-8, without NUL.
func Document(field, v string, max int) error {
	if err := utf8Within(field, v, max); err != nil {
		return err
	}
	if i := strings.IndexByte(v, 0); i >= 0 {
		return errs.Invalid(field, "%s has a NUL byte at byte %d", field, i)
	}
	return nil
}

func utf8Within(field, v string, max int) error {
	if len(v) > max {
		return errs.Invalid(field, "%s is %d bytes long; the limit is %d", field, len(v), max)
	}
	if !utf8.ValidString(v) {
		return errs.Invalid(field, "%s is not valid UTF-8", field)
	}
	return nil
}

// Unprintable returns the byte offset of the first rune of s a terminal
// would not simply print - a C0 or C1 control, DEL, or a bidi control -
// or -1.
func Unprintable(s string) int {
	for i, r := range s {
		if Control(r) {
			return i
		}
	}
	return -1
}

// Control reports whether a rune is a control character or a bidi
// control (U+200E, U+200F, U+202A-U+202E, U+2066-U+2069).
func Control(r rune) bool {
	switch {
	case r < 0x20 || r >= 0x7f && r < 0xa0:
		return true
	case r == 0x200e || r == 0x200f || r >= 0x202a && r <= 0x202e || r >= 0x2066 && r <= 0x2069:
		return true
	}
	return false
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
