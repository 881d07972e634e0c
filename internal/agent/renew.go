package agent

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"time"
)

// Fetcher obtains a fresh workload certificate (CertClient does, from
// discovery's CSR service).
type Fetcher interface {
	Fetch(ctx context.Context) (*Identity, error)
}

// Publisher serves an identity to Envoy (the SDS server).
type Publisher interface {
	Update(id *Identity) error
}

// Backoff is the retry policy of certificate requests: exponential from
// Initial, doubling up to Max, each delay jittered by ±Jitter (a fraction).
type Backoff struct {
	Initial time.Duration
	Max     time.Duration
	// StartMax, when set, caps the delays before the first certificate:
	// until it has one the workload's proxy does not run, so a CA (or the
	// gateway in front of it) that comes up a minute late must not cost
	// another 30 s; renewals, with a certificate serving, can wait longer.
	StartMax time.Duration
	Jitter   float64
}

// DefaultBackoff retries after about 0.5s, 1s, 2s, ... up to 30s (4s
// before the first certificate).
var DefaultBackoff = Backoff{Initial: 500 * time.Millisecond, Max: 30 * time.Second, StartMax: 4 * time.Second, Jitter: 0.2}

// Delay is the wait before retry number attempt (1 for the first retry);
// r is a uniform random number in [0, 1). With a jitter below 1/3 the delays
// grow strictly until the cap.
func (b Backoff) Delay(attempt int, r float64) time.Duration {
	d := b.Initial
	for i := 1; i < attempt && d < b.Max; i++ {
		d *= 2
	}
	d = min(d, b.Max)
	j := 1 + b.Jitter*(2*r-1)
	return time.Duration(float64(d) * j)
}

// Renewer keeps the workload's certificate fresh: it renews it at half its
// life and publishes the new one. When the CA cannot be reached it retries
// with capped, jittered exponential back-off while the current certificate
// keeps serving — it is never withdrawn, not even once it has expired
// (there is nothing better to serve), and Envoy's traffic is unaffected
// until then.
type Renewer struct {
	Certs   Fetcher
	SDS     Publisher
	Log     *slog.Logger
	Backoff Backoff // zero: DefaultBackoff

	// Injected for tests; zero values are the real clock and randomness.
	Now   func() time.Time
	After func(time.Duration) <-chan time.Time
	Rand  func() float64
}

func (r *Renewer) now() time.Time {
	if r.Now != nil {
		return r.Now()
	}
	return time.Now()
}

func (r *Renewer) after(d time.Duration) <-chan time.Time {
	if r.After != nil {
		return r.After(d)
	}
	return time.After(d)
}

func (r *Renewer) backoff() Backoff {
	if r.Backoff.Initial <= 0 {
		return DefaultBackoff
	}
	b := r.Backoff
	if b.Max < b.Initial {
		b.Max = b.Initial
	}
	return b
}

func (r *Renewer) rand() float64 {
	if r.Rand != nil {
		return r.Rand()
	}
	return rand.Float64()
}

// First gets the first certificate, retrying until it succeeds or ctx ends,
// and publishes it.
func (r *Renewer) First(ctx context.Context) (*Identity, error) {
	return r.obtain(ctx, nil)
}

// Run renews id at half its life, and every certificate after it, until ctx
// ends.
func (r *Renewer) Run(ctx context.Context, id *Identity) {
	for renewed := false; ; renewed = true {
		wait := id.RenewAt().Sub(r.now())
		if renewed {
			// Never spin on a CA that hands out certificates already due.
			wait = max(wait, r.backoff().Initial)
		}
		select {
		case <-ctx.Done():
			return
		case <-r.after(wait):
		}
		next, err := r.obtain(ctx, id)
		if err != nil {
			return // ctx ended
		}
		id = next
	}
}

// obtain fetches and publishes a certificate, retrying with back-off until
// it succeeds or ctx ends. current (nil at start) keeps serving meanwhile.
// A failed attempt logs one line on attempts 1, 2, 4, 8, ... (the delays
// double too), so a long outage does not flood the log.
func (r *Renewer) obtain(ctx context.Context, current *Identity) (*Identity, error) {
	b := r.backoff()
	if current == nil && b.StartMax > 0 {
		b.Max = min(b.Max, max(b.StartMax, b.Initial))
	}
	start := r.now()
	expiredLogged := false
	for attempt := 1; ; attempt++ {
		id, err := r.Certs.Fetch(ctx)
		if err == nil {
			if id.Received.IsZero() {
				id.Received = r.now()
			}
			if err = r.SDS.Update(id); err != nil {
				err = fmt.Errorf("SDS update: %w", err)
			}
		}
		if err == nil {
			attrs := []any{"identity", id.Leaf.URIs, "notAfter", id.NotAfter}
			if attempt > 1 {
				attrs = append(attrs, "failedAttempts", attempt-1, "after", r.now().Sub(start).Round(time.Millisecond))
			}
			if current == nil {
				r.Log.Info("workload certificate", attrs...)
			} else {
				r.Log.Info("certificate rotated", attrs...)
			}
			return id, nil
		}
		if ctx.Err() != nil {
			return nil, fmt.Errorf("no certificate: %w", err)
		}
		delay := b.Delay(attempt, r.rand())
		level := slog.LevelDebug
		if attempt&(attempt-1) == 0 {
			level = slog.LevelWarn
		}
		switch {
		case current == nil:
			r.Log.Log(ctx, level, "certificate request failed; retrying", "attempt", attempt, "in", delay.Round(time.Millisecond), "error", err)
		case r.now().Before(current.NotAfter):
			r.Log.Log(ctx, level, "certificate renewal failed; the current certificate keeps serving", "attempt", attempt,
				"in", delay.Round(time.Millisecond), "expiresIn", current.NotAfter.Sub(r.now()).Round(time.Second), "error", err)
		default:
			if !expiredLogged {
				level, expiredLogged = slog.LevelError, true
			}
			r.Log.Log(ctx, level, "certificate renewal failed and the current certificate has expired; still serving it until renewal succeeds",
				"attempt", attempt, "in", delay.Round(time.Millisecond), "expired", current.NotAfter, "error", err)
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("no certificate: %w", err)
		case <-r.after(delay):
		}
	}
}
