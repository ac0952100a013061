package server

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"

	"github.com/kumocloud/kumo/api"
	"github.com/kumocloud/kumo/internal/errs"
	"github.com/kumocloud/kumo/internal/server/response"
)

// decodeBody reads a JSON request body strictly: at most 1 MiB, one JSON
// value, no unknown fields, right types. Errors name the field.
func decodeBody(r *http.Request, v any) error {
	if ct := r.Header.Get("Content-Type"); ct != "" && !strings.HasPrefix(ct, "application/json") {
		return errs.Invalid("Content-Type", "send the body as application/json, not %q", ct)
	}
	body, err := readBody(r)
	if err != nil {
		return errs.Invalid("body", "reading the request body: %v", err)
	}
	return decodeJSON(body, v)
}

// readBody reads at most maxBody+1 bytes of a request's body, into one
// buffer of the size the request declares when it declares one: agents'
// usage batches are the bulk of what the server reads at scale, and
// growing a buffer for each doubled what they allocated.
func readBody(r *http.Request) ([]byte, error) {
	var buf bytes.Buffer
	if n := r.ContentLength; n > 0 {
		buf.Grow(int(min(n, maxBody) + 1))
	}
	_, err := buf.ReadFrom(io.LimitReader(r.Body, maxBody+1))
	return buf.Bytes(), err
}

// decodeJSON is decodeBody's parser, separate so it can be fuzzed.
func decodeJSON(body []byte, v any) error {
	if len(body) > maxBody {
		return errs.Invalid("body", "the request body is over %d bytes", maxBody)
	}
	if len(bytes.TrimSpace(body)) == 0 {
		return errs.Invalid("body", "the request body is empty; send a JSON object")
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return jsonError(err)
	}
	if dec.More() {
		return errs.Invalid("body", "the request body holds more than one JSON value")
	}
	var extra json.RawMessage
	if err := dec.Decode(&extra); err != io.EOF {
		return errs.Invalid("body", "unexpected data after the JSON object")
	}
	return nil
}

func jsonError(err error) error {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syn):
		return errs.Invalid("body", "malformed JSON at byte %d: %v", syn.Offset, syn)
	case errors.As(err, &typ):
		field := typ.Field
		if field == "" {
			field = "body"
		}
		return errs.Invalid(field, "%s must be %s, not %s", field, jsonKind(typ.Type.Kind().String()), typ.Value)
	case errors.Is(err, io.ErrUnexpectedEOF):
		return errs.Invalid("body", "malformed JSON: the body ends too early")
	}
	msg := err.Error()
	if f, ok := strings.CutPrefix(msg, "json: unknown field "); ok {
		f = strings.Trim(f, `"`)
		return errs.Invalid(f, "unknown field %q", f)
	}
	return errs.Invalid("body", "malformed JSON: %s", strings.TrimPrefix(msg, "json: "))
}

func jsonKind(k string) string {
	switch {
	case strings.HasPrefix(k, "int"), strings.HasPrefix(k, "uint"):
		return "an integer"
	case strings.HasPrefix(k, "float"):
		return "a number"
	case k == "string":
		return "a string"
	case k == "bool":
		return "true or false"
	case k == "map", k == "struct":
		return "an object"
	case k == "slice":
		return "an array"
	}
	return k
}

// listParams are the query parameters of list endpoints.
type listParams struct {
	limit  int
	after  string
	labels map[string]string
}

// Pages of lists: without ?limit a list answers defaultPage items (and
// next, to ask for the rest), at most maxPage: one GET never carries a
// whole cloud.
const (
	defaultPage = 500
	maxPage     = 1000
)

// parseList reads ?limit=N&after=NAME&label=k=v (label repeatable).
func parseList(r *http.Request) (listParams, error) {
	q := r.URL.Query()
	lp := listParams{after: q.Get("after"), limit: defaultPage}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > maxPage {
			return lp, errs.Invalid("limit", "limit must be an integer from 1 to %d, got %q", maxPage, v)
		}
		lp.limit = n
	}
	for _, l := range q["label"] {
		k, v, ok := strings.Cut(l, "=")
		if !ok || k == "" {
			return lp, errs.Invalid("label", "label filter %q must be KEY=VALUE", l)
		}
		if lp.labels == nil {
			lp.labels = map[string]string{}
		}
		lp.labels[k] = v
	}
	return lp, nil
}

// list answers one page of a list, next naming where the following one
// starts ("" at the end).
func list[T any](items []T, next string) response.Response {
	if items == nil {
		items = []T{}
	}
	return response.OK(api.List[T]{Items: items, Next: next})
}

// parseBool reads an optional boolean query parameter.
func parseBool(r *http.Request, name string) (bool, error) {
	v := r.URL.Query().Get(name)
	if v == "" {
		return false, nil
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		return false, errs.Invalid(name, "%s must be true or false, got %q", name, v)
	}
	return b, nil
}
