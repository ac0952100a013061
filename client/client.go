// Package client is kumo's Go SDK: typed calls over the REST API v1. The
// CLI and the end-to-end tests use it (the web console, to come, will);
// it talks only HTTP.
//
// Two ways in: the local Unix socket (no login; the machine's root) and
// HTTPS with a token, the server's CA pinned by its SHA-256 fingerprint
// (trust on first use, as ssh does, shown by 'kumo login').
package client

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/kumocloud/kumo/api"
)

// Client calls one kumo server.
type Client struct {
	base  string
	token string
	hc    *http.Client
}

// Socket returns a client for the local Unix socket at path.
func Socket(path string) *Client {
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		},
	}
	return &Client{base: "http://kumo", hc: &http.Client{Transport: tr}}
}

// Remote returns a client for a server over HTTPS. fingerprint pins the
// server's CA (hex SHA-256, colons allowed); token may be empty for public
// calls such as Login.
func Remote(baseURL, token, fingerprint string) (*Client, error) {
	u, err := url.Parse(baseURL)
	if err != nil || u.Scheme != "https" || u.Host == "" {
		return nil, fmt.Errorf("server URL %q: want https://HOST:PORT", baseURL)
	}
	fp := NormalizeFingerprint(fingerprint)
	if len(fp) != 64 {
		return nil, fmt.Errorf("CA fingerprint %q: want 64 hex digits (SHA-256)", fingerprint)
	}
	tr := &http.Transport{
		TLSClientConfig: pinnedTLS(fp),
		Proxy:           http.ProxyFromEnvironment,
	}
	return &Client{base: strings.TrimRight(baseURL, "/"), token: token, hc: &http.Client{Transport: tr}}, nil
}

// WithToken returns a copy of the client that sends token.
func (c *Client) WithToken(token string) *Client {
	cc := *c
	cc.token = token
	return &cc
}

// WrapTransport lets a caller (tests validating traffic against the
// OpenAPI contract) see every request and response.
func (c *Client) WrapTransport(wrap func(http.RoundTripper) http.RoundTripper) {
	rt := c.hc.Transport
	if rt == nil {
		rt = http.DefaultTransport
	}
	c.hc.Transport = wrap(rt)
}

// NormalizeFingerprint lower-cases and drops colons and spaces.
func NormalizeFingerprint(fp string) string {
	return strings.ToLower(strings.NewReplacer(":", "", " ", "").Replace(fp))
}

func fingerprint(der []byte) string {
	h := sha256.Sum256(der)
	return hex.EncodeToString(h[:])
}

// pinnedTLS trusts exactly the certificate chain that ends in the pinned
// CA, whatever name the server is reached by.
func pinnedTLS(fp string) *tls.Config {
	return &tls.Config{
		MinVersion:         tls.VersionTLS12,
		InsecureSkipVerify: true, // replaced by the pin check below
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return errors.New("server sent no certificate")
			}
			var pinned *x509.Certificate
			for _, c := range cs.PeerCertificates {
				if fingerprint(c.Raw) == fp {
					pinned = c
				}
			}
			if pinned == nil {
				return &FingerprintError{Want: fp, Got: chainFingerprint(cs.PeerCertificates)}
			}
			leaf := cs.PeerCertificates[0]
			if leaf == pinned {
				return nil
			}
			roots := x509.NewCertPool()
			roots.AddCert(pinned)
			_, err := leaf.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
			return err
		},
	}
}

func chainFingerprint(chain []*x509.Certificate) string {
	return fingerprint(chain[len(chain)-1].Raw)
}

// FingerprintError says the server's CA is not the pinned one.
type FingerprintError struct{ Want, Got string }

func (e *FingerprintError) Error() string {
	return fmt.Sprintf("the server's CA fingerprint is %s, not the pinned %s: this is another server or someone in between; check it and log in again", e.Got, e.Want)
}

// FetchFingerprint connects to an HTTPS server without trusting it and
// returns its CA's fingerprint (the last certificate of the chain it
// sends), for the user to confirm.
func FetchFingerprint(ctx context.Context, baseURL string) (string, error) {
	u, err := url.Parse(baseURL)
	if err != nil || u.Scheme != "https" || u.Host == "" {
		return "", fmt.Errorf("server URL %q: want https://HOST:PORT", baseURL)
	}
	d := tls.Dialer{Config: &tls.Config{InsecureSkipVerify: true}, NetDialer: &net.Dialer{Timeout: 10 * time.Second}}
	conn, err := d.DialContext(ctx, "tcp", u.Host)
	if err != nil {
		return "", fmt.Errorf("connect to %s: %w", u.Host, err)
	}
	defer conn.Close()
	chain := conn.(*tls.Conn).ConnectionState().PeerCertificates
	if len(chain) == 0 {
		return "", errors.New("server sent no certificate")
	}
	return chainFingerprint(chain), nil
}

