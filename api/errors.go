package api

import (
	"fmt"
	"strings"
)

// Error codes carried in ErrorBody.Code. Each maps to exactly one HTTP status
// (internal/server/response owns that map).
const (
	CodeInvalid       = "invalid"        // 400: bad input; Field names what
	CodeUnauthorized  = "unauthorized"   // 401: no, expired or revoked credentials
	CodeForbidden     = "forbidden"      // 403: authenticated but the role does not allow it
	CodeQuotaExceeded = "quota_exceeded" // 403: the project's quota would be exceeded
	CodeNotFound      = "not_found"      // 404
	CodeConflict      = "conflict"       // 409: name taken, wrong state, stale revision
	CodeTooMany       = "too_many_requests"
	CodeUnavailable   = "unavailable" // 503
	CodeInternal      = "internal"    // 500
	// CodeInsufficientStorage (507): the server's disk is full; writes
	// resume when space is freed, reads go on.
	CodeInsufficientStorage = "insufficient_storage"
)

// ErrorResponse is the one error envelope every failing request returns.
type ErrorResponse struct {
	Error ErrorBody `json:"error"`
}

// ErrorBody says what went wrong and, for bad input, which field.
type ErrorBody struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	Field   string `json:"field,omitempty"`
	// Status is the HTTP status; filled in by the client, never sent.
	Status int `json:"-"`
}

func (e *ErrorBody) Error() string {
	if e.Field != "" && !strings.Contains(e.Message, e.Field) {
		return fmt.Sprintf("%s (field %q)", e.Message, e.Field)
	}
	return e.Message
}
