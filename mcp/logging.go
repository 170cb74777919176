package mcp

import (
	"context"
	"errors"
	"log/slog"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"
)

// loggerFor is where a request's handler logs: stderr, and the client of
// the session, which the SDK sends only what the client asked for with
// logging/setLevel. (MCP logging is deprecated from protocol 2026-07-28,
// but it is what 2025-06-18 clients use.)
func (s *Server) loggerFor(ss *sdk.ServerSession) *slog.Logger {
	if ss == nil {
		return s.log
	}
	client := sdk.NewLoggingHandler(ss, &sdk.LoggingHandlerOptions{LoggerName: "wire"})
	return slog.New(fanout{s.log.Handler(), client})
}

// fanout is a slog.Handler that passes each record to all of its handlers.
type fanout []slog.Handler

func (f fanout) Enabled(ctx context.Context, l slog.Level) bool {
	for _, h := range f {
		if h.Enabled(ctx, l) {
			return true
		}
	}
	return false
}

func (f fanout) Handle(ctx context.Context, r slog.Record) error {
	var errs []error
	for _, h := range f {
		if h.Enabled(ctx, r.Level) {
			errs = append(errs, h.Handle(ctx, r.Clone()))
		}
	}
	return errors.Join(errs...)
}

func (f fanout) WithAttrs(attrs []slog.Attr) slog.Handler {
	out := make(fanout, len(f))
	for i, h := range f {
		out[i] = h.WithAttrs(attrs)
	}
	return out
}

func (f fanout) WithGroup(name string) slog.Handler {
	out := make(fanout, len(f))
	for i, h := range f {
		out[i] = h.WithGroup(name)
	}
	return out
}
