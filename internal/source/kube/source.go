package kube

import (
	"time"

	"github.com/horizonmesh/horizon/internal/model"
	"github.com/horizonmesh/horizon/internal/source"
)

// Source is a Store as a source.ClusterSource: its snapshot is Convert's,
// made incrementally (only the services a change touched are converted
// again). Use it by pointer; it is not safe for concurrent Snapshots.
type Source struct {
	Store   *Store
	Options Options
	// IsSynced and Last report the filling side's state (an informer's
	// HasSynced and LastEvent); nil: always synced, no event time.
	IsSynced func() bool
	Last     func() time.Time
	// Contact follows the filling side's API server (nil: none, as a
	// manifest's store; always reachable).
	Contact *Contact

	cache convertCache
}

var (
	_ source.ClusterSource = (*Source)(nil)
	_ source.Reachability  = (*Source)(nil)
)

// Snapshot converts the store, reusing what the previous Snapshot
// converted for every service no change has touched since.
func (s *Source) Snapshot(id model.ClusterID) (*model.ClusterSnapshot, model.Diagnostics) {
	return convertStore(id, s.Store, s.Options, &s.cache)
}

// Synced reports whether the store holds a complete state.
func (s *Source) Synced() bool { return s.IsSynced == nil || s.IsSynced() }

// LastEvent is when the store last changed, zero if unknown.
func (s *Source) LastEvent() time.Time {
	if s.Last == nil {
		return time.Time{}
	}
	return s.Last()
}

// UnreachableSince is when Contact's API server stopped answering; zero
// while it answers or without a Contact.
func (s *Source) UnreachableSince() time.Time {
	if s.Contact == nil {
		return time.Time{}
	}
	if ok, since, _ := s.Contact.State(); !ok {
		return since
	}
	return time.Time{}
}
