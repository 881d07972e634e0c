package ca

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"net"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	securityv1alpha1 "istio.io/api/security/v1alpha1"
	authenticationv1 "k8s.io/api/authentication/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/horizonmesh/horizon/internal/model"
	"github.com/horizonmesh/horizon/internal/testing/testkit"
)

// reviewingCluster answers TokenReviews: token "good-<aud>" is the sleep
// service account with that audience; anything else is unauthenticated.
func reviewingCluster(username string) kubernetes.Interface {
	c := fake.NewClientset()
	c.PrependReactor("create", "tokenreviews", func(a k8stesting.Action) (bool, runtime.Object, error) {
		tr := a.(k8stesting.CreateAction).GetObject().(*authenticationv1.TokenReview).DeepCopy()
		switch tr.Spec.Token {
		case "good":
			tr.Status = authenticationv1.TokenReviewStatus{Authenticated: true, Audiences: []string{"istio-ca"},
				User: authenticationv1.UserInfo{Username: username}}
		case "kube-audience":
			tr.Status = authenticationv1.TokenReviewStatus{Authenticated: true, Audiences: []string{"https://kubernetes.default.svc"},
				User: authenticationv1.UserInfo{Username: username}}
		default:
			tr.Status = authenticationv1.TokenReviewStatus{Error: "invalid bearer token"}
		}
		return true, tr, nil
	})
	return c
}

// serveCSRService serves svc over real gRPC (no TLS) on a loopback port
// until t ends and returns a client of it.
func serveCSRService(t *testing.T, svc *Service) securityv1alpha1.IstioCertificateServiceClient {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer()
	securityv1alpha1.RegisterIstioCertificateServiceServer(g, svc)
	go func() { _ = g.Serve(lis) }()
	t.Cleanup(g.Stop)
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return securityv1alpha1.NewIstioCertificateServiceClient(conn)
}

func TestCSRService(t *testing.T) {
	a := testCA(t)
	clusters := map[model.ClusterID]kubernetes.Interface{
		"cluster1": reviewingCluster("system:serviceaccount:sample:sleep"),
		"cluster9": reviewingCluster("alice"),
	}
	svc := &Service{CA: a, TrustDomain: "cluster.local", DefaultTTL: 24 * time.Hour, MaxTTL: 48 * time.Hour,
		Log:  testkit.Logger(),
		Auth: &TokenReviewer{Audiences: []string{"istio-ca"}, Clients: func(id model.ClusterID) kubernetes.Interface { return clusters[id] }}}
	client := serveCSRService(t, svc)
	csr, _ := csrFor(t, "evil.example.com", "spiffe://x")

	call := func(token, cluster string, validity int64) (*securityv1alpha1.IstioCertificateResponse, error) {
		md := metadata.MD{}
		if token != "" {
			md.Set("authorization", "Bearer "+token)
		}
		if cluster != "" {
			md.Set(ClusterIDHeader, cluster)
		}
		ctx := metadata.NewOutgoingContext(context.Background(), md)
		return client.CreateCertificate(ctx, &securityv1alpha1.IstioCertificateRequest{Csr: string(csr), ValidityDuration: validity})
	}

	resp, err := call("good", "cluster1", 0)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode([]byte(resp.CertChain[0]))
	leaf, _ := x509.ParseCertificate(block.Bytes)
	if leaf.URIs[0].String() != "spiffe://cluster.local/ns/sample/sa/sleep" || len(resp.CertChain) != 3 {
		t.Errorf("identity %v, chain of %d", leaf.URIs, len(resp.CertChain))
	}
	resp, err = call("good", "cluster1", int64((100 * time.Hour).Seconds()))
	if err != nil {
		t.Fatal(err)
	}
	block, _ = pem.Decode([]byte(resp.CertChain[0]))
	leaf, _ = x509.ParseCertificate(block.Bytes)
	if d := leaf.NotAfter.Sub(leaf.NotBefore); d > 48*time.Hour+2*time.Minute {
		t.Errorf("requested 100h, got %s: the maximum is 48h", d)
	}

	for _, tt := range []struct {
		name, token, cluster string
		code                 codes.Code
	}{
		{"no token", "", "cluster1", codes.Unauthenticated},
		{"no cluster", "good", "", codes.Unauthenticated},
		{"unknown cluster", "good", "cluster2", codes.Unauthenticated},
		{"token of another cluster", "other-clusters-token", "cluster1", codes.Unauthenticated},
		{"wrong audience", "kube-audience", "cluster1", codes.Unauthenticated},
		{"not a service account", "good", "cluster9", codes.Unauthenticated},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := call(tt.token, tt.cluster, 0); status.Code(err) != tt.code {
				t.Errorf("got %v, want %v", err, tt.code)
			}
		})
	}
}
