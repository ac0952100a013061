package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/kumocloud/kumo/api"
	"github.com/kumocloud/kumo/client"
	"github.com/kumocloud/kumo/internal/atomicfile"
	"github.com/kumocloud/kumo/internal/hosts"
	"github.com/kumocloud/kumo/internal/secret"
	"github.com/kumocloud/kumo/internal/store"
)

// ConnConfig says how an agent reaches its server.
type ConnConfig struct {
	// Server is the API's https URL; JoinToken is needed on first start
	// (or MintJoinToken, which makes one when a join needs it: the
	// server's own local agent).
	Server        string
	JoinToken     string
	MintJoinToken func(context.Context) (string, error)
	// Name of the agent (default: the machine's host name).
	Name string
	// StateDir keeps the agent's credential (agent.json, 0600).
	StateDir string
	// WrapTransport, if set, sees every API call (tests check them
	// against the OpenAPI contract).
	WrapTransport func(http.RoundTripper) http.RoundTripper
	Log           *slog.Logger
}

// Conn is an agent's identity at its server: the credential it keeps in
// its state dir (made by joining with a join token on its first start)
// and the client that carries it. It is made before the driver, which
// fetches image bytes through it; it is opened (credential loaded or
// joined, hosts registered) when the agent is made from the driver.
type Conn struct {
	cfg ConnConfig
	log *slog.Logger

	mu sync.Mutex
	c  *client.Client
	id string
}

// NewConn prepares a connection; nothing is sent until the agent opens it.
func NewConn(cfg ConnConfig) *Conn {
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Name == "" {
		cfg.Name, _ = os.Hostname()
	}
	return &Conn{cfg: cfg, log: cfg.Log}
}

// credential is what the agent keeps after joining. Before it joins it
// keeps only PendingSecret, the credential's secret it chose: a join
// retried after a lost answer or a crash is then the same agent, never a
// second one that the first one's hosts would refuse.
type credential struct {
	Server        string `json:"server,omitempty"`
	Fingerprint   string `json:"ca_fingerprint,omitempty"`
	AgentID       string `json:"agent_id,omitempty"`
	Credential    string `json:"credential,omitempty"`
	PendingSecret string `json:"pending_secret,omitempty"`
}

// CredentialFile is where an agent with this state directory keeps its
// credential.
func CredentialFile(stateDir string) string { return filepath.Join(stateDir, "agent.json") }

// HasCredential reports whether the agent of stateDir has joined (holds a
// credential, not only the secret of a join in progress).
func HasCredential(stateDir string) bool {
	var cred credential
	b, err := os.ReadFile(CredentialFile(stateDir))
	return err == nil && json.Unmarshal(b, &cred) == nil && cred.Credential != ""
}

// FetchImage gets image bytes from the server by sha256 (drivers verify
// them against the hash). It fails until the connection is open.
func (cn *Conn) FetchImage(ctx context.Context, sum string) (io.ReadCloser, error) {
	c, id := cn.client()
	if c == nil {
		return nil, errors.New("the agent has not joined its server yet")
	}
	return c.AgentImage(ctx, id, sum)
}

func (cn *Conn) client() (*client.Client, string) {
	cn.mu.Lock()
	defer cn.mu.Unlock()
	return cn.c, cn.id
}

// open loads the agent's credential and re-registers its hosts, or, on
// the first start, joins with the join token.
func (cn *Conn) open(ctx context.Context, driverName string, specs []api.HostSpec) error {
	credPath := CredentialFile(cn.cfg.StateDir)
	var cred credential
	if b, err := os.ReadFile(credPath); err == nil {
		if err := json.Unmarshal(b, &cred); err != nil {
			return fmt.Errorf("%s: %w", credPath, err)
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return err
	}
	if cred.Credential != "" {
		c, err := client.Remote(cred.Server, cred.Credential, cred.Fingerprint)
		if err != nil {
			return err
		}
		if cn.cfg.WrapTransport != nil {
			c.WrapTransport(cn.cfg.WrapTransport)
		}
		if err := retry(ctx, cn.log, func() error { _, err := c.PutAgentHosts(ctx, cred.AgentID, specs); return err }); err != nil {
			if client.StatusOf(err) == http.StatusUnauthorized {
				return fmt.Errorf("re-registering hosts: %w (the server no longer knows agent %s; to join again, remove %s and start with --join-token)", err, cred.AgentID, credPath)
			}
			return fmt.Errorf("re-registering hosts: %w", err)
		}
		cn.set(c, cred.AgentID)
		cn.log.Info("agent re-attached", "agent", cred.AgentID, "hosts", len(specs))
		return nil
	}
	token := cn.cfg.JoinToken
	if token == "" && cn.cfg.MintJoinToken != nil {
		var err error
		if token, err = cn.cfg.MintJoinToken(ctx); err != nil {
			return err
		}
	}
	if token == "" || cn.cfg.Server == "" {
		return errors.New("first start: give --server URL and --join-token TOKEN ('kumo host join-token create' makes one)")
	}
	fp, _, _, err := hosts.ParseJoinToken(token)
	if err != nil {
		return err
	}
	c, err := client.Remote(cn.cfg.Server, "", fp)
	if err != nil {
		return err
	}
	if cn.cfg.WrapTransport != nil {
		c.WrapTransport(cn.cfg.WrapTransport)
	}
	if err := os.MkdirAll(cn.cfg.StateDir, 0o700); err != nil {
		return err
	}
	if cred.PendingSecret == "" {
		cred.PendingSecret = secret.Hex(24)
		if err := atomicfile.Write(credPath, store.MustJSON(cred), 0o600); err != nil {
			return err
		}
	}
	var ag api.Agent
	err = retry(ctx, cn.log, func() (err error) {
		ag, err = c.JoinAgent(ctx, api.AgentsPost{JoinToken: token, Name: cn.cfg.Name, Driver: driverName, Hosts: specs, CredentialSecret: cred.PendingSecret})
		return err
	})
	if err != nil {
		return fmt.Errorf("joining %s: %w", cn.cfg.Server, err)
	}
	cred = credential{Server: cn.cfg.Server, Fingerprint: fp, AgentID: ag.ID, Credential: ag.Credential}
	if err := atomicfile.Write(credPath, store.MustJSON(cred), 0o600); err != nil {
		return err
	}
	cn.set(c.WithToken(ag.Credential), ag.ID)
	cn.log.Info("agent joined", "agent", ag.ID, "hosts", len(specs))
	return nil
}

func (cn *Conn) set(c *client.Client, id string) {
	cn.mu.Lock()
	cn.c, cn.id = c, id
	cn.mu.Unlock()
}

// retry calls fn until it succeeds, ctx ends, or the server answers with
// a client error (4xx: retrying will not help). An unreachable or failing
// server is waited for, as a host agent must outlive server restarts.
func retry(ctx context.Context, log *slog.Logger, fn func() error) error {
	for attempt := 0; ; attempt++ {
		err := fn()
		st := client.StatusOf(err)
		if err == nil || st >= 400 && st < 500 {
			return err
		}
		if attempt%10 == 0 {
			log.Warn("server not reachable yet; retrying", "err", err)
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(time.Duration(min(attempt+1, 10)) * 200 * time.Millisecond):
		}
	}
}
