// Package source is what every cluster source — the local cluster's
// informers, remote clusters joined from Secrets, manifest files — hands
// the control plane: one interface for a cluster and one for where clusters
// are reported. It imports only the model.
package source

import (
	"time"

	"github.com/horizonmesh/horizon/internal/model"
)

// ClusterSource is one cluster as a source follows it.
type ClusterSource interface {
	// Snapshot converts the cluster's current state (objects a source
	// cannot use are left out, each with a diagnostic).
	Snapshot(id model.ClusterID) (*model.ClusterSnapshot, model.Diagnostics)
	// Synced reports whether the source has its first complete state.
	Synced() bool
	// LastEvent is when the source last saw a change (zero: none yet).
	LastEvent() time.Time
}

// Reachability is what a ClusterSource fed by an API server also reports:
// since when that API server has not answered. Its last state keeps
// serving meanwhile (fail static); the control plane shows the age and may
// withdraw a remote cluster after --stale-endpoint-ttl.
type Reachability interface {
	// UnreachableSince is when the API server stopped answering; zero
	// while it answers.
	UnreachableSince() time.Time
}

// Cluster is a cluster joining (or rejoining, with a new source: a
// kubeconfig rotation) the mesh.
type Cluster struct {
	ID     model.ClusterID
	Origin string // where it comes from, for status and logs
	Local  bool   // the control plane's own cluster
	Source ClusterSource
}

// Registry is where sources report clusters.
type Registry interface {
	// SetCluster adds or replaces a cluster; a replacement's source must
	// have synced already (make before break).
	SetCluster(Cluster)
	RemoveCluster(id model.ClusterID)
	// ClusterChanged says the cluster's source has changed.
	ClusterChanged(id model.ClusterID)
	// ClusterError records why a cluster is unhealthy or could not join;
	// an empty msg clears it.
	ClusterError(id model.ClusterID, origin, msg string)
}
