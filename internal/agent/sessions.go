package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/coder/websocket"

	"github.com/kumocloud/kumo/api"
	"github.com/kumocloud/kumo/internal/driver"
	"github.com/kumocloud/kumo/internal/execframe"
)

// The agent's session job: work the server queues for an instance's host
// on a user's behalf (exec, logs, the console, a disk snapshot). Agents
// are never called: they fetch sessions with a long poll, and answer with
// a result or a byte stream they open themselves.

// sessionSource is what the session job needs of the server.
type sessionSource interface {
	Sessions(ctx context.Context, wait time.Duration) ([]api.Session, error)
	SessionResult(ctx context.Context, sid string, res api.SessionResult) error
	Stream(ctx context.Context, sid string) (io.ReadWriteCloser, error)
	// Console opens the agent's end of a console session (console.go).
	Console(ctx context.Context, sid string) (*websocket.Conn, error)
}

// sessionJob is the session job.
type sessionJob struct {
	src     sessionSource
	d       driver.Driver
	tempDir string // where a snapshot is made before it is sent
	log     *slog.Logger
}

func (sj *sessionJob) run(ctx context.Context) {
	for ctx.Err() == nil {
		ss, err := sj.src.Sessions(ctx, 30*time.Second)
		if err != nil {
			if ctx.Err() == nil {
				sleep(ctx, time.Second)
			}
			continue
		}
		for _, s := range ss {
			switch s.Kind {
			case "exec":
				go sj.stream(ctx, s, sj.exec)
			case "console":
				go sj.console(ctx, s)
			case "snapshot":
				go sj.stream(ctx, s, sj.snapshot)
			default:
				go func() {
					res := sj.session(ctx, s)
					if err := sj.src.SessionResult(ctx, s.ID, res); err != nil {
						sj.log.Warn("session result", "session", s.ID, "err", err)
					}
				}()
			}
		}
	}
}

// stream opens the agent's end of an exec or snapshot session's byte stream and hands it
// to serve.
func (sj *sessionJob) stream(ctx context.Context, s api.Session, serve func(context.Context, api.Session, io.ReadWriter)) {
	rw, err := sj.src.Stream(ctx, s.ID)
	if err != nil {
		sj.log.Warn(s.Kind+" stream", "session", s.ID, "err", err)
		return
	}
	defer rw.Close()
	serve(ctx, s, rw)
}

// snapshot streams an instance's disk image to the server: a first line,
// "ok SIZE" (the image's bytes, for the snapshot's progress) or
// "error: why", then the bytes.
func (sj *sessionJob) snapshot(ctx context.Context, s api.Session, rw io.ReadWriter) {
	sn, err := driver.Feature[driver.Snapshotter](sj.d)
	if err != nil {
		fmt.Fprintf(rw, "error: %v\n", err)
		return
	}
	// The image is made before the first byte is sent, so an error can
	// still be told; it is kept in a temporary file meanwhile.
	f, err := os.CreateTemp(sj.tempDir, ".snapshot-*")
	if err != nil {
		fmt.Fprintf(rw, "error: %v\n", err)
		return
	}
	defer os.Remove(f.Name())
	defer f.Close()
	if err := sn.Snapshot(ctx, s.InstanceID, f); err != nil {
		fmt.Fprintf(rw, "error: %v\n", err)
		return
	}
	size, err := f.Seek(0, io.SeekEnd)
	if err == nil {
		_, err = f.Seek(0, io.SeekStart)
	}
	if err != nil {
		fmt.Fprintf(rw, "error: %v\n", err)
		return
	}
	fmt.Fprintf(rw, "ok %d\n", size)
	if _, err := io.Copy(rw, f); err != nil {
		sj.log.Warn("snapshot stream", "session", s.ID, "err", err)
	}
}

// exec runs a command in the instance, streaming its output as it comes
// (execframe); a stream the server stops reading ends the command.
func (sj *sessionJob) exec(ctx context.Context, s api.Session, rw io.ReadWriter) {
	fw := execframe.NewWriter(rw)
	ex, err := driver.Feature[driver.Execer](sj.d)
	if err != nil {
		fw.Fail(err)
		return
	}
	cctx, cancel := context.WithTimeout(ctx, time.Duration(max(s.Timeout, 1))*time.Second)
	defer cancel()
	code, err := ex.Exec(cctx, s.InstanceID, s.Command, &stopOnError{w: fw, stop: cancel})
	switch {
	case errors.Is(cctx.Err(), context.DeadlineExceeded):
		fw.Fail(fmt.Errorf("the command ran past its %d s and was killed", s.Timeout))
	case err != nil:
		fw.Fail(err)
	default:
		fw.Exit(code)
	}
}

// stopOnError ends the command when its output cannot be passed on (the
// user went away): it must not block on a full pipe for ever.
type stopOnError struct {
	w    io.Writer
	stop func()
}

func (s *stopOnError) Write(p []byte) (int, error) {
	n, err := s.w.Write(p)
	if err != nil {
		s.stop()
	}
	return n, err
}

func (sj *sessionJob) session(ctx context.Context, s api.Session) api.SessionResult {
	switch s.Kind {
	case "logs":
		lg, err := driver.Feature[driver.Logger](sj.d)
		if err != nil {
			return api.SessionResult{Error: err.Error()}
		}
		out, err := lg.Logs(ctx, s.InstanceID, s.Tail)
		if err != nil {
			return api.SessionResult{Error: "logs: " + err.Error()}
		}
		return api.SessionResult{Output: string(out)}
	}
	return api.SessionResult{Error: "unknown session kind " + s.Kind}
}
