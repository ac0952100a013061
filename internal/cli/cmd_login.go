package cli

import (
	"bufio"
	"fmt"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/kumocloud/kumo/api"
	"github.com/kumocloud/kumo/client"
)

func (a *app) loginCmd() *cobra.Command {
	var user, name, acceptFP, project string
	var pwStdin bool
	var ttl time.Duration
	cmd := &cobra.Command{
		Use:   "login URL",
		Short: "Log in to a kumo server over HTTPS and remember it as a remote",
		Long: `Log in to a kumo server and save a token for it in the CLI's config file.

The first time, kumo shows the fingerprint of the server's CA and asks you to
confirm it (compare it with the one 'kumo server' printed at start, or GET /v1
on the server's socket); it is then pinned: a server showing another CA is refused.`,
		Example: "  kumo login https://cloud.example:8443 --user alice\n  echo \"$PW\" | kumo login https://10.0.0.5:8443 --user ci --password-stdin --accept-fingerprint 3f2a...",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			u, err := url.Parse(args[0])
			if err != nil || u.Host == "" {
				return usagef("server URL %q: want https://HOST[:PORT]", args[0])
			}
			if u.Scheme != "https" {
				return usagef("server URL %q: kumo speaks HTTPS only (https://HOST:PORT)", args[0])
			}
			if u.Port() == "" {
				u.Host += ":8443"
			}
			base := "https://" + u.Host
			if user == "" {
				return usagef("--user is required")
			}
			cfg, err := loadConfig()
			if err != nil {
				return err
			}
			if name == "" {
				name = u.Hostname()
			}
			fp, err := client.FetchFingerprint(ctx, base)
			if err != nil {
				return err
			}
			known := ""
			if r, ok := cfg.Remotes[name]; ok && r.URL == base {
				known = r.Fingerprint
			}
			switch {
			case acceptFP != "":
				if client.NormalizeFingerprint(acceptFP) != fp {
					return fmt.Errorf("the server's CA fingerprint is %s, not %s as given by --accept-fingerprint", fp, acceptFP)
				}
			case known != "":
				if known != fp {
					return fmt.Errorf("the server's CA fingerprint changed from %s to %s: if this is expected, remove the remote ('kumo remote remove %s') and log in again", known, fp, name)
				}
			case a.insecureFP:
			default:
				if pwStdin {
					return usagef("the server's CA fingerprint is %s: confirm it with --accept-fingerprint (stdin carries the password)", fp)
				}
				fmt.Fprintf(a.stderr, "Server CA fingerprint (SHA-256): %s\nTrust it? [y/N] ", fp)
				line, _ := bufio.NewReader(os.Stdin).ReadString('\n')
				if ans := strings.ToLower(strings.TrimSpace(line)); ans != "y" && ans != "yes" {
					return fmt.Errorf("not trusted; nothing saved")
				}
			}
			pw, err := a.readPassword(pwStdin, false)
			if err != nil {
				return err
			}
			c, err := client.Remote(base, "", fp)
			if err != nil {
				return err
			}
			host, _ := os.Hostname()
			tok, err := c.Login(ctx, api.TokensPost{Username: user, Password: pw, Description: "kumo CLI on " + host, TTLSeconds: int64(ttl.Seconds())})
			if err != nil {
				return err
			}
			c = c.WithToken(tok.Secret)
			if project == "" {
				if w, err := c.Whoami(ctx); err == nil {
					project = w.DefaultProject
				}
			}
			cfg.Remotes[name] = Remote{URL: base, Fingerprint: fp, Token: tok.Secret, TokenID: tok.ID, User: user, Project: project}
			cfg.Current = name
			if err := cfg.save(); err != nil {
				return err
			}
			fmt.Fprintf(a.stdout, "Logged in to %s as %s (remote %q, token expires %s)\n", base, user, name, tok.ExpiresAt.Local().Format(time.RFC1123))
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVarP(&user, "user", "u", "", "user name")
	f.BoolVar(&pwStdin, "password-stdin", false, "read the password from standard input")
	f.StringVar(&name, "name", "", "name for this remote (default: the server's host name)")
	f.StringVar(&acceptFP, "accept-fingerprint", "", "the CA fingerprint you expect (no prompt)")
	f.StringVar(&project, "default-project", "", "project to use by default with this remote")
	f.DurationVar(&ttl, "ttl", 0, "token lifetime (default: the server's)")
	return cmd
}

func (a *app) logoutCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "logout [REMOTE]",
		Short: "Revoke the saved token of a remote and forget it",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := loadConfig()
			if err != nil {
				return err
			}
			name := cfg.Current
			if len(args) == 1 {
				name = args[0]
			}
			r, ok := cfg.Remotes[name]
			if !ok {
				return usagef("no remote named %q", name)
			}
			if c, err := client.Remote(r.URL, r.Token, r.Fingerprint); err == nil && r.TokenID != "" {
				if _, err := c.RevokeToken(cmd.Context(), r.TokenID); err != nil {
					fmt.Fprintf(a.stderr, "warning: could not revoke the token on the server: %v\n", oneLine(err.Error()))
				}
			}
			delete(cfg.Remotes, name)
			if cfg.Current == name {
				cfg.Current = ""
			}
			return cfg.save()
		},
	}
}

func (a *app) remoteCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "remote", Short: "Manage the servers you logged in to"}
	cmd.AddCommand(&cobra.Command{
		Use: "list", Short: "List remotes", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadConfig()
			if err != nil {
				return err
			}
			type row struct {
				Name        string `json:"name"`
				Current     bool   `json:"current"`
				URL         string `json:"url"`
				User        string `json:"user"`
				Project     string `json:"project"`
				Fingerprint string `json:"ca_fingerprint"`
			}
			var rows []row
			for _, n := range cfg.names() {
				r := cfg.Remotes[n]
				rows = append(rows, row{n, n == cfg.Current, r.URL, r.User, r.Project, r.Fingerprint})
			}
			return printList(a, rows, []column[row]{
				col("NAME", func(r row) string {
					if r.Current {
						return r.Name + " (current)"
					}
					return r.Name
				}),
				col("URL", func(r row) string { return r.URL }),
				col("USER", func(r row) string { return r.User }),
				col("PROJECT", func(r row) string { return r.Project }),
				col("CA FINGERPRINT", func(r row) string { return r.Fingerprint[:16] + "…" }),
			})
		},
	}, &cobra.Command{
		Use: "use NAME", Short: "Make a remote the current one", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := loadConfig()
			if err != nil {
				return err
			}
			if _, ok := cfg.Remotes[args[0]]; !ok {
				return usagef("no remote named %q", args[0])
			}
			cfg.Current = args[0]
			return cfg.save()
		},
	}, &cobra.Command{
		Use: "remove NAME", Short: "Forget a remote (its token stays valid until it expires; use logout to revoke it)", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := loadConfig()
			if err != nil {
				return err
			}
			if _, ok := cfg.Remotes[args[0]]; !ok {
				return usagef("no remote named %q", args[0])
			}
			delete(cfg.Remotes, args[0])
			if cfg.Current == args[0] {
				cfg.Current = ""
			}
			return cfg.save()
		},
	})
	return cmd
}

func (a *app) whoamiCmd() *cobra.Command {
	return &cobra.Command{
		Use: "whoami", Short: "Show who the server thinks you are", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			w, err := c.Whoami(cmd.Context())
			if err != nil {
				return err
			}
			return a.printObject(w)
		},
	}
}
