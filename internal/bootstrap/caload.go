package bootstrap

import (
	"context"
	"errors"
	"log/slog"
	"sync/atomic"
	"time"

	"k8s.io/client-go/kubernetes"

	"github.com/horizonmesh/horizon/internal/ca"
)

// apiError marks a failure to talk to the API server while loading the CA:
// worth retrying, unlike invalid cacerts.
type apiError struct{ error }

func (e apiError) Unwrap() error { return e.error }

// caLoader loads the CA in the background, retrying while the local API
// server cannot be reached, so that discovery starts (not ready, ops HTTP
// answering) rather than exiting when it starts before its API server.
type caLoader struct {
	done   chan struct{}
	a      *ca.Authority
	err    error
	loaded atomic.Bool
}

// loadCA loads the CA at once when no API server is involved (a bad CA
// then stops the start), else in the background.
func loadCA(ctx context.Context, c Config, local kubernetes.Interface, log *slog.Logger) (*caLoader, error) {
	if c.CACertsDir != "" || local == nil {
		a, err := loadAuthority(ctx, c, local, log)
		if err != nil {
			return nil, err
		}
		return loadedCA(a), nil
	}
	return startCALoader(ctx, c, local, log), nil
}

func startCALoader(ctx context.Context, c Config, local kubernetes.Interface, log *slog.Logger) *caLoader {
	l := &caLoader{done: make(chan struct{})}
	go func() {
		defer close(l.done)
		backoff, lastErr := time.Second, ""
		for {
			a, err := loadAuthority(ctx, c, local, log)
			var transient apiError
			if err == nil || !errors.As(err, &transient) {
				l.a, l.err = a, err
				l.loaded.Store(err == nil)
				return
			}
			if err.Error() != lastErr {
				log.Warn("CA: cannot read from the API server yet; retrying (not ready meanwhile)", "error", err)
				lastErr = err.Error()
			}
			select {
			case <-ctx.Done():
				l.err = ctx.Err()
				return
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, 30*time.Second)
		}
	}()
	return l
}

// loadedCA is a caLoader whose CA is already there.
func loadedCA(a *ca.Authority) *caLoader {
	l := &caLoader{done: make(chan struct{}), a: a}
	l.loaded.Store(true)
	close(l.done)
	return l
}

// wait returns the CA once loaded (or why it will not be).
func (l *caLoader) wait(ctx context.Context) (*ca.Authority, error) {
	select {
	case <-l.done:
		return l.a, l.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}
