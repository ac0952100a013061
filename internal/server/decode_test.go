package server

import (
	"bytes"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestBodyReadByItsDeclaredLength: a body is read whatever length its
// request declares - a true one, none, a lie either way - and one over
// the limit is refused whatever was declared (a huge declared length
// never becomes a huge buffer).
func TestBodyReadByItsDeclaredLength(t *testing.T) {
	small := `{"name":"a"}`
	big := `{"name":"` + strings.Repeat("x", maxBody) + `"}`
	cases := []struct {
		name     string
		body     string
		declared int64
		ok       bool
	}{
		{"true length", small, int64(len(small)), true},
		{"no length", small, -1, true},
		{"declared shorter", small, 3, true},
		{"declared a terabyte", small, 1 << 40, true},
		{"over the limit, declared small", big, 10, false},
		{"over the limit, declared true", big, int64(len(big)), false},
	}
	for _, c := range cases {
		r := httptest.NewRequest("POST", "/", bytes.NewReader([]byte(c.body)))
		r.ContentLength = c.declared
		var v struct {
			Name string `json:"name"`
		}
		err := decodeBody(r, &v)
		switch {
		case c.ok && (err != nil || v.Name != "a"):
			t.Errorf("%s: %v, name %q", c.name, err, v.Name)
		case !c.ok && (err == nil || !strings.Contains(err.Error(), "over")):
			t.Errorf("%s: %v, want refused as over the limit", c.name, err)
		}
	}
}
