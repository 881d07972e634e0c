package controlplane

import (
	"sort"
	"time"
)

// ClusterStatus is what /debug/clusters shows of a cluster.
type ClusterStatus struct {
	ID     string    `json:"id"`
	Source string    `json:"source"`
	Local  bool      `json:"local"`
	Synced bool      `json:"synced"`
	Since  time.Time `json:"since,omitzero"` // when its current source was set

	LastEvent           time.Time `json:"lastEvent,omitzero"`
	LastEventAgeSeconds float64   `json:"lastEventAgeSeconds,omitempty"`
	Error               string    `json:"error,omitempty"`

	// Staleness: a cluster whose API server does not answer keeps
	// serving the state it last had (fail static). UnreachableSince is
	// when it stopped answering (zero: it answers) and StaleSeconds how
	// old that state is (0 while it answers); Withdrawn says the last
	// push left the cluster out, stale past --stale-endpoint-ttl.
	UnreachableSince time.Time `json:"unreachableSince,omitzero"`
	StaleSeconds     float64   `json:"staleSeconds"`
	Withdrawn        bool      `json:"withdrawn,omitempty"`
}

// Clusters lists every cluster, joined or failed, sorted by ID.
func (cp *ControlPlane) Clusters() []ClusterStatus {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	now := cp.opts.Now()
	var out []ClusterStatus
	for _, c := range cp.clusters {
		s := ClusterStatus{ID: string(c.id), Source: c.origin, Local: c.local, Synced: c.src.Synced(), Error: c.err, Since: c.updated,
			LastEvent: c.src.LastEvent(), UnreachableSince: unreachableSince(c), StaleSeconds: staleFor(c, now).Seconds(),
			Withdrawn: c.withdrawn}
		if !s.LastEvent.IsZero() {
			s.LastEventAgeSeconds = now.Sub(s.LastEvent).Seconds()
		}
		out = append(out, s)
	}
	for _, f := range cp.failed {
		out = append(out, *f)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// MeshNetworksError is the last rejected meshNetworks change ("" if the
// current config is the latest).
func (cp *ControlPlane) MeshNetworksError() string {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	return cp.netsErr
}
