package authn

import (
	"context"
	"net"
	"time"

	"google.golang.org/grpc/peer"
)

// PeerAddr is the caller's address without its port (one client opening
// many connections is one peer), "unknown" when the context has none.
func PeerAddr(ctx context.Context) string {
	p, ok := peer.FromContext(ctx)
	if !ok || p.Addr == nil {
		return "unknown"
	}
	if a, ok := p.Addr.(*net.TCPAddr); ok {
		return a.IP.String()
	}
	s := p.Addr.String()
	if h, _, err := net.SplitHostPort(s); err == nil {
		s = h
	}
	if len(s) > 64 {
		s = s[:64]
	}
	return s
}

// peerState is what is remembered of one peer. Guarded by the Reviewer's
// lock, except slots (a semaphore waited on without it).
type peerState struct {
	addr     string
	failures int       // refusals in a row
	until    time.Time // attempts needing a review are refused until then
	last     time.Time // last seen
	users    int       // callers and reviews holding the entry: not forgotten
	waiting  int       // callers waiting for a slot
	slots    chan struct{}
	overflow bool // the entry shared by peers past MaxPeers
}

// peers bounds what peers can hold. Not safe for concurrent use.
type peers struct {
	cfg      *Config
	m        map[string]*peerState
	overflow *peerState
}

func newPeers(cfg *Config) *peers {
	return &peers{cfg: cfg, m: map[string]*peerState{},
		overflow: &peerState{addr: "(overflow)", overflow: true, slots: make(chan struct{}, cfg.MaxConcurrentPerPeer)}}
}

// get returns addr's entry, making one. Past MaxPeers, after forgetting
// idle peers, a new peer shares the overflow entry: it is never backed off
// (that would lock out every new peer at once) but its concurrency is
// bounded like any peer's, so addresses beyond the bound cannot add load.
func (p *peers) get(addr string, now time.Time) *peerState {
	if s, ok := p.m[addr]; ok {
		s.last = now
		return s
	}
	if len(p.m) >= p.cfg.MaxPeers {
		p.forgetIdle(now)
	}
	if len(p.m) >= p.cfg.MaxPeers {
		return p.overflow
	}
	s := &peerState{addr: addr, last: now, slots: make(chan struct{}, p.cfg.MaxConcurrentPerPeer)}
	p.m[addr] = s
	return s
}

// forgetIdle drops peers nobody holds, not backed off, and quiet for
// BackoffMax (so a peer cannot shed its failures by pausing briefly).
func (p *peers) forgetIdle(now time.Time) {
	for a, s := range p.m {
		if s.users == 0 && !now.Before(s.until) && now.Sub(s.last) >= p.cfg.BackoffMax {
			delete(p.m, a)
		}
	}
}

// backedOff reports whether s's attempts needing a review are refused now.
func (s *peerState) backedOff(now time.Time) bool { return now.Before(s.until) }

// failed records a refusal: past FailuresBeforeBackoff in a row the peer
// is backed off, for twice as long with each further one.
func (p *peers) failed(s *peerState, now time.Time) {
	if s.overflow {
		return
	}
	s.failures++
	if n := s.failures - p.cfg.FailuresBeforeBackoff; n >= 0 {
		d := p.cfg.BackoffMax
		if n < 30 {
			d = min(p.cfg.BackoffBase<<n, p.cfg.BackoffMax)
		}
		s.until = now.Add(d)
	}
}

// succeeded clears the peer's failures after a token it presented was
// reviewed and accepted (a cached acceptance does not: an attacker holding
// one valid token could otherwise reset its back-off for free).
func (p *peers) succeeded(s *peerState) {
	s.failures, s.until = 0, time.Time{}
}
