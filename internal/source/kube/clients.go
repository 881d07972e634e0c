package kube

import (
	"sync"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/horizonmesh/horizon/internal/model"
)

// Clients maps cluster IDs to API clients of the clusters Horizon watches,
// so that a caller's credentials can be checked against its own cluster
// (the CA's TokenReviews). Safe for concurrent use; the zero value is not.
type Clients struct {
	// ReviewQPS and ReviewBurst rate-limit the TokenReview client that
	// NewClient makes beside each cluster's client (authn.Config's QPS and
	// Burst). 0: no separate client, reviews share the cluster's. Set
	// before NewClient is first called.
	ReviewQPS   float32
	ReviewBurst int

	mu sync.RWMutex
	m  map[model.ClusterID]kubernetes.Interface
}

// NewClients returns an empty registry.
func NewClients() *Clients { return &Clients{m: map[model.ClusterID]kubernetes.Interface{}} }

// withReview is a cluster's client carrying a second client for
// TokenReviews only. Reviews then never wait behind the informers' lists
// and watches in client-go's rate limiter (5 requests/s by default), and a
// flood of reviews never delays the informers.
type withReview struct {
	kubernetes.Interface
	review kubernetes.Interface
}

// NewClient makes a cluster's client from cfg (kubernetes.NewForConfig)
// and, when ReviewQPS is set, a TokenReview client from a copy of cfg with
// the review rate limits; Review returns it once the client is Set. Its
// signature is remote.Options.NewClient's.
func (c *Clients) NewClient(cfg *rest.Config) (kubernetes.Interface, error) {
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil || c.ReviewQPS <= 0 {
		return client, err
	}
	rc := rest.CopyConfig(cfg)
	rc.QPS, rc.Burst, rc.RateLimiter = c.ReviewQPS, c.ReviewBurst, nil
	review, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return nil, err
	}
	return &withReview{Interface: client, review: review}, nil
}

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

// Review returns the client for a cluster's TokenReviews: its own when
// NewClient made one, else the cluster's client; nil if the cluster is
// unknown.
func (c *Clients) Review(id model.ClusterID) kubernetes.Interface {
	client := c.Get(id)
	if w, ok := client.(*withReview); ok {
		return w.review
	}
	return client
}
