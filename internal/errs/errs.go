// Package errs holds the handful of error kinds kumo's packages return.
// internal/server/response maps each kind to one HTTP status and API code;
// nothing else decides statuses.
package errs

import (
	"errors"
	"fmt"
)

// Kind is a class of failure a caller can act on.
type Kind int

// Kinds.
const (
	KindInternal Kind = iota
	KindInvalid
	KindUnauthorized
	KindForbidden
	KindQuotaExceeded
	KindNotFound
	KindConflict
	KindTooMany
	KindUnavailable
)

// Error is a kumo error: a kind, a message for people and, for bad input,
// the field it is about.
type Error struct {
	Kind    Kind
	Message string
	Field   string
	Err     error // wrapped cause, if any
}

func (e *Error) Error() string { return e.Message }

// Unwrap returns the cause.
func (e *Error) Unwrap() error { return e.Err }

// Is matches errors of the same kind: errors.Is(err, errs.ErrNotFound).
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Message == "" && t.Kind == e.Kind
}

// Sentinels for errors.Is.
var (
	ErrInvalid       = &Error{Kind: KindInvalid}
	ErrUnauthorized  = &Error{Kind: KindUnauthorized}
	ErrForbidden     = &Error{Kind: KindForbidden}
	ErrQuotaExceeded = &Error{Kind: KindQuotaExceeded}
	ErrNotFound      = &Error{Kind: KindNotFound}
	ErrConflict      = &Error{Kind: KindConflict}
	ErrTooMany       = &Error{Kind: KindTooMany}
	ErrUnavailable   = &Error{Kind: KindUnavailable}
)

func newf(k Kind, format string, a ...any) *Error {
	return &Error{Kind: k, Message: fmt.Sprintf(format, a...)}
}

// Invalid is bad input in field.
func Invalid(field, format string, a ...any) *Error {
	e := newf(KindInvalid, format, a...)
	e.Field = field
	return e
}

// NotFound says what was not found.
func NotFound(format string, a ...any) *Error { return newf(KindNotFound, format, a...) }

// Conflict is a name taken, a wrong state or a stale revision.
func Conflict(format string, a ...any) *Error { return newf(KindConflict, format, a...) }

// Forbidden says the caller's role does not allow it.
func Forbidden(format string, a ...any) *Error { return newf(KindForbidden, format, a...) }

// Unauthorized says the credentials are missing or bad.
func Unauthorized(format string, a ...any) *Error { return newf(KindUnauthorized, format, a...) }

// TooMany says to slow down.
func TooMany(format string, a ...any) *Error { return newf(KindTooMany, format, a...) }

// Unavailable says to try again later.
func Unavailable(format string, a ...any) *Error { return newf(KindUnavailable, format, a...) }

// QuotaExceeded names the resource, the limit, the usage and what was asked.
func QuotaExceeded(resource string, limit, usage, want int64) *Error {
	e := newf(KindQuotaExceeded, "quota exceeded for %s: limit %d, in use %d, requested %d", resource, limit, usage, want)
	e.Field = resource
	return e
}

// KindOf returns the kind of err (KindInternal for foreign errors).
func KindOf(err error) Kind {
	var e *Error
	if errors.As(err, &e) {
		return e.Kind
	}
	return KindInternal
}
