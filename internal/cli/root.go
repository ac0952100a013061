// Package cli is the kumo command line: nouns (project, user, token, flavor,
// operation, event, ...) and verbs over the Go client. It never touches the
// store or the server's internals.
package cli

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/kumocloud/kumo/api"
	"github.com/kumocloud/kumo/client"
)

// DefaultSocket is where a local server listens.
const DefaultSocket = "/run/kumo/kumo.sock"

// app holds the CLI's global flags and connection.
type app struct {
	socket     string
	remote     string
	project    string
	output     string
	insecureFP bool
	stdin      io.Reader
	stdinLines *bufio.Reader // stdin, once a password was read from it
	stdout     io.Writer
	stderr     io.Writer

	c         *client.Client
	cfg       *Config
	remoteCfg *Remote // the config remote in use, if any
	viaSocket bool
}

// Exit codes.
const (
	ExitError = 1 // the server or the connection said no
	ExitUsage = 2 // the command line is wrong
)

// exitCode passes on the exit status of a command run in an instance.
type exitCode int

func (e exitCode) Error() string { return "exit status " + strconv.Itoa(int(e)) }

// usageError marks command-line mistakes (exit 2).
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func usagef(format string, a ...any) error { return usageError{fmt.Sprintf(format, a...)} }

// Extra lets cmd/kumo add commands (server, agent) that need wiring.
type Extra func(root *cobra.Command)

// Main runs the CLI and returns the process exit code.
func Main(args []string, extra ...Extra) int {
	a := &app{stdin: os.Stdin, stdout: os.Stdout, stderr: os.Stderr}
	root := a.rootCmd()
	for _, e := range extra {
		e(root)
	}
	root.SetArgs(args)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := root.ExecuteContext(ctx)
	if err == nil {
		return 0
	}
	var ec exitCode
	if errors.As(err, &ec) {
		return int(ec) // a command run in an instance: its own status, no message
	}
	fmt.Fprintln(a.stderr, "Error: "+oneLine(err.Error()))
	var ue usageError
	if errors.As(err, &ue) || isCobraUsage(err) {
		return ExitUsage
	}
	return ExitError
}

func oneLine(s string) string { return termSafe(strings.Join(strings.Fields(s), " ")) }

func isCobraUsage(err error) bool {
	m := err.Error()
	for _, p := range []string{"unknown command", "unknown flag", "unknown shorthand", "accepts ", "requires at least", "invalid argument", "flag needs an argument", "required flag"} {
		if strings.Contains(m, p) {
			return true
		}
	}
	return false
}

func (a *app) rootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:           "kumo",
		Short:         "kumo: a private IaaS cloud in one binary",
		Long:          "kumo turns Linux machines into a cloud of virtual machines and system containers.\nRun 'kumo server' on the first machine; use the other commands to drive it.",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	pf := root.PersistentFlags()
	pf.StringVar(&a.socket, "socket", "", "talk to a local server's Unix socket (no login; env KUMO_SOCKET)")
	pf.StringVar(&a.remote, "remote", "", "server URL or remote name from 'kumo login' (env KUMO_REMOTE; with a URL, KUMO_TOKEN gives the token)")
	pf.StringVarP(&a.project, "project", "p", "", "project to act in (env KUMO_PROJECT; default: your default project)")
	pf.StringVarP(&a.output, "output", "o", "table", "output format: table, json, yaml, or csv for lists")
	pf.BoolVar(&a.insecureFP, "insecure-fingerprint-ok", false, "with a remote URL and no KUMO_CA_FINGERPRINT, trust whatever CA the server shows (scripts on trusted networks only)")
	root.PersistentPreRunE = func(cmd *cobra.Command, args []string) error {
		switch a.output {
		case "table", "json", "yaml", "csv":
		default:
			return usagef("--output %q: use table, json, yaml or csv (lists)", a.output)
		}
		return nil
	}
	root.AddCommand(a.versionCmd(), a.loginCmd(), a.logoutCmd(), a.remoteCmd(), a.whoamiCmd(),
		a.projectCmd(), a.userCmd(), a.tokenCmd(), a.flavorCmd(), a.operationCmd(), a.eventCmd(),
		a.instanceCmd(), a.serverGroupCmd(), a.hostCmd(), a.benchCmd(), a.usageCmd(), a.priceCmd(), a.imageCmd(), a.networkCmd(), a.portCmd(), a.securityGroupCmd(), a.floatingIPCmd(), a.cloudCmd(),
		a.volumeCmd(), a.storageCmd(), a.quotaCmd())
	return root
}

// Version is set by cmd/kumo at build time.
var Version = "dev"

func (a *app) versionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version of this kumo binary (and of the server, if reachable)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			fmt.Fprintf(a.stdout, "client: %s\n", Version)
			if err := a.connect(); err == nil {
				if info, err := a.c.ServerInfo(cmd.Context()); err == nil {
					fmt.Fprintf(a.stdout, "server: %s (API %s, %s)\n", info.Version, info.APIVersion, info.Store)
				}
			}
			return nil
		},
	}
}

