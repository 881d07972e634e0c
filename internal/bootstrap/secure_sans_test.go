package bootstrap

import (
	"crypto/x509"
	"testing"

	"github.com/horizonmesh/horizon/internal/ca"
	"github.com/horizonmesh/horizon/internal/install"
)

// The TLS port's default certificate carries the name Istio's pilot-agent
// checks when its discovery (and CA) address is the istiod Service,
// istiod.<namespace>.svc (in istio-system, also the name it checks when it
// dials localhost), besides Horizon's own Service name and loopback:
// migrating an Istio sidecar needs no ISTIOD_SAN override.
func TestDefaultSecureSANsServeIstioAgents(t *testing.T) {
	a, err := ca.SelfSigned("cluster.local")
	if err != nil {
		t.Fatal(err)
	}
	for _, ns := range []string{"istio-system", "horizon"} {
		cert, err := servingCert(a, ca.Identity("cluster.local", ns, install.DiscoveryName), defaultSecureSANs(ns))
		if err != nil {
			t.Fatal(err)
		}
		leaf, err := x509.ParseCertificate(cert.Certificate[0])
		if err != nil {
			t.Fatal(err)
		}
		for _, name := range []string{"istiod." + ns + ".svc", "horizon." + ns + ".svc", "localhost", "127.0.0.1"} {
			if _, err := leaf.Verify(x509.VerifyOptions{Roots: a.Roots(), DNSName: name,
				KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
				t.Errorf("namespace %s: the default certificate is not valid for %s: %v", ns, name, err)
			}
		}
	}
}
