package server

import (
	"crypto/subtle"
	"fmt"
	"net/http"
	"os"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// metricsHandler serves Prometheus metrics. Anyone gets the process and
// HTTP series; per-project series (project names, usage, cost) only a
// cloud admin or a scraper with the metrics token (--metrics-token-file).
func (s *Server) metricsHandler(r *request, w http.ResponseWriter) {
	g := prometheus.Gatherers{s.registry}
	if s.mayScrapeProjects(r) {
		g = append(g, s.projectRegistry)
	}
	promhttp.HandlerFor(g, promhttp.HandlerOpts{}).ServeHTTP(w, r.Request)
}

func (s *Server) mayScrapeProjects(r *request) bool {
	if r.p != nil && r.p.CloudAdmin {
		return true
	}
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	return ok && s.metricsToken != "" && subtle.ConstantTimeCompare([]byte(strings.TrimSpace(tok)), []byte(s.metricsToken)) == 1
}

// readMetricsToken reads the scrapers' bearer token from a file only its
// owner may read.
func readMetricsToken(path string) (string, error) {
	st, err := os.Stat(path)
	if err != nil {
		return "", fmt.Errorf("--metrics-token-file: %w", err)
	}
	if st.Mode().Perm()&0o077 != 0 {
		return "", fmt.Errorf("--metrics-token-file %s: mode %v lets others read it; chmod 600 it", path, st.Mode().Perm())
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("--metrics-token-file: %w", err)
	}
	tok := strings.TrimSpace(string(b))
	if len(tok) < 16 || strings.ContainsAny(tok, " \t\n") {
		return "", fmt.Errorf("--metrics-token-file %s: want one token of at least 16 characters, no spaces", path)
	}
	return tok, nil
}
