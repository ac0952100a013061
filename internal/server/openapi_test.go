package server

import (
	"sort"
	"strings"
	"testing"

	"github.com/kumocloud/kumo/internal/apitest"
)

// The endpoint table and api/openapi.yaml describe the same API: every
// route in one is in the other.
func TestOpenAPIMatchesEndpointTable(t *testing.T) {
	v, err := apitest.New()
	if err != nil {
		t.Fatal(err)
	}
	inSpec := map[string]bool{}
	for path, item := range v.Doc().Paths.Map() {
		for method := range item.Operations() {
			inSpec[strings.ToUpper(method)+" "+path] = true
		}
	}
	inTable := map[string]bool{}
	for _, ep := range Endpoints() {
		inTable[ep.Method+" "+ep.Path] = true
	}
	var missing []string
	for k := range inTable {
		if !inSpec[k] {
			missing = append(missing, "in the endpoint table, not in openapi.yaml: "+k)
		}
	}
	for k := range inSpec {
		if !inTable[k] {
			missing = append(missing, "in openapi.yaml, not in the endpoint table: "+k)
		}
	}
	sort.Strings(missing)
	for _, m := range missing {
		t.Error(m)
	}
}

// validated returns a test server whose every exchange is checked against
// the contract; the check runs at cleanup.
func validated(t *testing.T) *testServer {
	ts := newTestServer(t)
	v, err := apitest.New()
	if err != nil {
		t.Fatal(err)
	}
	ts.net = v.Handler(ts.s.Handler())
	t.Cleanup(func() {
		for _, p := range v.Problems() {
			t.Error(p)
		}
	})
	return ts
}
