// Package apitest checks real API traffic against api/openapi.yaml, so the
// committed contract cannot drift from what the server does. Server tests
// wrap the handler with it; end-to-end tests wrap the client's transport.
package apitest

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"sync"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/legacy"

	"github.com/kumocloud/kumo/api"
)

// Validator validates requests and responses and collects what failed.
type Validator struct {
	doc    *openapi3.T
	router routers.Router

	mu       sync.Mutex
	problems []string
	checked  map[string]int // "METHOD /path/template" -> exchanges validated
}

// New loads and checks the committed OpenAPI document.
func New() (*Validator, error) {
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromData(api.OpenAPI)
	if err != nil {
		return nil, fmt.Errorf("load api/openapi.yaml: %w", err)
	}
	if err := doc.Validate(context.Background()); err != nil {
		return nil, fmt.Errorf("api/openapi.yaml is not valid OpenAPI: %w", err)
	}
	r, err := legacy.NewRouter(doc)
	if err != nil {
		return nil, err
	}
	return &Validator{doc: doc, router: r, checked: map[string]int{}}, nil
}

// Doc returns the loaded document.
func (v *Validator) Doc() *openapi3.T { return v.doc }

// Check validates one exchange. Requests the server refused (4xx) are not
// held to the request schema (tests send bad input on purpose); every
// response must match the schema of its documented status.
func (v *Validator) Check(req *http.Request, reqBody []byte, status int, header http.Header, respBody []byte) {
	// The router matches on path only.
	r2 := req.Clone(context.Background())
	r2.URL.Scheme, r2.URL.Host, r2.Host = "", "", ""
	r2.Body = io.NopCloser(bytes.NewReader(reqBody))
	route, params, err := v.router.FindRoute(r2)
	if err != nil {
		if status == http.StatusNotFound {
			return // an unknown endpoint, answered as such
		}
		v.fail("%s %s: not in the OpenAPI document (answered %d)", req.Method, req.URL.Path, status)
		return
	}
	key := req.Method + " " + route.Path
	opts := &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc, IncludeResponseStatus: true, MultiError: true}
	// Raw bytes (image uploads) are not JSON to check.
	if strings.HasPrefix(req.Header.Get("Content-Type"), "application/octet-stream") {
		opts.ExcludeRequestBody = true
	}
	in := &openapi3filter.RequestValidationInput{Request: r2, PathParams: params, Route: route, Options: opts}
	if status < 400 {
		if err := openapi3filter.ValidateRequest(context.Background(), in); err != nil {
			v.fail("%s: request the server accepted (%d) breaks the contract: %v", key, status, err)
		}
	}
	// Any tenant request may be refused for its rate (the document's
	// description says so once, not on every operation).
	if status == http.StatusTooManyRequests && header.Get("Retry-After") != "" && bytes.Contains(respBody, []byte(`"error"`)) {
		return
	}
	ropts := *opts
	if ct := header.Get("Content-Type"); strings.HasPrefix(ct, "text/event-stream") || strings.HasPrefix(ct, "application/octet-stream") {
		ropts.ExcludeResponseBody = true
	}
	out := &openapi3filter.ResponseValidationInput{RequestValidationInput: in, Status: status, Header: header, Options: &ropts}
	out.SetBodyBytes(respBody)
	if err := openapi3filter.ValidateResponse(context.Background(), out); err != nil {
		v.fail("%s: response %d breaks the contract: %v\nbody: %.500s", key, status, err, respBody)
	}
	v.mu.Lock()
	v.checked[key]++
	v.mu.Unlock()
}

func (v *Validator) fail(format string, a ...any) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.problems = append(v.problems, fmt.Sprintf(format, a...))
}

// Problems returns what failed validation so far.
func (v *Validator) Problems() []string {
	v.mu.Lock()
	defer v.mu.Unlock()
	return append([]string(nil), v.problems...)
}

// Checked lists the operations validated at least once.
func (v *Validator) Checked() []string {
	v.mu.Lock()
	defer v.mu.Unlock()
	var out []string
	for k := range v.checked {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// Handler wraps an in-process handler, validating every exchange.
func (v *Validator) Handler(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		r.Body = io.NopCloser(bytes.NewReader(body))
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, r)
		v.Check(r, body, rec.Code, rec.Header(), rec.Body.Bytes())
		for k, vs := range rec.Header() {
			w.Header()[k] = vs
		}
		w.WriteHeader(rec.Code)
		w.Write(rec.Body.Bytes())
	})
}

// Transport wraps a client transport, validating every exchange. Event
// streams are checked on status and headers and passed through unread.
func (v *Validator) Transport(rt http.RoundTripper) http.RoundTripper {
	return roundTripper(func(req *http.Request) (*http.Response, error) {
		var body []byte
		if req.Body != nil {
			body, _ = io.ReadAll(req.Body)
			req.Body = io.NopCloser(bytes.NewReader(body))
		}
		resp, err := rt.RoundTrip(req)
		if err != nil {
			return resp, err
		}
		if resp.StatusCode == http.StatusSwitchingProtocols {
			v.Check(req, body, resp.StatusCode, resp.Header, nil)
			return resp, nil
		}
		if strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
			v.Check(req, body, resp.StatusCode, resp.Header, nil)
			return resp, nil
		}
		rb, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			return nil, err
		}
		resp.Body = io.NopCloser(bytes.NewReader(rb))
		v.Check(req, body, resp.StatusCode, resp.Header, rb)
		return resp, nil
	})
}

type roundTripper func(*http.Request) (*http.Response, error)

func (f roundTripper) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }
