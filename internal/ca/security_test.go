package ca

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"net"
	"net/url"
	"slices"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
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

// secCluster is a fake API server answering TokenReviews for the tokens it
// issued (token → service-account user name and audiences), recording the
// audiences each review asked for.
type secCluster struct {
	mu     sync.Mutex
	asked  [][]string
	client *fake.Clientset
}

func newSecCluster(tokens map[string]authenticationv1.TokenReviewStatus) *secCluster {
	c := &secCluster{client: fake.NewClientset()}
	c.client.PrependReactor("create", "tokenreviews", func(a k8stesting.Action) (bool, runtime.Object, error) {
		tr := a.(k8stesting.CreateAction).GetObject().(*authenticationv1.TokenReview).DeepCopy()
		c.mu.Lock()
		c.asked = append(c.asked, tr.Spec.Audiences)
		c.mu.Unlock()
		st, ok := tokens[tr.Spec.Token]
		if !ok {
			st = authenticationv1.TokenReviewStatus{Error: "invalid bearer token"}
		}
		tr.Status = st
		return true, tr, nil
	})
	return c
}

func secServiceAccount(ns, sa string, audiences ...string) authenticationv1.TokenReviewStatus {
	return authenticationv1.TokenReviewStatus{Authenticated: true, Audiences: audiences,
		User: authenticationv1.UserInfo{Username: "system:serviceaccount:" + ns + ":" + sa}}
}

// secService serves the CSR service over real gRPC for two clusters that
// each know only their own tokens.
func secService(t *testing.T, clusters map[model.ClusterID]*secCluster) (securityv1alpha1.IstioCertificateServiceClient, *Authority) {
	t.Helper()
	a := testCA(t)
	svc := &Service{CA: a, TrustDomain: "cluster.local", DefaultTTL: time.Hour, MaxTTL: 24 * time.Hour,
		Log: testkit.Logger(),
		Auth: &TokenReviewer{Audiences: []string{"istio-ca"}, Clients: func(id model.ClusterID) kubernetes.Interface {
			if c, ok := clusters[id]; ok {
				return c.client
			}
			return nil
		}}}
	return serveCSRService(t, svc), a
}

func secCall(client securityv1alpha1.IstioCertificateServiceClient, token, cluster, csr string) (*securityv1alpha1.IstioCertificateResponse, error) {
	ctx := metadata.NewOutgoingContext(context.Background(), metadata.Pairs("authorization", "Bearer "+token, ClusterIDHeader, cluster))
	return client.CreateCertificate(ctx, &securityv1alpha1.IstioCertificateRequest{Csr: csr})
}

// greedyCSR asks for everything a CSR can ask for: other identities (another
// service account, another trust domain), several DNS names, IPs, e-mail
// addresses, a subject, and extensions making the certificate a CA.
func greedyCSR(t *testing.T) (string, *ecdsa.PrivateKey) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	bc, _ := asn1.Marshal(struct {
		IsCA bool
		Max  int
	}{true, 5})
	ku, _ := asn1.Marshal(asn1.BitString{Bytes: []byte{0x06}, BitLength: 7}) // keyCertSign, cRLSign
	tmpl := &x509.CertificateRequest{
		Subject:  pkix.Name{CommonName: "admin", Organization: []string{"system:masters"}},
		DNSNames: []string{"evil.example.com", "helloworld.sample.svc.cluster.local", "*.svc.cluster.local"},
		URIs: []*url.URL{Identity("cluster.local", "kube-system", "admin"), Identity("other-domain", "sample", "sleep"),
			Identity("cluster.local", "istio-system", "istio-eastwestgateway")},
		IPAddresses:    []net.IP{net.ParseIP("10.1.0.254"), net.ParseIP("::1")},
		EmailAddresses: []string{"root@example.com"},
		ExtraExtensions: []pkix.Extension{
			{Id: asn1.ObjectIdentifier{2, 5, 29, 19}, Critical: true, Value: bc},
			{Id: asn1.ObjectIdentifier{2, 5, 29, 15}, Critical: true, Value: ku},
		},
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})), key
}

