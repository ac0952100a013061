package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"

	"github.com/kumocloud/kumo/internal/agent"
	"github.com/kumocloud/kumo/internal/driver"
)

// watchdogPipe is the write end of the pipe that is the watchdog's
// stdin: held (never closed) for the life of this process, so that the
// kernel closes it when the agent dies, however it dies. A package
// variable: a collected *os.File would close it.
var watchdogPipe *os.File

// startFenceWatchdog starts the agent's fencing watchdog (agent.Watchdog):
// this same command with --fence-watchdog, in a process group of its own
// (a signal to the agent's group does not reach it), logging to
// STATE_DIR/fence-watchdog.log.
func startFenceWatchdog(stateDir string) error {
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	if err := os.MkdirAll(stateDir, 0o700); err != nil {
		return err
	}
	logf, err := os.OpenFile(filepath.Join(stateDir, "fence-watchdog.log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	defer logf.Close()
	r, w, err := os.Pipe()
	if err != nil {
		return err
	}
	defer r.Close()
	cmd := exec.Command(exe, append(append([]string{}, os.Args[1:]...), "--fence-watchdog")...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = r, logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		w.Close()
		return fmt.Errorf("starting the fence watchdog: %w", err)
	}
	watchdogPipe = w
	go cmd.Wait()
	return nil
}

// runFenceWatchdog is the watchdog process: it waits for its stdin to
// close (the agent died) and fences as agent.Watchdog says.
func runFenceWatchdog(ctx context.Context, drv string, common driver.Common, cfgs driver.Configs, log *slog.Logger) error {
	gone := make(chan struct{})
	go func() {
		io.Copy(io.Discard, os.Stdin)
		close(gone)
	}()
	open := func(ctx context.Context) (driver.Driver, error) {
		return driver.Open(ctx, drv, common, cfgs)
	}
	return agent.Watchdog(ctx, open, common.StateDir, gone, log)
}
