// Package dnscache resolves gateway names with a time-to-live, so that a
// mesh rebuild does not query DNS for every name every time, yet a changed
// record is picked up within the TTL.
package dnscache

import (
	"context"
	"net/netip"
	"sync"
	"time"

	"github.com/horizonmesh/horizon/internal/model"
)

// Resolver caches another resolver's answers (and failures) for TTL. Go's
// resolver does not expose record TTLs, so one TTL applies to every name.
type Resolver struct {
	next model.Resolver
	ttl  time.Duration
	now  func() time.Time

	mu      sync.Mutex
	entries map[string]entry
}

type entry struct {
	addrs []netip.Addr
	err   error
	at    time.Time
}

// New returns a caching resolver in front of next.
func New(next model.Resolver, ttl time.Duration) *Resolver {
	return &Resolver{next: next, ttl: ttl, now: time.Now, entries: map[string]entry{}}
}

// LookupNetIP answers from the cache while fresh, else asks next.
func (r *Resolver) LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error) {
	key := network + "/" + host
	r.mu.Lock()
	e, ok := r.entries[key]
	r.mu.Unlock()
	if ok && r.now().Sub(e.at) < r.ttl {
		return e.addrs, e.err
	}
	addrs, err := r.next.LookupNetIP(ctx, network, host)
	r.mu.Lock()
	r.entries[key] = entry{addrs: addrs, err: err, at: r.now()}
	r.mu.Unlock()
	return addrs, err
}
