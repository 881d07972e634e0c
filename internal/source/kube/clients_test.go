package kube

import (
	"testing"

	"k8s.io/client-go/rest"
)

// TokenReviews get a client of their own with the review limits; the
// cluster's client (informers) keeps client-go's, so neither waits behind
// the other in a rate limiter.
func TestNewClientHasItsOwnReviewClient(t *testing.T) {
	c := NewClients()
	c.ReviewQPS, c.ReviewBurst = 100, 200
	client, err := c.NewClient(&rest.Config{Host: "https://127.0.0.1:1"})
	if err != nil {
		t.Fatal(err)
	}
	c.Set("c1", client)
	review := c.Review("c1")
	if review == nil || review == c.Get("c1") {
		t.Fatal("no separate review client")
	}
	if q := review.AuthenticationV1().RESTClient().GetRateLimiter().QPS(); q != 100 {
		t.Errorf("review client QPS %v, want 100", q)
	}
	if q := c.Get("c1").CoreV1().RESTClient().GetRateLimiter().QPS(); q != rest.DefaultQPS {
		t.Errorf("informer client QPS %v, want client-go's %v", q, rest.DefaultQPS)
	}
	if c.Review("unknown") != nil {
		t.Error("a review client for an unknown cluster")
	}
	// Without review limits, reviews share the cluster's client.
	plain := NewClients()
	pc, _ := plain.NewClient(&rest.Config{Host: "https://127.0.0.1:1"})
	plain.Set("c1", pc)
	if plain.Review("c1") != plain.Get("c1") {
		t.Error("review limits unset: want the cluster's client")
	}
}
