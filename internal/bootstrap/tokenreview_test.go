package bootstrap

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/peer"
	authenticationv1 "k8s.io/api/authentication/v1"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"

	"github.com/horizonmesh/horizon/internal/authn"
	"github.com/horizonmesh/horizon/internal/source/kube"
	"github.com/horizonmesh/horizon/internal/testing/testkit"
)

// tokenReviewAPI is an API server answering TokenReviews: tokens starting
// with "legit" are sample/sleep for istio-ca, others unauthenticated. It
// counts the other ones and signals each on junk.
func tokenReviewAPI(t testing.TB) (url string, junkReviews *atomic.Int64, junk chan struct{}) {
	junkReviews = &atomic.Int64{}
	junk = make(chan struct{}, 1000)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || r.URL.Path != "/apis/authentication.k8s.io/v1/tokenreviews" {
			http.NotFound(w, r)
			return
		}
		// client-go may send protobuf or JSON: decode either.
		body, _ := io.ReadAll(r.Body)
		obj, _, err := scheme.Codecs.UniversalDeserializer().Decode(body, nil, nil)
		in, ok := obj.(*authenticationv1.TokenReview)
		if err != nil || !ok {
			http.Error(w, fmt.Sprintf("not a TokenReview: %v", err), http.StatusBadRequest)
			return
		}
		tr := *in
		tr.APIVersion, tr.Kind = "authentication.k8s.io/v1", "TokenReview"
		if strings.HasPrefix(tr.Spec.Token, "legit") {
			tr.Status = authenticationv1.TokenReviewStatus{Authenticated: true, Audiences: []string{"istio-ca"},
				User: authenticationv1.UserInfo{Username: "system:serviceaccount:sample:sleep"}}
		} else {
			tr.Status = authenticationv1.TokenReviewStatus{Error: "invalid bearer token"}
			junkReviews.Add(1)
			select {
			case junk <- struct{}{}:
			default:
			}
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(&tr)
	}))
	t.Cleanup(srv.Close)
	return srv.URL, junkReviews, junk
}

func fromAddr(ip string) context.Context {
	return peer.NewContext(context.Background(), &peer.Peer{Addr: &net.TCPAddr{IP: net.ParseIP(ip), Port: 41000}})
}

// newTokenReviewerFor is discovery's reviewer wiring against a real
// client-go client made by kube.Clients.NewClient, as Run makes
// the clusters' clients.
func newTokenReviewerFor(t testing.TB, c Config, url string) *authn.Reviewer {
	clients := kube.NewClients()
	clients.ReviewQPS, clients.ReviewBurst = c.TokenReview.QPS, c.TokenReview.Burst
	client, err := clients.NewClient(&rest.Config{Host: url})
	if err != nil {
		t.Fatal(err)
	}
	clients.Set("cluster1", client)
	return newTokenReviewer(c, clients, prometheus.NewRegistry(), testkit.Logger())
}

// Issue 17 item 5: with 60 parallel junk-token authentications, every
// legitimate token was refused ("client rate limiter Wait": all reviews
// shared the informers' client at client-go's 5/s). Now a legitimate token
// from another peer is reviewed promptly during the flood, and the junk
// peer costs the API server a bounded number of reviews.
func TestTokenReviewFloodDoesNotStarveLegitimateTokens(t *testing.T) {
	url, junkReviews, junk := tokenReviewAPI(t)
	c := DefaultConfig()
	r := newTokenReviewerFor(t, c, url)
	var wg sync.WaitGroup
	for i := range 60 {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(fromAddr("10.0.0.1"), 30*time.Second)
			defer cancel()
			if _, err := r.Authenticate(ctx, "cluster1", fmt.Sprintf("junk-%d", i)); err == nil {
				t.Errorf("junk token %d accepted", i)
			}
		})
	}
	select { // the flood is under way
	case <-junk:
	case <-time.After(30 * time.Second):
		t.Fatal("no junk TokenReview reached the API server")
	}
	start := time.Now()
	ctx, cancel := context.WithTimeout(fromAddr("10.0.0.2"), 30*time.Second)
	defer cancel()
	id, err := r.Authenticate(ctx, "cluster1", "legit-token")
	if err != nil || id.ServiceAccount != "sleep" {
		t.Fatalf("legitimate token during the flood: %+v, %v", id, err)
	}
	// Before: ~10 s behind 60 junk reviews at 5/s (burst 10).
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("legitimate token took %s during the flood", d)
	}
	wg.Wait()
	tr := c.TokenReview
	if n := junkReviews.Load(); n > int64(tr.FailuresBeforeBackoff-1+tr.MaxConcurrentPerPeer) {
		t.Errorf("%d junk TokenReviews reached the API server, want at most %d", n, tr.FailuresBeforeBackoff-1+tr.MaxConcurrentPerPeer)
	}
}

// BenchmarkTokenReview: a review through client-go and HTTP (an API server
// answering at once, limits raised so the rate limiter does not count)
// against an answer from the cache.
func BenchmarkTokenReview(b *testing.B) {
	url, _, _ := tokenReviewAPI(b)
	c := DefaultConfig()
	c.TokenReview.QPS, c.TokenReview.Burst = 1e6, 1e6
	ctx := fromAddr("10.0.0.2")
	b.Run("uncached", func(b *testing.B) {
		r := newTokenReviewerFor(b, c, url)
		i := 0
		for b.Loop() {
			i++
			if _, err := r.Authenticate(ctx, "cluster1", fmt.Sprint("legit-", i)); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("cached", func(b *testing.B) {
		r := newTokenReviewerFor(b, c, url)
		for b.Loop() {
			if _, err := r.Authenticate(ctx, "cluster1", "legit-cached"); err != nil {
				b.Fatal(err)
			}
		}
	})
}
