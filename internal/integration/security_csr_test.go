//go:build integration

package integration

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"net"
	"net/url"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	securityv1alpha1 "istio.io/api/security/v1alpha1"

	"github.com/horizonmesh/horizon/internal/bootstrap"
	"github.com/horizonmesh/horizon/internal/ca"
	"github.com/horizonmesh/horizon/internal/ca/catest"
	"github.com/horizonmesh/horizon/internal/testing/kubeharness"
)

// TestSecurityCSRForAnotherIdentityGetsTheTokensIdentity: through
// discovery's TLS port and a real TokenReview, a workload whose CSR asks
// for other identities (another service account, the gateway's, another
// trust domain) and several DNS names and IPs gets a certificate naming
// only the service account of its token.
func TestSecurityCSRForAnotherIdentityGetsTheTokensIdentity(t *testing.T) {
	c1 := kubeharness.Start(t, kubeharness.Options{Name: "cluster1"})
	namespace(t, c1, "istio-system", nil)
	namespace(t, c1, "sample", nil)
	files, err := catest.New("mesh")
	must(t, err)
	installCACerts(t, c1, files)
	for _, sa := range []string{"sleep", "helloworld"} {
		must(t, createSA(c1, "sample", sa))
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	secure := l.Addr().String()
	l.Close()
	startDiscoveryWith(t, c1, nil, true, func(c *bootstrap.Config) {
		c.SecureAddr, c.SecureSANs = secure, []string{"localhost"}
	})
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(files[ca.RootCertFile])
	conn, err := grpc.NewClient(secure, grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: roots, ServerName: "localhost"})))
	must(t, err)
	defer conn.Close()
	client := securityv1alpha1.NewIstioCertificateServiceClient(conn)

	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	must(t, err)
	csrDER, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject:     pkix.Name{CommonName: "istio-eastwestgateway"},
		DNSNames:    []string{"helloworld.sample.svc.cluster.local", "evil.example.com"},
		IPAddresses: []net.IP{net.ParseIP("10.1.0.254")},
		URIs: []*url.URL{ca.Identity("cluster.local", "istio-system", "istio-eastwestgateway"),
			ca.Identity("cluster.local", "sample", "helloworld"), ca.Identity("other.domain", "sample", "sleep")},
	}, key)
	must(t, err)
	csr := string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: csrDER}))
	for _, tt := range []struct{ sa, want string }{
		{"sleep", "spiffe://cluster.local/ns/sample/sa/sleep"},
		{"helloworld", "spiffe://cluster.local/ns/sample/sa/helloworld"},
	} {
		t.Run("token of "+tt.sa, func(t *testing.T) {
			c := metadata.NewOutgoingContext(ctx, metadata.Pairs("authorization", "Bearer "+token(t, c1, "sample", tt.sa, "istio-ca"), ca.ClusterIDHeader, "cluster1"))
			resp, err := client.CreateCertificate(c, &securityv1alpha1.IstioCertificateRequest{Csr: csr})
			if err != nil {
				t.Fatal(err)
			}
			block, _ := pem.Decode([]byte(resp.CertChain[0]))
			leaf, err := x509.ParseCertificate(block.Bytes)
			must(t, err)
			if len(leaf.URIs) != 1 || leaf.URIs[0].String() != tt.want {
				t.Errorf("URI SANs %v, want only %s", leaf.URIs, tt.want)
			}
			if len(leaf.DNSNames)+len(leaf.IPAddresses) != 0 || leaf.Subject.CommonName != "" || leaf.IsCA {
				t.Errorf("the CSR's names were copied: DNS %v IP %v CN %q CA %v", leaf.DNSNames, leaf.IPAddresses, leaf.Subject.CommonName, leaf.IsCA)
			}
			if !key.PublicKey.Equal(leaf.PublicKey) {
				t.Error("not the CSR's key")
			}
		})
	}
}
