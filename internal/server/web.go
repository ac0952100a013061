package server

import (
	"net/http"
	"strings"

	"github.com/kumocloud/kumo/web"
)

// withWebConsole answers every path outside the API with the web console
// (an app whose routes are paths); unknown /v1 paths stay the API's 404.
func withWebConsole(api http.Handler) http.Handler {
	app, err := web.New()
	if err != nil {
		// The app is embedded at build time: this cannot fail at run time.
		panic("web console: " + err.Error())
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v1" || strings.HasPrefix(r.URL.Path, "/v1/") {
			api.ServeHTTP(w, r)
			return
		}
		app.ServeHTTP(w, r)
	})
}
