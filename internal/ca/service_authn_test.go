package ca

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	securityv1alpha1 "istio.io/api/security/v1alpha1"
	authenticationv1 "k8s.io/api/authentication/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/horizonmesh/horizon/internal/authn"
	"github.com/horizonmesh/horizon/internal/model"
	"github.com/horizonmesh/horizon/internal/testing/testkit"
)

// countingCluster answers TokenReviews ("legit" is sample/sleep, anything
// else unauthenticated) and counts them.
func countingCluster(reviews *atomic.Int64, apiErr error) kubernetes.Interface {
	c := fake.NewClientset()
	c.PrependReactor("create", "tokenreviews", func(a k8stesting.Action) (bool, runtime.Object, error) {
		reviews.Add(1)
		if apiErr != nil {
			return true, nil, apiErr
		}
		tr := a.(k8stesting.CreateAction).GetObject().(*authenticationv1.TokenReview).DeepCopy()
		if tr.Spec.Token == "legit" {
			tr.Status = authenticationv1.TokenReviewStatus{Authenticated: true, Audiences: []string{"istio-ca"},
				User: authenticationv1.UserInfo{Username: "system:serviceaccount:sample:sleep"}}
		} else {
			tr.Status = authenticationv1.TokenReviewStatus{Error: "invalid bearer token"}
		}
		return true, tr, nil
	})
	return c
}

// csrFrom is a CSR call's context: the token in its metadata, from ip.
func csrFrom(ip, token string) context.Context {
	ctx := peer.NewContext(context.Background(), &peer.Peer{Addr: &net.TCPAddr{IP: net.ParseIP(ip), Port: 50000}})
	return metadata.NewIncomingContext(ctx, metadata.Pairs("authorization", "Bearer "+token, ClusterIDHeader, "cluster1"))
}

// authnService is the CSR service as discovery wires it: an authn.Reviewer
// over a TokenReviewer.
func authnService(t *testing.T, client kubernetes.Interface, log *slog.Logger) *Service {
	a := testCA(t)
	backend := &TokenReviewer{Audiences: []string{"istio-ca"}, Clients: func(id model.ClusterID) kubernetes.Interface {
		if id == "cluster1" {
			return client
		}
		return nil
	}}
	return &Service{CA: a, TrustDomain: "cluster.local", DefaultTTL: time.Hour, MaxTTL: time.Hour, Log: log,
		Auth: authn.NewReviewer(backend, authn.Config{}, nil, log)}
}

// (e) A flood of junk CSRs from one peer costs a bounded number of
// TokenReviews, is refused (ResourceExhausted once backed off) and logged
// once; a legitimate CSR from another peer is signed.
func TestCSRFloodFromOnePeerIsBounded(t *testing.T) {
	var reviews atomic.Int64
	var logs testkit.SyncBuffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	svc := authnService(t, countingCluster(&reviews, nil), log)
	csr, _ := csrFor(t, "", "")
	req := &securityv1alpha1.IstioCertificateRequest{Csr: string(csr)}
	var wg sync.WaitGroup
	var throttled atomic.Int64
	for i := range 60 {
		wg.Go(func() {
			_, err := svc.CreateCertificate(csrFrom("10.0.0.1", fmt.Sprintf("junk-%d", i)), req)
			switch status.Code(err) {
			case codes.ResourceExhausted:
				throttled.Add(1)
			case codes.Unauthenticated:
			default:
				t.Errorf("junk CSR %d: %v", i, err)
			}
		})
	}
	resp, err := svc.CreateCertificate(csrFrom("10.0.0.2", "legit"), req)
	if err != nil || len(resp.GetCertChain()) == 0 {
		t.Fatalf("legitimate CSR: %v", err)
	}
	wg.Wait()
	d := authn.DefaultConfig()
	limit := int64(d.FailuresBeforeBackoff - 1 + d.MaxConcurrentPerPeer + 1) // + the legitimate one
	if n := reviews.Load(); n > limit {
		t.Errorf("%d TokenReviews for 60 junk CSRs and one legitimate, want at most %d", n, limit)
	}
	if n := throttled.Load(); n < 60-limit {
		t.Errorf("%d junk CSRs throttled, want at least %d", n, 60-limit)
	}
	if n := strings.Count(logs.String(), `msg="token authentication refused"`); n != 1 {
		t.Errorf("%d refusal lines for one peer's flood, want 1:\n%s", n, logs.String())
	}
}

// (e) The same token twice is one TokenReview; an API server that fails
// is not the caller's fault (not cached, no back-off).
func TestCSRTokenReviewsAreCached(t *testing.T) {
	var reviews atomic.Int64
	svc := authnService(t, countingCluster(&reviews, nil), testkit.Logger())
	csr, _ := csrFor(t, "", "")
	req := &securityv1alpha1.IstioCertificateRequest{Csr: string(csr)}
	for range 2 {
		if _, err := svc.CreateCertificate(csrFrom("10.0.0.2", "legit"), req); err != nil {
			t.Fatal(err)
		}
	}
	if n := reviews.Load(); n != 1 {
		t.Fatalf("%d TokenReviews for two CSRs with one token, want 1", n)
	}

	var failing atomic.Int64
	svc = authnService(t, countingCluster(&failing, errors.New("etcdserver: request timed out")), testkit.Logger())
	for range 10 {
		if _, err := svc.CreateCertificate(csrFrom("10.0.0.3", "legit"), req); status.Code(err) != codes.Unauthenticated {
			t.Fatalf("API server failing: %v", err)
		}
	}
	if n := failing.Load(); n != 10 {
		t.Fatalf("%d TokenReviews, want 10: a failed review is neither cached nor held against the peer", n)
	}
}

// TokenReviewer marks the token's own faults as refusals, and only those.
func TestTokenReviewerMarksRefusals(t *testing.T) {
	var n atomic.Int64
	r := &TokenReviewer{Audiences: []string{"istio-ca"}, Clients: func(id model.ClusterID) kubernetes.Interface {
		if id == "cluster1" {
			return countingCluster(&n, nil)
		}
		if id == "down" {
			return countingCluster(&n, errors.New("connection refused"))
		}
		return nil
	}}
	ctx := context.Background()
	if _, err := r.Authenticate(ctx, "cluster1", "junk"); !authn.IsRefused(err) {
		t.Errorf("junk: %v, want a refusal", err)
	}
	if _, err := r.Authenticate(ctx, "nowhere", "legit"); !authn.IsRefused(err) {
		t.Errorf("unknown cluster: %v, want a refusal", err)
	}
	if _, err := r.Authenticate(ctx, "down", "legit"); err == nil || authn.IsRefused(err) {
		t.Errorf("API server down: %v, want an error that is no refusal", err)
	}
	if c, err := r.Authenticate(ctx, "cluster1", "legit"); err != nil || c.ServiceAccount != "sleep" {
		t.Errorf("legit: %+v %v", c, err)
	}
}
