//go:build integration

package integration

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"net"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	securityv1alpha1 "istio.io/api/security/v1alpha1"
	authenticationv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/horizonmesh/horizon/internal/bootstrap"
	"github.com/horizonmesh/horizon/internal/ca"
	"github.com/horizonmesh/horizon/internal/ca/catest"
	"github.com/horizonmesh/horizon/internal/testing/kubeharness"
)

func token(t *testing.T, c *kubeharness.Cluster, ns, sa string, audiences ...string) string {
	t.Helper()
	secs := int64(3600)
	tr, err := c.Client.CoreV1().ServiceAccounts(ns).CreateToken(ctx, sa, &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{Audiences: audiences, ExpirationSeconds: &secs}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return tr.Status.Token
}

// TestCSRAgainstRealAPIServers: the CA reads its cacerts Secret from the
// local cluster and checks callers' tokens with TokenReviews against their
// own cluster — the remote one through its joined kubeconfig.
func TestCSRAgainstRealAPIServers(t *testing.T) {
	m := startMesh(t)
	files, err := catest.New("mesh")
	if err != nil {
		t.Fatal(err)
	}
	installCACerts(t, m.c1, files)
	for _, c := range []*kubeharness.Cluster{m.c1, m.c2} {
		must(t, createSA(c, "sample", "sleep"))
	}
	m.joinCluster2(t, "iks")
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	secure := l.Addr().String()
	l.Close()
	d := startDiscoveryWith(t, m.c1, nil, true, func(c *bootstrap.Config) {
		c.SecureAddr, c.SecureSANs = secure, []string{"localhost"}
	})
	waitFor(t, 30*time.Second, "cluster2 synced", func() bool {
		for _, c := range d.cp.Clusters() {
			if c.ID == "cluster2" && c.Synced {
				return true
			}
		}
		return false
	})

	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(files[ca.RootCertFile])
	conn, err := grpc.NewClient(secure, grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: roots, ServerName: "localhost"})))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	client := securityv1alpha1.NewIstioCertificateServiceClient(conn)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	csrDER, _ := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
	csr := string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: csrDER}))
	sign := func(tok, cluster string) (*securityv1alpha1.IstioCertificateResponse, error) {
		c := metadata.NewOutgoingContext(ctx, metadata.Pairs("authorization", "Bearer "+tok, ca.ClusterIDHeader, cluster))
		return client.CreateCertificate(c, &securityv1alpha1.IstioCertificateRequest{Csr: csr})
	}

	for _, tt := range []struct {
		name    string
		token   string
		cluster string
		code    codes.Code
	}{
		{"local workload", token(t, m.c1, "sample", "sleep", "istio-ca"), "cluster1", codes.OK},
		{"remote workload, checked by its own cluster", token(t, m.c2, "sample", "sleep", "istio-ca"), "cluster2", codes.OK},
		{"token for another cluster", token(t, m.c2, "sample", "sleep", "istio-ca"), "cluster1", codes.Unauthenticated},
		{"wrong audience", token(t, m.c1, "sample", "sleep", "some-other-audience"), "cluster1", codes.Unauthenticated},
		{"unknown cluster", token(t, m.c1, "sample", "sleep", "istio-ca"), "cluster7", codes.Unauthenticated},
	} {
		t.Run(tt.name, func(t *testing.T) {
			resp, err := sign(tt.token, tt.cluster)
			if status.Code(err) != tt.code {
				t.Fatalf("got %v, want %v", err, tt.code)
			}
			if err != nil {
				return
			}
			block, _ := pem.Decode([]byte(resp.CertChain[0]))
			leaf, _ := x509.ParseCertificate(block.Bytes)
			if got := leaf.URIs[0].String(); got != "spiffe://cluster.local/ns/sample/sa/sleep" {
				t.Errorf("identity %s", got)
			}
			inter := x509.NewCertPool()
			for _, p := range resp.CertChain[1:] {
				inter.AppendCertsFromPEM([]byte(p))
			}
			if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
				t.Errorf("chain does not verify to the cacerts root: %v", err)
			}
		})
	}
}
