package server

import (
	"context"
	"fmt"
	"net"
	"path/filepath"

	"github.com/kumocloud/kumo/api"
	"github.com/kumocloud/kumo/internal/agent"
	"github.com/kumocloud/kumo/internal/driver"
	_ "github.com/kumocloud/kumo/internal/driver/container" // registers "container"
	_ "github.com/kumocloud/kumo/internal/driver/sim"       // registers "sim"
	"github.com/kumocloud/kumo/internal/reqctx"
)

// startLocalAgent runs the all-in-one server's own agent: the same agent
// code as 'kumo agent', joined with a join token the server makes for it,
// talking HTTPS to this server's listener on loopback.
func (s *Server) startLocalAgent(ctx context.Context) error {
	if s.httpsAddr == "" {
		return fmt.Errorf("the local agent needs the HTTPS listener (--listen)")
	}
	_, port, _ := net.SplitHostPort(s.httpsAddr)
	opts := s.cfg.LocalDriverOptions
	base := filepath.Join(s.cfg.DataDir, "agent")
	log := s.log.With("component", "agent")
	tok, err := s.hosts.CreateJoinToken(reqctx.WithActor(ctx, "local-agent"), api.JoinTokensPost{TTLSeconds: 300, Description: "local agent"})
	if err != nil {
		return err
	}
	conn := agent.NewConn(agent.ConnConfig{Server: "https://127.0.0.1:" + port, JoinToken: tok.Token, Name: "local", StateDir: base, Log: log})
	opts.FetchImage = conn.FetchImage
	d, err := driver.Open(s.cfg.LocalDriver, base, opts)
	if err != nil {
		return err
	}
	a, err := agent.New(ctx, agent.Config{Conn: conn, Driver: d, Log: log, VTEP: s.cfg.LocalVTEP, Uplinks: s.cfg.LocalUplinks})
	if err != nil {
		return fmt.Errorf("local agent: %w", err)
	}
	go a.Run(ctx)
	return nil
}
