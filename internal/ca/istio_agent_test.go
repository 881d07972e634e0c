package ca

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"testing"
	"time"

	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/types/known/structpb"
	securityv1alpha1 "istio.io/api/security/v1alpha1"
	"k8s.io/client-go/kubernetes"

	"github.com/horizonmesh/horizon/internal/model"
	"github.com/horizonmesh/horizon/internal/testing/testkit"
)

// istioAgentCSR is a CSR shaped as Istio's pilot-agent makes it (observed
// from the real agent, see internal/integration/istio_agent_test.go): a
// subject with one empty Organization, and the SPIFFE id as the only name,
// in a subjectAltName extension marked critical.
func istioAgentCSR(t *testing.T, key crypto.Signer, spiffeID string) string {
	t.Helper()
	san, err := asn1.Marshal([]asn1.RawValue{{Class: asn1.ClassContextSpecific, Tag: 6, Bytes: []byte(spiffeID)}})
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject:         pkix.Name{Organization: []string{""}},
		ExtraExtensions: []pkix.Extension{{Id: asn1.ObjectIdentifier{2, 5, 29, 17}, Critical: true, Value: san}},
	}, key)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}))
}

// TestIstioAgentRequestIsSigned: the request exactly as pilot-agent sends
// it over gRPC — metadata key "ClusterID" (mixed case; gRPC lowercases it),
// "authorization: Bearer <token>", a 24 h validity, the request's
// CertSigner metadata (empty) — with each key the agent can be configured
// for (RSA 2048 by default, ECDSA P-256 or P-384 with
// ECC_SIGNATURE_ALGORITHM) is signed for the token's identity, and the
// chain is what the agent accepts: more than one certificate, the root last.
// With a self-signed root (no cacerts) too, where the chain is the leaf and
// the root only.
func TestIstioAgentRequestIsSigned(t *testing.T) {
	plugin := testCA(t)
	self, err := SelfSigned("cluster.local")
	if err != nil {
		t.Fatal(err)
	}
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	p256, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	const id = "spiffe://cluster.local/ns/sample/sa/sleep"

	for _, authority := range []struct {
		name string
		a    *Authority
	}{{"cacerts", plugin}, {"self-signed", self}} {
		client := serveCSR(t, authority.a)
		for _, k := range []struct {
			name string
			key  crypto.Signer
		}{{"RSA 2048 (default)", rsaKey}, {"ECDSA P-256", p256}, {"ECDSA P-384", p384}} {
			t.Run(authority.name+"/"+k.name, func(t *testing.T) {
				ctx := metadata.NewOutgoingContext(context.Background(), metadata.Pairs("ClusterID", "cluster1"))
				ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer good")
				resp, err := client.CreateCertificate(ctx, &securityv1alpha1.IstioCertificateRequest{
					Csr:              istioAgentCSR(t, k.key, id),
					ValidityDuration: int64((24 * time.Hour).Seconds()),
					Metadata: &structpb.Struct{Fields: map[string]*structpb.Value{
						"CertSigner": structpb.NewStringValue("")}},
				})
				if err != nil {
					t.Fatalf("pilot-agent's request refused: %v", err)
				}
				if len(resp.CertChain) <= 1 {
					t.Fatalf("chain of %d certificates: pilot-agent refuses a chain of one", len(resp.CertChain))
				}
				chain := make([]*x509.Certificate, len(resp.CertChain))
				for i, p := range resp.CertChain {
					block, _ := pem.Decode([]byte(p))
					if block == nil {
						t.Fatalf("chain[%d] is not PEM", i)
					}
					if chain[i], err = x509.ParseCertificate(block.Bytes); err != nil {
						t.Fatal(err)
					}
				}
				leaf := chain[0]
				if len(leaf.URIs) != 1 || leaf.URIs[0].String() != id {
					t.Errorf("URI SANs %v, want %s", leaf.URIs, id)
				}
				if !k.key.Public().(interface{ Equal(crypto.PublicKey) bool }).Equal(leaf.PublicKey) {
					t.Error("the certificate is not for the CSR's key")
				}
				if d := leaf.NotAfter.Sub(leaf.NotBefore); d < 24*time.Hour || d > 24*time.Hour+2*time.Minute {
					t.Errorf("lifetime %s, asked for 24h", d)
				}
				root := chain[len(chain)-1]
				if !root.IsCA || root.CheckSignatureFrom(root) != nil {
					t.Errorf("the chain's last certificate (%s) is not the self-signed root", root.Subject)
				}
				inter := x509.NewCertPool()
				for _, c := range chain[1 : len(chain)-1] {
					inter.AddCert(c)
				}
				if _, err := leaf.Verify(x509.VerifyOptions{Roots: authority.a.Roots(), Intermediates: inter,
					KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth}}); err != nil {
					t.Errorf("does not verify to the roots: %v", err)
				}
			})
		}
	}
}

