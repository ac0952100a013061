package server

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/kumocloud/kumo/api"
	"github.com/kumocloud/kumo/client"
	"github.com/kumocloud/kumo/internal/agent"
	"github.com/kumocloud/kumo/internal/driver"
	_ "github.com/kumocloud/kumo/internal/driver/container" // registers "container"
	_ "github.com/kumocloud/kumo/internal/driver/sim"       // registers "sim"
	"github.com/kumocloud/kumo/internal/reqctx"
)

// errRejoin: the local agent dropped a credential the server no longer
// knows, and joins again.
var errRejoin = errors.New("the local agent joins again")

// startLocalAgent runs the all-in-one server's own agent: the same agent
// code as 'kumo agent', joined with a join token the server makes for it
// when it needs one, talking HTTPS to this server's listener on loopback.
// Its credential is kept in DATA_DIR/agent/agent.json, so restarts
// re-attach.
//
// The local agent is an agent like any other: it never takes over hosts.
// If its credential is gone while its hosts are still registered, or the
// server no longer knows it, the server keeps serving (so a cloud admin
// can delete the hosts) and logs what to do; the agent joins once the
// hosts are free.
func (s *Server) startLocalAgent(ctx context.Context) error {
	if s.httpsAddr == "" {
		return fmt.Errorf("the local agent needs the HTTPS listener (--listen)")
	}
	_, port, _ := net.SplitHostPort(s.httpsAddr)
	base := filepath.Join(s.cfg.DataDir, "agent")
	log := s.log.With("component", "agent")
	var minted []string // join tokens made for the agent: deleted once it is done with them
	mint := func(ctx context.Context) (string, error) {
		tok, err := s.hosts.CreateJoinToken(reqctx.WithActor(ctx, "local-agent"), api.JoinTokensPost{TTLSeconds: 300, Description: "local agent"})
		minted = append(minted, tok.ID)
		return tok.Token, err
	}
	conn := agent.NewConn(agent.ConnConfig{Server: "https://127.0.0.1:" + port, MintJoinToken: mint, Name: "local", StateDir: base, Log: log})
	// The drivers start under ctx: a server stopped meanwhile (during the
	// qemu driver's KVM probe) stops them, and that is no failure.
	d, err := driver.Open(ctx, s.cfg.LocalDriver, driver.Common{StateDir: base, Images: conn}, s.cfg.LocalDriverConfigs)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	credPath := agent.CredentialFile(base)
	start := func() error {
		hadCred := agent.HasCredential(base)
		a, err := agent.New(ctx, agent.Config{Conn: conn, Driver: d, Log: log, VTEP: s.cfg.LocalVTEP, Uplinks: s.cfg.LocalUplinks})
		for _, id := range minted {
			s.hosts.DeleteJoinToken(context.WithoutCancel(ctx), id) // used, or not needed
		}
		minted = nil
		switch st := client.StatusOf(err); {
		case err == nil:
			go a.Run(ctx)
			return nil
		case st == http.StatusConflict && !hadCred:
			return fmt.Errorf("local agent: %w; its credential %s is gone, so it cannot act for its old hosts: if you removed it on purpose, delete them ('kumo host delete NAME' as a cloud admin) and the local agent joins again", err, credPath)
		case st == http.StatusUnauthorized && hadCred:
			// The server forgot this agent: a cloud admin deleted all its
			// hosts. Joining again takes nothing from anyone.
			log.Warn("the local agent's hosts were deleted; it joins again", "credential", credPath)
			if err := os.Remove(credPath); err != nil {
				return err
			}
			return errRejoin
		}
		return fmt.Errorf("local agent: %w", err)
	}
	err = start()
	if errors.Is(err, errRejoin) {
		err = start()
	}
	if err == nil || client.StatusOf(err) != http.StatusConflict {
		return err
	}
	// Keep serving, and try again until the hosts are free.
	s.log.Error("local agent not started", "err", err)
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-time.After(5 * time.Second):
			}
			err := start()
			if err == nil {
				s.log.Info("local agent joined")
				return
			}
			if ctx.Err() == nil {
				s.log.Error("local agent not started", "err", err)
			}
		}
	}()
	return nil
}
