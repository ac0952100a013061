package server

import (
	"context"
	"errors"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/kumocloud/kumo/api"
	"github.com/kumocloud/kumo/internal/store"
	"github.com/kumocloud/kumo/internal/store/memstore"
)

// TestIdempotentEndpointsMatchContract: an endpoint honours
// Idempotency-Key exactly when the contract says it takes one.
func TestIdempotentEndpointsMatchContract(t *testing.T) {
	var doc struct {
		Paths map[string]map[string]yaml.Node `yaml:"paths"`
	}
	if err := yaml.Unmarshal(api.OpenAPI, &doc); err != nil {
		t.Fatal(err)
	}
	for _, ep := range Endpoints() {
		node, ok := doc.Paths[ep.Path][strings.ToLower(ep.Method)]
		if !ok {
			continue // the contract test reports endpoints it lacks
		}
		var op struct {
			Parameters []map[string]any `yaml:"parameters"`
		}
		if err := node.Decode(&op); err != nil {
			t.Fatalf("%s %s: %v", ep.Method, ep.Path, err)
		}
		promised := false
		for _, p := range op.Parameters {
			promised = promised || p["$ref"] == "#/components/parameters/IdempotencyKey"
		}
		if promised != ep.create {
			t.Errorf("%s %s: the contract promises Idempotency-Key: %v; the endpoint honours it: %v", ep.Method, ep.Path, promised, ep.create)
		}
	}
}

// killedBeforeAnswer is a store on which the server dies right after a
// handler: the middleware's own write of the answer never happens.
type killedBeforeAnswer struct{ store.Store }

func (k killedBeforeAnswer) Update(ctx context.Context, key string, value []byte, rev int64) (int64, error) {
	if strings.HasPrefix(key, idempotencyPrefix) {
		return 0, errors.New("killed")
	}
	return k.Store.Update(ctx, key, value, rev)
}

// TestEveryIdempotentCreateSurvivesACrash: for every endpoint that honours
// Idempotency-Key, a create whose server died after the commit (before
// it kept the answer) is answered, on retry to a new server, with the
// first answer - not a second object, not "already exists".
func TestEveryIdempotentCreateSurvivesACrash(t *testing.T) {
	cases := matrixCases()
	for _, ep := range Endpoints() {
		if !ep.create {
			continue
		}
		var c *matrixCase
		for i := range cases {
			path, _, _ := strings.Cut(cases[i].path, "?")
			if cases[i].method == ep.Method && patternMatches(ep.Path, path) && strings.Contains(cases[i].want, "cA:201") {
				c = &cases[i]
				break
			}
		}
		if c == nil {
			t.Errorf("%s %s: no matrix row where a cloud admin creates", ep.Method, ep.Path)
			continue
		}
		t.Run(ep.Method+" "+ep.Path, func(t *testing.T) {
			t.Parallel()
			ms := memstore.New()
			first := newFixtureOn(t, newTestServerOn(t, killedBeforeAnswer{ms}))
			token := first.tokens["cA"]
			r1 := first.ts.do(c.method, c.path, token, c.body, "Idempotency-Key", "crash-1")
			if r1.Status != 201 {
				t.Fatalf("first attempt: %d %s", r1.Status, r1.Body)
			}
			restarted := newTestServerOn(t, ms)
			r2 := restarted.do(c.method, c.path, token, c.body, "Idempotency-Key", "crash-1")
			if r2.Status != 201 || r2.Header.Get("Idempotent-Replayed") != "true" {
				t.Fatalf("retry after the crash: %d %s (replayed %q)", r2.Status, r2.Body, r2.Header.Get("Idempotent-Replayed"))
			}
			if string(r2.Body) != string(r1.Body) {
				t.Fatalf("the retry's answer differs from the first:\n%s\n%s", r1.Body, r2.Body)
			}
		})
	}
}
