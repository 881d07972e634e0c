// Package authn authenticates Istio agents' service-account tokens for the
// CSR service and the xDS TLS port so that junk cannot starve legitimate
// proxies (issue 17): results are cached briefly, concurrent reviews of one
// token are collapsed, and a peer (remote address) that keeps presenting
// bad tokens is backed off and may run only a few reviews at once. The
// TokenReviews themselves go through a client of their own per cluster
// (kube.Clients.NewClient), rate-limited for a mesh rather than at
// client-go's default 5 requests/s shared with the informers.
package authn

import (
	"time"
)

// Config sizes the token-review path. Zero fields take DefaultConfig's.
type Config struct {
	// QPS and Burst rate-limit each cluster's TokenReview client (kept
	// apart from the informers' client, whose limits then never delay a
	// review and vice versa). client-go's default is 5 and 10.
	QPS   float32
	Burst int

	// AcceptTTL is how long an accepted token is trusted without a new
	// review (never past the token's own exp claim); RefuseTTL how long a
	// refused one stays refused. MaxEntries bounds each of the two caches.
	AcceptTTL  time.Duration
	RefuseTTL  time.Duration
	MaxEntries int

	// MaxConcurrentPerPeer reviews run at once for one peer; up to
	// MaxWaitingPerPeer more wait for a slot, the rest are refused at once.
	MaxConcurrentPerPeer int
	MaxWaitingPerPeer    int
	// After FailuresBeforeBackoff refusals in a row, a peer's attempts
	// that would need a review are refused without one for BackoffBase,
	// doubling with each further refusal up to BackoffMax.
	FailuresBeforeBackoff int
	BackoffBase           time.Duration
	BackoffMax            time.Duration
	// MaxPeers bounds the peers remembered; idle ones are forgotten.
	MaxPeers int

	// ReviewTimeout bounds one TokenReview, whoever waits for it.
	ReviewTimeout time.Duration
	// MaxTokenBytes: longer tokens are refused unreviewed (a service-account
	// token is ~1 KB).
	MaxTokenBytes int
	// LogEvery: refusals are logged at most once per peer per interval.
	LogEvery time.Duration

	// Now is the clock (nil: time.Now); tests set it.
	Now func() time.Time
}

// DefaultConfig is the configuration `horizon-discovery discovery` runs with.
//
// Why these numbers: a legitimate proxy needs one review per CSR (about
// every 12 h) and one per token-authenticated xDS stream, so 100/s with a
// burst of 200 covers a rollout of hundreds of pods while staying a small
// share of an API server's capacity. A minute of trust is short next to a
// token's hour-long life and bounds how long a revoked token still works;
// 5 s of refusal absorbs a retry loop without delaying a fixed token long.
// 4 reviews at once per peer is more than any one proxy needs (CSR plus a
// stream or two) while 64 waiting lets the proxies behind one address (a
// gateway, a NAT) queue instead of failing. 5 refusals before back-off
// forgive a misconfiguration's first retries; 30 s caps the lock-out of a
// peer that shares its address with an attacker.
func DefaultConfig() Config {
	return Config{
		QPS: 100, Burst: 200,
		AcceptTTL: time.Minute, RefuseTTL: 5 * time.Second, MaxEntries: 8192,
		MaxConcurrentPerPeer: 4, MaxWaitingPerPeer: 64,
		FailuresBeforeBackoff: 5, BackoffBase: time.Second, BackoffMax: 30 * time.Second,
		MaxPeers:      8192,
		ReviewTimeout: 10 * time.Second, MaxTokenBytes: 16 << 10, LogEvery: 10 * time.Second,
	}
}

// withDefaults fills zero fields from DefaultConfig.
func (c Config) withDefaults() Config {
	d := DefaultConfig()
	set := func(v *int, def int) {
		if *v <= 0 {
			*v = def
		}
	}
	setD := func(v *time.Duration, def time.Duration) {
		if *v <= 0 {
			*v = def
		}
	}
	if c.QPS <= 0 {
		c.QPS = d.QPS
	}
	set(&c.Burst, d.Burst)
	setD(&c.AcceptTTL, d.AcceptTTL)
	setD(&c.RefuseTTL, d.RefuseTTL)
	set(&c.MaxEntries, d.MaxEntries)
	set(&c.MaxConcurrentPerPeer, d.MaxConcurrentPerPeer)
	set(&c.MaxWaitingPerPeer, d.MaxWaitingPerPeer)
	set(&c.FailuresBeforeBackoff, d.FailuresBeforeBackoff)
	setD(&c.BackoffBase, d.BackoffBase)
	setD(&c.BackoffMax, d.BackoffMax)
	set(&c.MaxPeers, d.MaxPeers)
	setD(&c.ReviewTimeout, d.ReviewTimeout)
	set(&c.MaxTokenBytes, d.MaxTokenBytes)
	setD(&c.LogEvery, d.LogEvery)
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}
