package authn

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/horizonmesh/horizon/internal/model"
	"github.com/horizonmesh/horizon/internal/ratelog"
)

// Identity is an authenticated workload.
type Identity struct {
	Namespace      string
	ServiceAccount string
}

// Backend reviews one token with the API server of the cluster it names
// (ca.TokenReviewer), marking the token's own faults with Refused.
type Backend interface {
	Authenticate(ctx context.Context, cluster model.ClusterID, token string) (Identity, error)
}

// Results of an authentication, the values of the counter's result label.
const (
	ResultAccepted       = "accepted"        // reviewed (or joined a review) and accepted
	ResultRefused        = "refused"         // reviewed and refused (or refused unreviewed: too long)
	ResultError          = "error"           // no answer: the API server failed, or the caller gave up
	ResultCachedAccepted = "cached_accepted" // accepted from the cache
	ResultCachedRefused  = "cached_refused"  // refused from the cache
	ResultBackoff        = "backoff"         // the peer is backed off: refused unreviewed
	ResultBusy           = "busy"            // the peer has too many reviews running and waiting
)

// Reviewer authenticates tokens through a Backend with a cache, collapsed
// concurrent reviews, and per-peer back-off and concurrency (see Config).
// One Reviewer serves the CSR service and the xDS TLS port, so a peer's
// failures on either count on both. Safe for concurrent use.
type Reviewer struct {
	backend Backend
	cfg     Config
	log     *slog.Logger // rate-limited: one line per peer per LogEvery
	results *prometheus.CounterVec

	mu      sync.Mutex
	cache   *cache
	peers   *peers
	flights map[key]*flight // reviews running, by token
}

// flight is one running review; every caller of its token waits for it.
type flight struct {
	peer *peerState // whose slot it holds; its result is recorded for it at once
	done chan struct{}
	id   Identity
	err  error
}

// outcome is one caller's answer.
type outcome struct {
	id     Identity
	result string
	err    error
}

// NewReviewer returns a Reviewer over b, counting results on reg (nil: not
// registered) as horizon_token_reviews_total{result} and logging refusals
// to log (nil: discarded) at most once per peer per cfg.LogEvery.
func NewReviewer(b Backend, cfg Config, reg prometheus.Registerer, log *slog.Logger) *Reviewer {
	cfg = cfg.withDefaults()
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	r := &Reviewer{backend: b, cfg: cfg,
		log: ratelog.New(log, ratelog.Options{Every: cfg.LogEvery, KeyAttrs: []string{"peer"}, Now: cfg.Now}),
		results: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "horizon_token_reviews_total",
			Help: "Bearer-token authentications (CSRs and xDS streams) by result: accepted, refused, error, cached_accepted, cached_refused, backoff, busy.",
		}, []string{"result"}),
		cache: newCache(cfg.MaxEntries), flights: map[key]*flight{}}
	r.peers = newPeers(&r.cfg)
	for _, res := range []string{ResultAccepted, ResultRefused, ResultError, ResultCachedAccepted, ResultCachedRefused, ResultBackoff, ResultBusy} {
		r.results.WithLabelValues(res)
	}
	if reg != nil {
		reg.MustRegister(r.results)
	}
	return r
}

// Authenticate returns whose token this is, for the peer in ctx (gRPC's
// peer address). Errors are refusals (IsRefused), ErrThrottled (nothing
// reviewed), or the Backend's (no answer).
func (r *Reviewer) Authenticate(ctx context.Context, cluster model.ClusterID, token string) (Identity, error) {
	addr := PeerAddr(ctx)
	r.mu.Lock()
	p := r.peers.get(addr, r.cfg.Now())
	p.users++ // held until this call ends: p is not forgotten meanwhile
	r.mu.Unlock()
	o := r.authenticate(ctx, p, cluster, token)
	r.mu.Lock()
	p.users--
	r.mu.Unlock()
	r.results.WithLabelValues(o.result).Inc()
	if o.err != nil {
		r.log.Warn("token authentication refused", "peer", addr, "cluster", cluster, "result", o.result, "error", o.err)
	}
	return o.id, o.err
}

