package ca

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"strings"
	"testing"
	"time"

	"github.com/horizonmesh/horizon/internal/ca/catest"
)

func cacerts(t *testing.T) catest.Files {
	t.Helper()
	f, err := catest.New("test")
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// testCA is an Authority loaded from fresh cacerts.
func testCA(t *testing.T) *Authority {
	t.Helper()
	a, err := Load(cacerts(t))
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func TestLoadVerifiesCACerts(t *testing.T) {
	good := cacerts(t)
	other := cacerts(t)
	if _, err := Load(good); err != nil {
		t.Fatalf("good cacerts: %v", err)
	}
	tests := []struct {
		name     string
		edit     func(catest.Files)
		contains string
	}{
		{"missing key", func(f catest.Files) { delete(f, CAKeyFile) }, "ca-key.pem is missing"},
		{"key of another CA", func(f catest.Files) { f[CAKeyFile] = other[CAKeyFile] }, "does not match"},
		{"root of another CA", func(f catest.Files) { f[RootCertFile] = other[RootCertFile] }, "does not chain"},
		{"garbage cert", func(f catest.Files) { f[CACertFile] = []byte("not pem") }, "ca-cert.pem"},
		{"leaf instead of a CA", func(f catest.Files) {
			a, _ := Load(good)
			k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
			leaf, _ := a.SignServer(&k.PublicKey, Identity("td", "a", "b"), nil, nil, time.Hour)
			kd, _ := x509.MarshalECPrivateKey(k)
			f[CACertFile], f[CAKeyFile] = leaf, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kd})
		}, "not a CA"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := catest.Files{}
			for k, v := range good {
				f[k] = v
			}
			tt.edit(f)
			if _, err := Load(f); err == nil || !strings.Contains(err.Error(), tt.contains) {
				t.Fatalf("err = %v, want %q", err, tt.contains)
			}
		})
	}
}

func csrFor(t *testing.T, dns string, uri string) ([]byte, *ecdsa.PrivateKey) {
	t.Helper()
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.CertificateRequest{Subject: pkix.Name{CommonName: "attacker"}, DNSNames: []string{dns}}
	if uri != "" {
		u := Identity("cluster.local", "kube-system", "admin")
		tmpl.URIs = append(tmpl.URIs, u)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, k)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}), k
}

func TestSignWorkloadCarriesOnlyTheCallersIdentity(t *testing.T) {
	a := testCA(t)
	csr, key := csrFor(t, "evil.example.com", "spiffe://cluster.local/ns/kube-system/sa/admin")
	id := Identity("cluster.local", "sample", "sleep")
	leafPEM, err := a.SignWorkload(csr, id, 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(leafPEM)
	leaf, _ := x509.ParseCertificate(block.Bytes)
	if len(leaf.URIs) != 1 || leaf.URIs[0].String() != "spiffe://cluster.local/ns/sample/sa/sleep" || len(leaf.DNSNames) != 0 || leaf.Subject.CommonName != "" {
		t.Errorf("leaf names: URIs %v DNS %v CN %q", leaf.URIs, leaf.DNSNames, leaf.Subject.CommonName)
	}
	if !key.PublicKey.Equal(leaf.PublicKey) {
		t.Error("leaf is not for the CSR's key")
	}
	if d := leaf.NotAfter.Sub(leaf.NotBefore); d < 24*time.Hour || d > 24*time.Hour+2*time.Minute {
		t.Errorf("lifetime %s", d)
	}
	// The chain workloads get verifies to the root through the intermediate.
	chain := a.WorkloadChain(leafPEM)
	if len(chain) != 3 {
		t.Fatalf("chain has %d certificates, want leaf, intermediate, root", len(chain))
	}
	inter := x509.NewCertPool()
	inter.AppendCertsFromPEM([]byte(chain[1]))
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM([]byte(chain[2]))
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Errorf("leaf does not verify through the chain: %v", err)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err == nil {
		t.Error("leaf verified without the intermediate: it is signed by the root directly")
	}
}

func TestSignWorkloadRejectsBadCSRs(t *testing.T) {
	a, _ := SelfSigned("cluster.local")
	good, _ := csrFor(t, "x", "")
	tampered := []byte(strings.Replace(string(good), string(good[100:110]), "AAAAAAAAAA", 1))
	for name, csr := range map[string][]byte{"empty": nil, "not pem": []byte("hello"), "tampered": tampered,
		"huge": []byte(strings.Repeat("A", maxCSRBytes+1))} {
		if _, err := a.SignWorkload(csr, Identity("cluster.local", "a", "b"), time.Hour); err == nil {
			t.Errorf("%s CSR signed", name)
		}
	}
	if chain := a.WorkloadChain([]byte("leaf")); len(chain) != 2 {
		t.Errorf("self-signed chain = %d certificates, want leaf + root", len(chain))
	}
}