type ctxKey int

const idemKey ctxKey = 0

// WithIdempotencyKey makes creates called with ctx send the key, so a retry
// returns the first result instead of creating twice.
func WithIdempotencyKey(ctx context.Context, key string) context.Context {
	return context.WithValue(ctx, idemKey, key)
}

// do sends one request and decodes a JSON answer into out (if non-nil).
// Error answers come back as *api.ErrorBody with Status set.
func (c *Client) do(ctx context.Context, method, path string, q url.Values, body, out any) error {
	resp, err := c.send(ctx, method, path, q, body, "application/json")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if out == nil || resp.StatusCode == http.StatusNoContent {
		io.Copy(io.Discard, resp.Body)
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("%s %s: decoding the answer: %w", method, path, err)
	}
	return nil
}

// send sends a request and returns a successful response, or the error.
func (c *Client) send(ctx context.Context, method, path string, q url.Values, body any, accept string) (*http.Response, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		rd = bytes.NewReader(b)
	}
	u := c.base + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", accept)
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	if k, ok := ctx.Value(idemKey).(string); ok && k != "" && method == http.MethodPost {
		req.Header.Set("Idempotency-Key", k)
	}
	return c.raw(req)
}

// raw sends a prepared request with the client's credentials and turns an
// error answer into *api.ErrorBody.
func (c *Client) raw(req *http.Request) (*http.Response, error) {
	if c.token != "" && req.Header.Get("Authorization") == "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	method, path := req.Method, req.URL.Path
	resp, err := c.hc.Do(req)
	// A tenant over its request rate is told when to come back (429 and
	// Retry-After): wait and send again, a few times, if the body can be
	// sent again.
	for try := 1; err == nil && resp.StatusCode == http.StatusTooManyRequests && try < 5; try++ {
		wait, ok := retryAfter(resp)
		if !ok || (req.Body != nil && req.GetBody == nil) {
			break
		}
		resp.Body.Close()
		select {
		case <-req.Context().Done():
			return nil, req.Context().Err()
		case <-time.After(wait):
		}
		if req.GetBody != nil {
			if req.Body, err = req.GetBody(); err != nil {
				return nil, err
			}
		}
		resp, err = c.hc.Do(req)
	}
	if err != nil {
		return nil, fmt.Errorf("cannot reach the kumo server: %w", err)
	}
	if resp.StatusCode >= 400 {
		defer resp.Body.Close()
		return nil, errorAnswer(method, path, resp, 1<<20)
	}
	return resp, nil
}

// retryAfter is how long a 429 answer asks to wait (at most 10 s: longer
// waits are the caller's to decide).
func retryAfter(resp *http.Response) (time.Duration, bool) {
	secs, err := strconv.Atoi(resp.Header.Get("Retry-After"))
	if err != nil || secs < 0 || secs > 10 {
		return 0, false
	}
	return time.Duration(secs) * time.Second, true
}

// errorAnswer is an error answer as *api.ErrorBody (from its first max
// bytes).
func errorAnswer(method, path string, resp *http.Response, max int64) error {
	var e api.ErrorResponse
	b, _ := io.ReadAll(io.LimitReader(resp.Body, max))
	if json.Unmarshal(b, &e) != nil || e.Error.Message == "" {
		e.Error = api.ErrorBody{Code: "http_" + fmt.Sprint(resp.StatusCode), Message: fmt.Sprintf("%s %s: %s: %s", method, path, resp.Status, strings.TrimSpace(string(b)))}
	}
	e.Error.Status = resp.StatusCode
	return &e.Error
}

// StatusOf returns the HTTP status of an API error (0 if err is not one).
func StatusOf(err error) int {
	var e *api.ErrorBody
	if errors.As(err, &e) {
		return e.Status
	}
	return 0
}

// CodeOf returns the API error code of err ("" if err is not one).
func CodeOf(err error) string {
	var e *api.ErrorBody
	if errors.As(err, &e) {
		return e.Code
	}
	return ""
}
