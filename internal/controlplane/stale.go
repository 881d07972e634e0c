// Stale clusters: a cluster whose API server stopped answering keeps
// serving its last state (fail static); with StaleEndpointTTL a remote one
// is left out of the mesh once that state is older than the TTL, and comes
// back when its API server answers again.

package controlplane

import (
	"time"

	"github.com/horizonmesh/horizon/internal/source"
)

// unreachableSince is when c's API server stopped answering, zero while it
// answers or when its source has none (manifests).
func unreachableSince(c *clusterState) time.Time {
	if r, ok := c.src.(source.Reachability); ok {
		return r.UnreachableSince()
	}
	return time.Time{}
}

// staleFor is how long c's state has gone without its API server: 0 while
// it answers.
func staleFor(c *clusterState, now time.Time) time.Duration {
	since := unreachableSince(c)
	if since.IsZero() {
		return 0
	}
	return max(now.Sub(since), 0)
}

// shouldWithdraw reports whether c is to be left out of the mesh at now:
// a remote cluster stale for StaleEndpointTTL or longer. The local cluster
// never is: its state is also the proxies' own, and nothing else has it.
func (cp *ControlPlane) shouldWithdraw(c *clusterState, now time.Time) bool {
	ttl := cp.opts.StaleEndpointTTL
	if ttl <= 0 || c.local {
		return false
	}
	since := unreachableSince(c)
	return !since.IsZero() && now.Sub(since) >= ttl
}

// withdrawStale decides whether the push leaves c out, logging each change
// once: a withdrawal needs a whole TTL without contact, so a flapping API
// server logs at most twice per TTL (the TTL is at least a second). Call
// with cp.mu held.
func (cp *ControlPlane) withdrawStale(c *clusterState, now time.Time) bool {
	w := cp.shouldWithdraw(c, now)
	if w == c.withdrawn {
		return w
	}
	c.withdrawn = w
	if w {
		cp.log.Warn("remote cluster stale past --stale-endpoint-ttl; its endpoints are withdrawn until its API server answers",
			"cluster", c.id, "unreachable_since", unreachableSince(c).UTC().Format(time.RFC3339), "ttl", cp.opts.StaleEndpointTTL)
	} else {
		cp.log.Info("remote cluster back: its endpoints serve again", "cluster", c.id)
	}
	return w
}

// staleDue reports whether a cluster's withdrawal would change if pushed
// now: it reached the TTL, or its API server answered again.
func (cp *ControlPlane) staleDue() bool {
	now := cp.opts.Now()
	cp.mu.Lock()
	defer cp.mu.Unlock()
	for _, c := range cp.clusters {
		if cp.shouldWithdraw(c, now) != c.withdrawn {
			return true
		}
	}
	return false
}