// connect picks the server: --socket/KUMO_SOCKET, then --remote/KUMO_REMOTE
// (a URL or a remote name), then the current remote of the config file,
// then the default local socket.
func (a *app) connect() error {
	if a.c != nil {
		return nil
	}
	cfg, cfgErr := loadConfig()
	a.cfg = cfg
	socket := firstNonEmpty(a.socket, os.Getenv("KUMO_SOCKET"))
	if socket != "" {
		a.c, a.viaSocket = client.Socket(socket), true
		return nil
	}
	remote := firstNonEmpty(a.remote, os.Getenv("KUMO_REMOTE"))
	if strings.HasPrefix(remote, "https://") {
		fp := os.Getenv("KUMO_CA_FINGERPRINT")
		if fp == "" {
			if !a.insecureFP {
				return usagef("remote %s: set KUMO_CA_FINGERPRINT to the server's CA fingerprint (or pass --insecure-fingerprint-ok)", remote)
			}
			got, err := client.FetchFingerprint(context.Background(), remote)
			if err != nil {
				return err
			}
			fp = got
		}
		c, err := client.Remote(remote, os.Getenv("KUMO_TOKEN"), fp)
		if err != nil {
			return usagef("%v", err)
		}
		a.c = c
		return nil
	}
	if remote == "" && cfgErr == nil {
		remote = cfg.Current
	}
	if remote != "" {
		if cfgErr != nil {
			return cfgErr
		}
		r, ok := cfg.Remotes[remote]
		if !ok {
			return usagef("no remote named %q; 'kumo remote list' shows them, 'kumo login URL' adds one", remote)
		}
		c, err := client.Remote(r.URL, r.Token, r.Fingerprint)
		if err != nil {
			return err
		}
		a.c, a.remoteCfg = c, &r
		return nil
	}
	a.c, a.viaSocket = client.Socket(DefaultSocket), true
	return nil
}

// projectName is the project to act in: --project, KUMO_PROJECT, the
// remote's project, the user's default project, or "default" on the socket.
func (a *app) projectName(ctx context.Context) (string, error) {
	if p := firstNonEmpty(a.project, os.Getenv("KUMO_PROJECT")); p != "" {
		return p, nil
	}
	if err := a.connect(); err != nil {
		return "", err
	}
	if a.remoteCfg != nil && a.remoteCfg.Project != "" {
		return a.remoteCfg.Project, nil
	}
	if a.viaSocket {
		return "default", nil
	}
	w, err := a.c.Whoami(ctx)
	if err != nil {
		return "", err
	}
	if w.DefaultProject == "" {
		return "", usagef("you have no default project: pass --project (or set KUMO_PROJECT)")
	}
	return w.DefaultProject, nil
}

func firstNonEmpty(v ...string) string {
	for _, s := range v {
		if s != "" {
			return s
		}
	}
	return ""
}

// client returns the connected client (connecting first).
func (a *app) client() (*client.Client, error) {
	if err := a.connect(); err != nil {
		return nil, err
	}
	return a.c, nil
}

// readPassword reads a password: the first line of stdin with
// --password-stdin, else a prompt on the terminal (twice when confirm).
func (a *app) readPassword(fromStdin, confirm bool) (string, error) {
	return a.readSecret("Password: ", fromStdin, confirm)
}

// readSecret reads a password: one line of standard input (several calls
// read successive lines), or from the terminal after prompt.
func (a *app) readSecret(prompt string, fromStdin, confirm bool) (string, error) {
	if fromStdin {
		if a.stdinLines == nil {
			a.stdinLines = bufio.NewReader(a.stdin)
		}
		line, err := a.stdinLines.ReadString('\n')
		if err != nil && !errors.Is(err, io.EOF) {
			return "", err
		}
		pw := strings.TrimRight(line, "\r\n")
		if pw == "" {
			return "", usagef("--password-stdin: standard input held no password")
		}
		return pw, nil
	}
	fd := int(os.Stdin.Fd())
	if !term.IsTerminal(fd) {
		return "", usagef("no terminal to ask for a password: pass it on standard input with --password-stdin")
	}
	fmt.Fprint(a.stderr, prompt)
	b, err := term.ReadPassword(fd)
	fmt.Fprintln(a.stderr)
	if err != nil {
		return "", err
	}
	if confirm {
		fmt.Fprint(a.stderr, "Again: ")
		b2, err := term.ReadPassword(fd)
		fmt.Fprintln(a.stderr)
		if err != nil {
			return "", err
		}
		if string(b) != string(b2) {
			return "", usagef("the passwords differ")
		}
	}
	return string(b), nil
}

// waitFlag adds --wait to a command.
func waitFlag(cmd *cobra.Command, wait *bool, what string) {
	cmd.Flags().BoolVar(wait, "wait", false, what)
}

// followOperation waits for an operation, showing its progress on
// standard error as it changes: one line rewritten on a terminal, a line
// per change otherwise. A failed operation is an error.
func (a *app) followOperation(ctx context.Context, c *client.Client, op api.Operation) (api.Operation, error) {
	f, ok := a.stderr.(*os.File)
	tty := ok && term.IsTerminal(int(f.Fd()))
	last := -1
	done, err := c.FollowOperation(ctx, op.ID, time.Second, func(op api.Operation) {
		if op.Done() || op.Progress == last {
			return
		}
		last = op.Progress
		if tty {
			fmt.Fprintf(a.stderr, "\r%s: %d%%", op.Description, op.Progress)
		} else {
			fmt.Fprintf(a.stderr, "%s: %d%%\n", op.Description, op.Progress)
		}
	})
	if tty && last >= 0 {
		fmt.Fprintln(a.stderr)
	}
	return done, err
}

// finishOperation prints an operation, or waits for it with --wait and
// prints the result.
func (a *app) finishOperation(ctx context.Context, op api.Operation, wait bool) error {
	if !wait {
		if a.output == "table" {
			fmt.Fprintf(a.stdout, "operation %s started: %s ('kumo operation wait %s' to follow)\n", op.ID, op.Description, op.ID)
			return nil
		}
		return a.printObject(op)
	}
	done, err := a.c.WaitOperation(ctx, op.ID)
	if err != nil {
		return err
	}
	if a.output == "table" {
		fmt.Fprintf(a.stdout, "%s: done\n", done.Description)
		return nil
	}
	return a.printObject(done)
}
