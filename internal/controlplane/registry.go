// The mesh sources report clusters, meshNetworks, Istio Gateways and
// PeerAuthentications here.

package controlplane

import (
	"time"

	"github.com/horizonmesh/horizon/internal/model"
	"github.com/horizonmesh/horizon/internal/source"
)

// clusterState is one cluster as a source reported it.
type clusterState struct {
	id       model.ClusterID
	origin   string
	local    bool
	src      source.ClusterSource
	added    time.Time // first SetCluster of this ID
	updated  time.Time // latest SetCluster (a rotation swaps the store)
	err      string
	problems string // the conversion errors last logged, to log each set once
	snap     *model.ClusterSnapshot
	dirty    bool
	// withdrawn: left out of the mesh by the last push, its API server
	// unreachable for longer than StaleEndpointTTL (see stale.go).
	withdrawn bool
}

// SetIstioGateways applies the config cluster's valid Gateways.
func (cp *ControlPlane) SetIstioGateways(gws []*model.IstioGateway) {
	cp.mu.Lock()
	cp.gateways = gws
	cp.mu.Unlock()
	cp.changed()
}

// IstioGatewayError reports an invalid Gateway (left out).
func (cp *ControlPlane) IstioGatewayError(object, msg string) {
	cp.log.Error("Gateway ignored", "gateway", object, "error", msg)
}

// SetDestinationRules applies the config cluster's valid DestinationRules.
func (cp *ControlPlane) SetDestinationRules(rules []*model.DestinationRule) {
	cp.mu.Lock()
	cp.rules = rules
	cp.mu.Unlock()
	cp.changed()
}

// DestinationRuleError reports an invalid DestinationRule (left out).
func (cp *ControlPlane) DestinationRuleError(object, msg string) {
	cp.log.Error("DestinationRule ignored", "destinationRule", object, "error", msg)
}

// SetPeerAuthentications applies the config cluster's valid
// PeerAuthentications. A set that resolves every workload as before (an
// informer resync, a status update) changes nothing and pushes nothing.
func (cp *ControlPlane) SetPeerAuthentications(ps []*model.PeerAuthentication) {
	cp.mu.Lock()
	next := &model.PeerAuthentications{RootNamespace: cp.opts.RootNamespace, Default: cp.opts.DefaultMTLSMode, Policies: ps}
	same := next.Equal(cp.peerAuth)
	if !same {
		cp.peerAuth = next
	}
	cp.mu.Unlock()
	if !same {
		cp.changed()
	}
}

// PeerAuthenticationError reports an invalid PeerAuthentication (left out:
// the workloads it would select resolve as if it did not exist).
func (cp *ControlPlane) PeerAuthenticationError(object, msg string) {
	cp.log.Error("PeerAuthentication ignored", "peerauthentication", object, "error", msg)
}

// SetCluster adds or replaces a cluster. Replacing is how a kubeconfig
// rotation is made before it breaks: the source calls SetCluster with the
// new, synced store and only then stops the old watcher.
func (cp *ControlPlane) SetCluster(c source.Cluster) {
	id := c.ID
	cp.mu.Lock()
	added, withdrawn := time.Now(), false
	if old, ok := cp.clusters[id]; ok {
		// A withdrawn cluster's new source (a rotated kubeconfig) brings
		// it back at the next push, which says so once.
		added, withdrawn = old.added, old.withdrawn
	}
	cp.clusters[id] = &clusterState{id: id, origin: c.Origin, local: c.Local, src: c.Source,
		added: added, updated: time.Now(), dirty: true, withdrawn: withdrawn}
	delete(cp.failed, id)
	cp.mu.Unlock()
	cp.log.Info("cluster set", "cluster", id, "source", c.Origin)
	cp.changed()
}

// RemoveCluster withdraws a cluster and its endpoints.
func (cp *ControlPlane) RemoveCluster(id model.ClusterID) {
	cp.mu.Lock()
	_, ok := cp.clusters[id]
	delete(cp.clusters, id)
	delete(cp.failed, id)
	cp.mu.Unlock()
	if ok {
		cp.log.Info("cluster removed", "cluster", id)
		cp.metrics.clusterSynced.DeleteLabelValues(string(id))
		cp.changed()
	}
}

// ClusterChanged marks a cluster's store as changed.
func (cp *ControlPlane) ClusterChanged(id model.ClusterID) {
	cp.mu.Lock()
	if c, ok := cp.clusters[id]; ok {
		c.dirty = true
	}
	cp.mu.Unlock()
	cp.changed()
}

// ClusterError records why a cluster is unhealthy or could not join; an
// empty msg clears it. A cluster that never joined shows in Clusters with
// its error.
func (cp *ControlPlane) ClusterError(id model.ClusterID, origin, msg string) {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	if c, ok := cp.clusters[id]; ok {
		c.err = msg
	} else if msg != "" {
		cp.failed[id] = &ClusterStatus{ID: string(id), Source: origin, Error: msg}
	} else {
		delete(cp.failed, id)
	}
	if msg != "" {
		cp.metrics.clusterErrors.WithLabelValues(string(id)).Inc()
	}
}

// SetMeshNetworks applies a validated meshNetworks config.
func (cp *ControlPlane) SetMeshNetworks(n *model.MeshNetworks, warnings model.Diagnostics) {
	for _, w := range warnings {
		cp.log.Warn("meshNetworks", "problem", w.String())
	}
	cp.mu.Lock()
	cp.networks, cp.netsErr = n, ""
	cp.mu.Unlock()
	cp.changed()
}

// MeshNetworksRejected records an invalid meshNetworks change; the last good
// config keeps serving.
func (cp *ControlPlane) MeshNetworksRejected(err error) {
	cp.mu.Lock()
	cp.netsErr = err.Error()
	cp.mu.Unlock()
	cp.metrics.meshNetErrors.Inc()
	cp.log.Error("meshNetworks change rejected; the previous config keeps serving", "error", err)
}
