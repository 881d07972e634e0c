package bootstrap

import (
	"context"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/horizonmesh/horizon/internal/controlplane"
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

// run waits until ctx ends or a server stops (the others then stop
// serving too), shuts every server down and returns the first error a
// server reported.
func (s *servers) run(ctx context.Context, grace time.Duration, cp *controlplane.ControlPlane, log *slog.Logger) error {
	running := s.count()
	var failed error
	select {
	case <-ctx.Done():
	case failed = <-s.done:
		running--
		s.stopServing()
	}
	return s.shutdown(running, failed, grace, cp, log)
}

// shutdown stops the servers in steps, bounded by grace: no new
// connections (the gRPC servers close their listeners), the ADS streams
// end with Unavailable, the HTTP servers finish their requests, and once
// grace is over what is left is closed. running servers have yet to
// report; failed is the first error one reported.
func (s *servers) shutdown(running int, failed error, grace time.Duration, cp *controlplane.ControlPlane, log *slog.Logger) error {
	begin := time.Now()
	log.Info("shutting down: no new connections, ending xDS streams", "streams", len(cp.Tracker.Streams()), "grace", grace)
	graceCtx, cancelGrace := context.WithTimeout(context.Background(), grace)
	defer cancelGrace()
	grpcs, https, closed := s.stop()
	// Streams end once their servers have closed their listeners: a proxy
	// that reconnects at once then finds another replica, not this one.
	awaitClosed(graceCtx, closed)
	s.endStreams()
	httpDone := shutdownHTTP(graceCtx, https)
	forced, failed := s.awaitStopped(graceCtx, running, failed, grpcs, cp, log)
	<-httpDone
	log.Info("shutdown complete", "took", time.Since(begin).Round(time.Millisecond), "forced", forced, "streams", len(cp.Tracker.Streams()))
	return failed
}

// awaitClosed waits until every listener in closed is closed, or grace ends.
func awaitClosed(grace context.Context, closed []<-chan struct{}) {
	for _, ch := range closed {
		select {
		case <-ch:
		case <-grace.Done():
		}
	}
}

// shutdownHTTP lets each HTTP server finish its requests until grace
// ends, then closes it; the channel closes when all are done.
func shutdownHTTP(grace context.Context, https []*http.Server) <-chan struct{} {
	done := make(chan struct{})
	go func() {
		for _, h := range https {
			if h.Shutdown(grace) != nil {
				_ = h.Close() // the grace period is over
			}
		}
		close(done)
	}()
	return done
}

// awaitStopped waits for the running servers to report, keeping the first
// error; once grace is over it stops the gRPC servers at once, closing
// the connections left.
func (s *servers) awaitStopped(grace context.Context, running int, failed error, grpcs []*grpc.Server,
	cp *controlplane.ControlPlane, log *slog.Logger) (forced bool, _ error) {
	force := grace.Done()
	for running > 0 {
		select {
		case err := <-s.done:
			running--
			if err != nil && failed == nil {
				failed = err
			}
		case <-force:
			force, forced = nil, true
			log.Warn("shutdown grace period over: closing the remaining connections", "streams", len(cp.Tracker.Streams()))
			for _, g := range grpcs {
				g.Stop()
			}
		}
	}
	return forced, failed
}

// shutdownStatus ends with Unavailable "server shutting down" the streams
// that ended because shutdown did: go-control-plane returns nil when its
// context ends, which a client sees as a bare end of stream (EOF).
// Unavailable tells Envoy to reconnect, as for any transient failure.
func shutdownStatus(shutdown context.Context) grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		err := handler(srv, ss)
		if err == nil && shutdown.Err() != nil {
			return status.Error(codes.Unavailable, "server shutting down")
		}
		return err
	}
}