func (r *Reviewer) authenticate(ctx context.Context, p *peerState, cluster model.ClusterID, token string) outcome {
	r.mu.Lock()
	now := r.cfg.Now()
	if len(token) > r.cfg.MaxTokenBytes {
		r.peers.failed(p, now)
		r.mu.Unlock()
		return outcome{result: ResultRefused, err: Refused(fmt.Errorf("token of %d bytes is longer than %d", len(token), r.cfg.MaxTokenBytes))}
	}
	k := newKey(cluster, token)
	if o, ok := r.cachedLocked(k, p, now); ok {
		r.mu.Unlock()
		return o
	}
	f := r.flights[k]
	if f == nil {
		// A review is needed: this peer must not be backed off, and gets
		// one of its slots, waiting if all are taken.
		// A free slot is taken at once, under the lock: only a caller that
		// finds none counts as waiting (otherwise callers arriving together
		// were refused as busy while slots were free).
		slot := false
		if !p.backedOff(now) {
			select {
			case p.slots <- struct{}{}:
				slot = true
			default:
			}
		}
		if !slot {
			if o, ok := r.admitLocked(p, now); !ok {
				r.mu.Unlock()
				return o
			}
			p.waiting++
			r.mu.Unlock()
			var waitErr error
			select {
			case p.slots <- struct{}{}:
			case <-ctx.Done():
				waitErr = ctx.Err()
			}
			r.mu.Lock()
			p.waiting--
			if waitErr != nil {
				r.mu.Unlock()
				return outcome{result: ResultError, err: fmt.Errorf("waiting to review the token: %w", waitErr)}
			}
		}
		// While this caller waited, the token may have been reviewed, or
		// the peer's other attempts may have got it backed off.
		now = r.cfg.Now()
		if o, ok := r.cachedLocked(k, p, now); ok {
			<-p.slots
			r.mu.Unlock()
			return o
		}
		if f = r.flights[k]; f != nil {
			<-p.slots // someone else's review: join it
		} else if p.backedOff(now) {
			<-p.slots
			o, _ := r.admitLocked(p, now)
			r.mu.Unlock()
			return o
		} else {
			f = &flight{peer: p, done: make(chan struct{})}
			r.flights[k] = f
			p.users++ // and the slot: both released by review
			go r.review(context.WithoutCancel(ctx), p, k, f, cluster, token)
		}
	}
	r.mu.Unlock()
	select {
	case <-f.done:
	case <-ctx.Done():
		// The review goes on (holding the peer's slot) and its result is
		// cached; only this caller stops waiting.
		return outcome{result: ResultError, err: fmt.Errorf("token review: %w", ctx.Err())}
	}
	if f.peer != p { // joined another peer's review: the result counts for this one too
		r.mu.Lock()
		r.record(p, f.err, r.cfg.Now())
		r.mu.Unlock()
	}
	switch {
	case f.err == nil:
		return outcome{id: f.id, result: ResultAccepted}
	case IsRefused(f.err):
		return outcome{result: ResultRefused, err: f.err}
	default:
		return outcome{result: ResultError, err: f.err}
	}
}

// record counts a review's result for p: a refusal against it, an
// acceptance clears its failures; no answer is neither. Called with r.mu
// held.
func (r *Reviewer) record(p *peerState, err error, now time.Time) {
	switch {
	case err == nil:
		r.peers.succeeded(p)
	case IsRefused(err):
		r.peers.failed(p, now)
	}
}

// cachedLocked answers from the cache; a cached refusal still counts
// against the peer. Called with r.mu held.
func (r *Reviewer) cachedLocked(k key, p *peerState, now time.Time) (outcome, bool) {
	e, ok := r.cache.get(k, now)
	switch {
	case !ok:
		return outcome{}, false
	case e.err != nil:
		r.peers.failed(p, now)
		return outcome{result: ResultCachedRefused, err: e.err}, true
	default:
		return outcome{id: e.id, result: ResultCachedAccepted}, true
	}
}

// admitLocked refuses, unreviewed, a backed-off peer or one with too many
// reviews waiting. Called with r.mu held.
func (r *Reviewer) admitLocked(p *peerState, now time.Time) (outcome, bool) {
	if p.backedOff(now) {
		return outcome{result: ResultBackoff, err: fmt.Errorf("%w: %s is backed off for %s after %d failed authentications; retry later",
			ErrThrottled, p.addr, p.until.Sub(now).Round(time.Millisecond), p.failures)}, false
	}
	if p.waiting >= r.cfg.MaxWaitingPerPeer {
		return outcome{result: ResultBusy, err: fmt.Errorf("%w: %s already has %d token reviews running and %d waiting; retry later",
			ErrThrottled, p.addr, len(p.slots), p.waiting)}, false
	}
	return outcome{}, true
}

// review runs one TokenReview for every caller of its token, bounded by
// ReviewTimeout whether or not they still wait, caches its result and
// frees the peer's slot.
func (r *Reviewer) review(ctx context.Context, p *peerState, k key, f *flight, cluster model.ClusterID, token string) {
	ctx, cancel := context.WithTimeout(ctx, r.cfg.ReviewTimeout)
	id, err := r.backend.Authenticate(ctx, cluster, token)
	cancel()
	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.cfg.Now()
	switch {
	case err == nil:
		exp := now.Add(r.cfg.AcceptTTL)
		if t, ok := tokenExpiry(token); ok && t.Before(exp) {
			exp = t // never trusted past its own expiry
		}
		r.cache.put(k, entry{id: id, expires: exp}, now)
	case IsRefused(err):
		r.cache.put(k, entry{err: err, expires: now.Add(r.cfg.RefuseTTL)}, now)
	}
	// Recorded before the slot is freed, so that the next review of this
	// peer already sees this failure: at most FailuresBeforeBackoff-1 +
	// MaxConcurrentPerPeer reviews before a peer is backed off.
	r.record(p, err, now)
	delete(r.flights, k)
	<-p.slots
	p.users--
	f.id, f.err = id, err
	close(f.done)
}
