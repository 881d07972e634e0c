// Package testkit is what tests across Horizon share: one way to wait for
// an observable condition, one ordered log of reported events to wait on,
// one free port, one throwaway logger, one buffer goroutines may write
// while the test reads it. (Istio's
// pkg/test/util/retry and Envoy Gateway's internal/utils/test play this
// part there.)
package testkit

import (
	"log/slog"
	"net"
	"testing"
	"time"
)

// DefaultTimeout bounds a wait for something that happens in milliseconds
// when all is well: a missing event fails the test instead of hanging it.
const DefaultTimeout = 10 * time.Second

// Eventually polls ok until it holds, failing t after timeout with what
// was awaited. For conditions that no event announces (a stream's slot
// freed, a counter reached); where an event exists, wait on the event.
// Polling starts at 1 ms and backs off to 20 ms, so a fast condition costs
// nothing and a slow one little CPU.
func Eventually(t testing.TB, timeout time.Duration, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	pause := time.Millisecond
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(pause)
		pause = min(2*pause, 20*time.Millisecond)
	}
}

// WaitFor is Eventually with DefaultTimeout.
func WaitFor(t testing.TB, what string, ok func() bool) {
	t.Helper()
	Eventually(t, DefaultTimeout, what, ok)
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago
// (for a program that must be given a port rather than a listener).
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// Logger returns a logger that writes nothing.
func Logger() *slog.Logger { return slog.New(slog.DiscardHandler) }
