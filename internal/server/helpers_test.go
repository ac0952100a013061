package server

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/kumocloud/kumo/api"
	"github.com/kumocloud/kumo/internal/identity"
	"github.com/kumocloud/kumo/internal/store"
	"github.com/kumocloud/kumo/internal/store/memstore"
)

// testServer is a server on an in-memory store, reached in-process.
type testServer struct {
	t   *testing.T
	s   *Server
	net http.Handler // as over HTTPS
}

func newTestServer(t *testing.T) *testServer {
	t.Helper()
	return newTestServerOn(t, memstore.New())
}

// newTestServerOn is a test server on a given store (several servers may
// share one, as after a restart).
func newTestServerOn(t *testing.T, st store.Store) *testServer {
	t.Helper()
	opts := identity.DefaultOptions()
	opts.BcryptCost = bcrypt.MinCost
	s, err := NewWithStore(context.Background(), Config{DataDir: t.TempDir(), Identity: opts}, st)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return &testServer{t: t, s: s, net: s.Handler()}
}

type resp struct {
	Status int
	Body   []byte
	Header http.Header
}

func (r resp) decode(t *testing.T, v any) {
	t.Helper()
	if err := json.Unmarshal(r.Body, v); err != nil {
		t.Fatalf("decode %s: %v", r.Body, err)
	}
}

func (r resp) errBody(t *testing.T) api.ErrorBody {
	t.Helper()
	var e api.ErrorResponse
	r.decode(t, &e)
	return e.Error
}

// do sends a request with a token ("" = none); body may be a string (sent
// as is) or a value (sent as JSON).
func (ts *testServer) do(method, path, token string, body any, hdr ...string) resp {
	ts.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = bytes.NewBufferString(b)
	default:
		j, _ := json.Marshal(b)
		rd = bytes.NewReader(j)
	}
	// As the network listener is: TLS.
	req := httptest.NewRequest(method, "https://example.com"+path, rd)
	req.RemoteAddr = "192.0.2.1:1234"
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		if hdr[i] == "RemoteAddr" { // not a header: where the request comes from
			req.RemoteAddr = hdr[i+1]
			continue
		}
		req.Header.Set(hdr[i], hdr[i+1])
	}
	w := httptest.NewRecorder()
	ts.net.ServeHTTP(w, req)
	return resp{w.Code, w.Body.Bytes(), w.Header()}
}

// user creates a user with roles (project:role) and returns a token.
func (ts *testServer) user(name string, cloudAdmin bool, roles ...string) string {
	ts.t.Helper()
	ctx := context.Background()
	if _, err := ts.s.ids.CreateUser(ctx, api.UsersPost{Name: name, Password: "password-" + name, CloudAdmin: cloudAdmin}); err != nil {
		ts.t.Fatal(err)
	}
	for i := 0; i+1 < len(roles); i += 2 {
		if _, err := ts.s.ids.SetMember(ctx, roles[i], name, roles[i+1]); err != nil {
			ts.t.Fatal(err)
		}
	}
	tok, err := ts.s.ids.IssueToken(ctx, name, "test", time.Hour)
	if err != nil {
		ts.t.Fatal(err)
	}
	return tok.Secret
}

func (ts *testServer) project(name string) {
	ts.t.Helper()
	if _, err := ts.s.ids.CreateProject(context.Background(), api.ProjectsPost{Name: name}); err != nil {
		ts.t.Fatal(err)
	}
}

func memStore() store.Store { return memstore.New() }
