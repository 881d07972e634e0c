package bootstrap

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

// SignalContext is ctx, ended by SIGTERM or SIGINT: Run then shuts down
// gracefully. After the first signal the default action is back, so a
// second one ends the process without waiting for the grace period. stop
// releases the signals.
func SignalContext(ctx context.Context) (_ context.Context, stop context.CancelFunc) {
	ctx, stop = signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	context.AfterFunc(ctx, stop)
	return ctx, stop
}
