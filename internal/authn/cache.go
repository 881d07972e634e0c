package authn

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"strings"
	"time"

	"github.com/horizonmesh/horizon/internal/model"
)

// key names a token as reviewed by one cluster. Only its hash is kept, so
// the cache holds no credential and its keys have a fixed size.
type key struct {
	cluster model.ClusterID
	sum     [sha256.Size]byte
}

func newKey(cluster model.ClusterID, token string) key {
	return key{cluster: cluster, sum: sha256.Sum256([]byte(token))}
}

type entry struct {
	id      Identity
	err     error // a refusal; nil: accepted
	expires time.Time
}

// cache holds review results. Accepted and refused results are bounded
// apart: junk tokens, each refused once, can only push out other refusals,
// never a legitimate proxy's accepted token. Not safe for concurrent use
// (the Reviewer's lock guards it).
type cache struct {
	max       int
	accepted  map[key]entry
	refused   map[key]entry
	lastSweep time.Time
}

func newCache(max int) *cache {
	return &cache{max: max, accepted: map[key]entry{}, refused: map[key]entry{}}
}

// get returns k's unexpired result.
func (c *cache) get(k key, now time.Time) (entry, bool) {
	for _, m := range []map[key]entry{c.accepted, c.refused} {
		if e, ok := m[k]; ok {
			if now.Before(e.expires) {
				return e, true
			}
			delete(m, k)
		}
	}
	return entry{}, false
}

// put stores e (nothing when it has already expired). When its map is
// full, expired entries go first (at most one sweep per second: a sweep
// walks the map), then an arbitrary one.
func (c *cache) put(k key, e entry, now time.Time) {
	if !now.Before(e.expires) {
		return
	}
	m := c.accepted
	if e.err != nil {
		m = c.refused
	}
	if _, ok := m[k]; !ok && len(m) >= c.max {
		if now.Sub(c.lastSweep) >= time.Second {
			c.lastSweep = now
			for _, mm := range []map[key]entry{c.accepted, c.refused} {
				for kk, ee := range mm {
					if !now.Before(ee.expires) {
						delete(mm, kk)
					}
				}
			}
		}
		for kk := range m { // Go's map order: an arbitrary victim
			if len(m) < c.max {
				break
			}
			delete(m, kk)
		}
	}
	m[k] = e
}

// tokenExpiry reads a JWT's exp claim without verifying anything: it is
// only used to trust an already accepted token for less time, never more.
func tokenExpiry(token string) (time.Time, bool) {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return time.Time{}, false
	}
	payload, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(parts[1], "="))
	if err != nil {
		return time.Time{}, false
	}
	var claims struct {
		Exp *json.Number `json:"exp"`
	}
	if json.Unmarshal(payload, &claims) != nil || claims.Exp == nil {
		return time.Time{}, false
	}
	f, err := claims.Exp.Float64()
	if err != nil || f <= 0 || f > 1<<40 {
		return time.Time{}, false
	}
	return time.Unix(int64(f), 0), true
}
