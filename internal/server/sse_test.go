package server

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/kumocloud/kumo/api"
	"github.com/kumocloud/kumo/internal/server/response"
)

func parseSSE(t *testing.T, body []byte) []api.Event {
	t.Helper()
	var out []api.Event
	for _, block := range strings.Split(string(body), "\n\n") {
		for _, line := range strings.Split(block, "\n") {
			if d, ok := strings.CutPrefix(line, "data: "); ok {
				var ev api.Event
				if err := json.Unmarshal([]byte(d), &ev); err != nil {
					t.Fatalf("bad event %q: %v", d, err)
				}
				out = append(out, ev)
			}
		}
	}
	return out
}

// errorOf is what the API would answer for err.
func errorOf(err error) (int, api.ErrorBody) {
	s, b := response.Body(err)
	return s, b.Error
}