// cluster1Service is a's CSR service for cluster1 alone, whose tokens
// cluster reviews (audience istio-ca).
func cluster1Service(a *Authority, cluster kubernetes.Interface) *Service {
	return &Service{CA: a, TrustDomain: "cluster.local", DefaultTTL: time.Hour, MaxTTL: 48 * time.Hour,
		Log: testkit.Logger(),
		Auth: &TokenReviewer{Audiences: []string{"istio-ca"}, Clients: func(id model.ClusterID) kubernetes.Interface {
			if id == "cluster1" {
				return cluster
			}
			return nil
		}}}
}

// serveCSR serves a over real gRPC (no TLS) for cluster1, where token
// "good" is sample/sleep with audience istio-ca.
func serveCSR(t *testing.T, a *Authority) securityv1alpha1.IstioCertificateServiceClient {
	t.Helper()
	return serveCSRService(t, cluster1Service(a, reviewingCluster("system:serviceaccount:sample:sleep")))
}

// TestCallerNamingNoClusterIsReviewedByTheLocalCluster: pilot-agent without
// ISTIO_META_CLUSTER_ID sends an empty ClusterID; istiod then reviews the
// token with its own cluster, and so does Horizon when LocalCluster is set.
// The token is still reviewed: one the local cluster did not issue, or not
// for istio-ca, is refused; a cluster named explicitly is never replaced.
func TestCallerNamingNoClusterIsReviewedByTheLocalCluster(t *testing.T) {
	a := testCA(t)
	svc := cluster1Service(a, reviewingCluster("system:serviceaccount:sample:sleep"))
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	csr := istioAgentCSR(t, key, "spiffe://cluster.local/ns/sample/sa/sleep")
	call := func(md metadata.MD) error {
		_, err := svc.CreateCertificate(metadata.NewIncomingContext(context.Background(), md),
			&securityv1alpha1.IstioCertificateRequest{Csr: csr})
		return err
	}
	for _, tt := range []struct {
		name   string
		local  model.ClusterID
		md     metadata.MD
		signed bool
	}{
		{"empty ClusterID, local cluster set", "cluster1", metadata.Pairs("authorization", "Bearer good", "clusterid", ""), true},
		{"no ClusterID, local cluster set", "cluster1", metadata.Pairs("authorization", "Bearer good"), true},
		{"no ClusterID, token the local cluster refuses", "cluster1", metadata.Pairs("authorization", "Bearer other"), false},
		{"no ClusterID, token not for istio-ca", "cluster1", metadata.Pairs("authorization", "Bearer kube-audience"), false},
		{"an unknown cluster named", "cluster1", metadata.Pairs("authorization", "Bearer good", "clusterid", "cluster7"), false},
		{"no ClusterID, no local cluster", "", metadata.Pairs("authorization", "Bearer good"), false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			svc.LocalCluster = tt.local
			if err := call(tt.md); (err == nil) != tt.signed {
				t.Errorf("err = %v, want signed %v", err, tt.signed)
			}
		})
	}
}
