// Package reqctx carries per-request values in a context: who is acting and
// the request's logger.
package reqctx

import (
	"context"
	"log/slog"
)

type key int

const (
	actorKey key = iota
	loggerKey
)

// WithActor records who is acting (a user name, "local" for the Unix
// socket, or "system" for controllers).
func WithActor(ctx context.Context, actor string) context.Context {
	return context.WithValue(ctx, actorKey, actor)
}

// Actor returns who is acting; "system" when nobody was recorded.
func Actor(ctx context.Context) string {
	if a, ok := ctx.Value(actorKey).(string); ok && a != "" {
		return a
	}
	return "system"
}

// WithLogger puts a logger in ctx.
func WithLogger(ctx context.Context, l *slog.Logger) context.Context {
	return context.WithValue(ctx, loggerKey, l)
}

// Logger returns the context's logger, or a discarding one.
func Logger(ctx context.Context) *slog.Logger {
	if l, ok := ctx.Value(loggerKey).(*slog.Logger); ok {
		return l
	}
	return slog.New(slog.DiscardHandler)
}
