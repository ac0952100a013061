// Package response writes the API's three kinds of answer: a synchronous
// object, an asynchronous operation (202) and an error envelope. Status
// owns the one map from error kinds to HTTP statuses and API codes.
package response

import (
	"context"
	"encoding/json"
	"errors"
	"github.com/kumocloud/kumo/internal/reqctx"
	"net/http"
	"syscall"

	"github.com/kumocloud/kumo/api"
	"github.com/kumocloud/kumo/internal/errs"
	"github.com/kumocloud/kumo/internal/store"
)

// Response is what a handler returns; the server renders it.
type Response interface {
	Render(w http.ResponseWriter, r *http.Request)
}

type syncResponse struct {
	status int
	body   any
}

// OK is a 200 with body as JSON.
func OK(body any) Response { return syncResponse{http.StatusOK, body} }

// Created is a 201 with the created object.
func Created(body any) Response { return syncResponse{http.StatusCreated, body} }

// NoContent is a 204.
func NoContent() Response { return syncResponse{http.StatusNoContent, nil} }

func (s syncResponse) Render(w http.ResponseWriter, r *http.Request) {
	if s.body == nil {
		w.WriteHeader(s.status)
		return
	}
	writeJSON(w, s.status, s.body)
}

type asyncResponse struct{ op api.Operation }

// Async is a 202 with the operation doing the work; Location points at it.
func Async(op api.Operation) Response { return asyncResponse{op} }

func (a asyncResponse) Render(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Location", "/v1/operations/"+a.op.ID)
	writeJSON(w, http.StatusAccepted, a.op)
}

type errorResponse struct{ err error }

// Error renders err in the error envelope with its mapped status.
func Error(err error) Response { return errorResponse{err} }

// Status maps an error to its HTTP status and API code. It is the only
// place that does.
func Status(err error) (int, string) {
	switch {
	case errors.Is(err, store.ErrConflict), errors.Is(err, store.ErrExists):
		return http.StatusConflict, api.CodeConflict
	case errors.Is(err, store.ErrNotFound):
		return http.StatusNotFound, api.CodeNotFound
	case errors.Is(err, context.DeadlineExceeded):
		return http.StatusServiceUnavailable, api.CodeUnavailable
	case errors.Is(err, store.ErrNoSpace), errors.Is(err, syscall.ENOSPC):
		return http.StatusInsufficientStorage, api.CodeInsufficientStorage
	}
	switch errs.KindOf(err) {
	case errs.KindInvalid:
		return http.StatusBadRequest, api.CodeInvalid
	case errs.KindUnauthorized:
		return http.StatusUnauthorized, api.CodeUnauthorized
	case errs.KindForbidden:
		return http.StatusForbidden, api.CodeForbidden
	case errs.KindQuotaExceeded:
		return http.StatusForbidden, api.CodeQuotaExceeded
	case errs.KindNotFound:
		return http.StatusNotFound, api.CodeNotFound
	case errs.KindConflict:
		return http.StatusConflict, api.CodeConflict
	case errs.KindTooMany:
		return http.StatusTooManyRequests, api.CodeTooMany
	case errs.KindUnavailable:
		return http.StatusServiceUnavailable, api.CodeUnavailable
	}
	return http.StatusInternalServerError, api.CodeInternal
}

// Body is the error envelope for err. Internal errors are not described to
// the client (they are logged instead).
func Body(err error) (int, api.ErrorResponse) {
	status, code := Status(err)
	body := api.ErrorBody{Code: code, Message: err.Error()}
	var e *errs.Error
	if errors.As(err, &e) {
		body.Field = e.Field
	}
	if status == http.StatusInternalServerError {
		body.Message = "internal error; the server log has the details"
	}
	return status, api.ErrorResponse{Error: body}
}

func (e errorResponse) Render(w http.ResponseWriter, r *http.Request) {
	status, body := Body(e.err)
	if status == http.StatusInternalServerError {
		reqctx.Logger(r.Context()).Error("internal error", "method", r.Method, "path", r.URL.Path, "err", e.err)
	}
	writeJSON(w, status, body)
}

func writeJSON(w http.ResponseWriter, status int, body any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	enc.Encode(body)
}