// TestCSRForOtherIdentitiesGetsOnlyTheTokensIdentity: whatever names and
// extensions a CSR asks for, the certificate names exactly the caller's
// service account from its token — nothing the CSR asked for — and is no CA.
func TestCSRForOtherIdentitiesGetsOnlyTheTokensIdentity(t *testing.T) {
	c1 := newSecCluster(map[string]authenticationv1.TokenReviewStatus{"sleep-token": secServiceAccount("sample", "sleep", "istio-ca")})
	client, a := secService(t, map[model.ClusterID]*secCluster{"cluster1": c1})
	csr, key := greedyCSR(t)
	resp, err := secCall(client, "sleep-token", "cluster1", csr)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode([]byte(resp.CertChain[0]))
	leaf, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if len(leaf.URIs) != 1 || leaf.URIs[0].String() != "spiffe://cluster.local/ns/sample/sa/sleep" {
		t.Errorf("URI SANs %v, want only the token's identity", leaf.URIs)
	}
	if len(leaf.DNSNames)+len(leaf.IPAddresses)+len(leaf.EmailAddresses) != 0 {
		t.Errorf("names from the CSR: DNS %v IP %v e-mail %v", leaf.DNSNames, leaf.IPAddresses, leaf.EmailAddresses)
	}
	if leaf.Subject.String() != "" {
		t.Errorf("subject from the CSR: %q", leaf.Subject)
	}
	if leaf.IsCA || leaf.KeyUsage&(x509.KeyUsageCertSign|x509.KeyUsageCRLSign) != 0 {
		t.Errorf("the leaf can sign: IsCA %v, key usage %b", leaf.IsCA, leaf.KeyUsage)
	}
	if !slices.Equal(leaf.ExtKeyUsage, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}) {
		t.Errorf("extended key usage %v", leaf.ExtKeyUsage)
	}
	if !key.PublicKey.Equal(leaf.PublicKey) {
		t.Error("the certificate is not for the CSR's key")
	}
	inter := x509.NewCertPool()
	for _, p := range resp.CertChain[1:] {
		inter.AppendCertsFromPEM([]byte(p))
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: a.Roots(), Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Errorf("chain: %v", err)
	}
}

// TestCSRRefusesTokensNotForThisCallerOrCluster: a token for another
// audience, a token of cluster2 presented as cluster1, a token presented
// for a cluster the CA does not know, and reviews that do not confirm the
// istio-ca audience are all refused; each review asks for istio-ca.
func TestCSRRefusesTokensNotForThisCallerOrCluster(t *testing.T) {
	c1 := newSecCluster(map[string]authenticationv1.TokenReviewStatus{
		"c1-sleep":         secServiceAccount("sample", "sleep", "istio-ca"),
		"c1-kube-audience": secServiceAccount("sample", "sleep", "https://kubernetes.default.svc.cluster.local"),
		"c1-no-audiences":  secServiceAccount("sample", "sleep"),
		"c1-user":          {Authenticated: true, Audiences: []string{"istio-ca"}, User: authenticationv1.UserInfo{Username: "alice"}},
	})
	c2 := newSecCluster(map[string]authenticationv1.TokenReviewStatus{"c2-sleep": secServiceAccount("sample", "sleep", "istio-ca")})
	client, _ := secService(t, map[model.ClusterID]*secCluster{"cluster1": c1, "cluster2": c2})
	csr, _ := greedyCSR(t)
	for _, tt := range []struct {
		name, token, cluster string
		code                 codes.Code
	}{
		{"own token, own cluster (control)", "c1-sleep", "cluster1", codes.OK},
		{"cluster2 token, own cluster (control)", "c2-sleep", "cluster2", codes.OK},
		{"wrong audience", "c1-kube-audience", "cluster1", codes.Unauthenticated},
		{"review confirms no audience", "c1-no-audiences", "cluster1", codes.Unauthenticated},
		{"cluster2 token claiming cluster1", "c2-sleep", "cluster1", codes.Unauthenticated},
		{"cluster1 token claiming cluster2", "c1-sleep", "cluster2", codes.Unauthenticated},
		{"unknown cluster id", "c1-sleep", "cluster7", codes.Unauthenticated},
		{"invalid cluster id", "c1-sleep", "../cluster1", codes.Unauthenticated},
		{"not a service account", "c1-user", "cluster1", codes.Unauthenticated},
	} {
		t.Run(tt.name, func(t *testing.T) {
			resp, err := secCall(client, tt.token, tt.cluster, csr)
			if status.Code(err) != tt.code {
				t.Fatalf("got %v, want %v", err, tt.code)
			}
			if err != nil {
				if resp != nil {
					t.Errorf("refused with a response: %v", resp)
				}
				return
			}
			block, _ := pem.Decode([]byte(resp.CertChain[0]))
			leaf, _ := x509.ParseCertificate(block.Bytes)
			if len(leaf.URIs) != 1 || leaf.URIs[0].String() != "spiffe://cluster.local/ns/sample/sa/sleep" {
				t.Errorf("identity %v", leaf.URIs)
			}
		})
	}
	for name, c := range map[string]*secCluster{"cluster1": c1, "cluster2": c2} {
		c.mu.Lock()
		for _, aud := range c.asked {
			if !slices.Equal(aud, []string{"istio-ca"}) {
				t.Errorf("%s was asked to review a token for audiences %v, want [istio-ca]", name, aud)
			}
		}
		if len(c.asked) == 0 {
			t.Errorf("%s reviewed no token", name)
		}
		c.mu.Unlock()
	}
}
