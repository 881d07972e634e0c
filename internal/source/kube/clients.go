package kube

import (
	"sync"

	"k8s.io/client-go/kubernetes"

	"github.com/horizonmesh/horizon/internal/model"
)

// Clients maps cluster IDs to API clients of the clusters Horizon watches,
// so that a caller's credentials can be checked against its own cluster
// (the CA's TokenReviews). Safe for concurrent use; the zero value is not.
type Clients struct {
	mu sync.RWMutex
	m  map[model.ClusterID]kubernetes.Interface
}

// NewClients returns an empty registry.
func NewClients() *Clients { return &Clients{m: map[model.ClusterID]kubernetes.Interface{}} }

// Set records (or replaces) a cluster's client.
func (c *Clients) Set(id model.ClusterID, client kubernetes.Interface) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.m[id] = client
}

// Delete forgets a cluster.
func (c *Clients) Delete(id model.ClusterID) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.m, id)
}

// Get returns a cluster's client, or nil if the cluster is unknown.
func (c *Clients) Get(id model.ClusterID) kubernetes.Interface {
	if c == nil {
		return nil
	}
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.m[id]
}
