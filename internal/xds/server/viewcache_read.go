package server

import (
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
)

// Resources returns what view v currently holds and its version, without
// building anything; ok is false when the view does not exist (no proxy of
// it has asked yet). The map is the view's own: Update replaces it, never
// mutates it, so it stays valid and unchanged after the lock is released.
// Callers must not modify it or its resources.
func (c *ViewCache) Resources(v View) (res map[string]types.Resource, version string, ok bool) {
	c.mu.Lock()
	e, ok := c.caches[v]
	c.mu.Unlock()
	if !ok {
		return nil, "", false
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.current, e.versionInfo(), true
}
