package ca

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"math"
	"net"
	"net/url"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	securityv1alpha1 "istio.io/api/security/v1alpha1"

	"github.com/horizonmesh/horizon/internal/ca/catest"
	"github.com/horizonmesh/horizon/internal/model"
	"github.com/horizonmesh/horizon/internal/testing/testkit"
)

// fixedCaller authenticates the one token "good" as sample/sleep.
type fixedCaller struct{}

func (fixedCaller) Authenticate(_ context.Context, _ model.ClusterID, token string) (Caller, error) {
	if token != "good" {
		return Caller{}, errors.New("bad token")
	}
	return Caller{Namespace: "sample", ServiceAccount: "sleep"}, nil
}

var (
	oidKeyUsage    = asn1.ObjectIdentifier{2, 5, 29, 15}
	oidSAN         = asn1.ObjectIdentifier{2, 5, 29, 17}
	oidExtKeyUsage = asn1.ObjectIdentifier{2, 5, 29, 37}
)

const (
	fuzzDefaultTTL = 24 * time.Hour
	fuzzMaxTTL     = 48 * time.Hour
	fuzzIdentity   = "spiffe://cluster.local/ns/sample/sa/sleep"
)

// fuzzCSR makes a validly signed CSR asking for everything a workload must
// not get: other identities, DNS names, IPs, e-mail, a CA's basic
// constraints and key usage.
func fuzzCSR(tb testing.TB, key any, extra []pkix.Extension) []byte {
	tb.Helper()
	bc, _ := asn1.Marshal(struct {
		IsCA       bool `asn1:"optional"`
		MaxPathLen int  `asn1:"optional,default:-1"`
	}{true, 5})
	tmpl := &x509.CertificateRequest{
		Subject:        pkix.Name{CommonName: "attacker", Organization: []string{"system:masters"}},
		DNSNames:       []string{"evil.example.com", "*.svc.cluster.local"},
		IPAddresses:    []net.IP{net.ParseIP("10.0.0.1")},
		EmailAddresses: []string{"root@example.com"},
		URIs:           []*url.URL{{Scheme: "spiffe", Host: "cluster.local", Path: "/ns/kube-system/sa/admin"}},
		ExtraExtensions: append([]pkix.Extension{
			{Id: asn1.ObjectIdentifier{2, 5, 29, 19}, Critical: true, Value: bc}, // basicConstraints CA:TRUE
		}, extra...),
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		tb.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})
}

// FuzzCreateCertificate sends fuzzed CSR bytes and requested lifetimes to the
// CSR service of an intermediate CA, as an authenticated sample/sleep caller.
// Bytes that are not PEM are also tried as a DER CSR, and a CSR that parses
// but whose signature does not hold is re-signed with a fixed key with all
// its names and extensions, so the signing path sees fuzzed CSR contents.
// Invariants: no panic; a refusal is InvalidArgument; a valid CSR is signed
// (for any requested lifetime); a signed leaf is for the CSR's key, names only
// the caller's SPIFFE identity (no other URI, DNS name, IP, e-mail or common
// name), is not a CA and cannot sign certificates, lives at most the maximum
// TTL (the default one when none is asked for), and verifies to the root
// through the returned chain.
func FuzzCreateCertificate(f *testing.F) {
	files, err := catest.New("fuzz")
	if err != nil {
		f.Fatal(err)
	}
	a, err := Load(files)
	if err != nil {
		f.Fatal(err)
	}
	svc := &Service{CA: a, Auth: fixedCaller{}, TrustDomain: "cluster.local", DefaultTTL: fuzzDefaultTTL, MaxTTL: fuzzMaxTTL,
		Log: testkit.Logger()}
	resignKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(files[RootCertFile])

	ecKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	_, edKey, _ := ed25519.GenerateKey(rand.Reader)
	kuCertSign, _ := asn1.Marshal(asn1.BitString{Bytes: []byte{0x06}, BitLength: 7}) // keyCertSign, cRLSign
	for _, seed := range []struct {
		csr      []byte
		validity int64
	}{
		{fuzzCSR(f, ecKey, nil), 0},
		{fuzzCSR(f, rsaKey, nil), 3600},
		{fuzzCSR(f, edKey, []pkix.Extension{{Id: oidKeyUsage, Critical: true, Value: kuCertSign}}), -5},
		{fuzzCSR(f, ecKey, nil), int64((100 * time.Hour).Seconds())},
		{fuzzCSR(f, ecKey, nil), math.MaxInt64 / int64(time.Second)},
		{fuzzCSR(f, ecKey, nil), math.MaxInt64},
		{[]byte("-----BEGIN CERTIFICATE REQUEST-----\nMIIB\n-----END CERTIFICATE REQUEST-----\n"), 1},
		{files[CACertFile], 1},
		{[]byte{0x30, 0x82, 0x01, 0x00}, 1},
		{nil, 0},
	} {
		f.Add(seed.csr, seed.validity)
	}
	f.Fuzz(func(t *testing.T, csr []byte, validity int64) {
		call := func(csrPEM []byte, wantSigned bool) {
			md := metadata.Pairs("authorization", "Bearer good", ClusterIDHeader, "cluster1")
			ctx := metadata.NewIncomingContext(context.Background(), md)
			start := time.Now()
			resp, err := svc.CreateCertificate(ctx, &securityv1alpha1.IstioCertificateRequest{Csr: string(csrPEM), ValidityDuration: validity})
			if err != nil {
				if status.Code(err) != codes.InvalidArgument {
					t.Fatalf("refused with %v, want InvalidArgument", err)
				}
				if wantSigned {
					t.Fatalf("valid CSR (validity %d s) refused: %v", validity, err)
				}
				return
			}
			checkLeaf(t, resp.CertChain, csrPEM, validity, start, roots)
		}
		block, _ := pem.Decode(csr)
		if block == nil {
			// Not PEM: try the bytes as a DER CSR.
			call(csr, false)
			block = &pem.Block{Type: "CERTIFICATE REQUEST", Bytes: csr}
			csr = pem.EncodeToMemory(block)
		}
		parsed, err := x509.ParseCertificateRequest(block.Bytes)
		valid := validCSR(csr)
		call(csr, valid)
		if err != nil || valid {
			return
		}
		// A CSR that parses but is not validly signed: the same request,
		// signed for real, must be signed with none of what it asks for.
		der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
			Subject: parsed.Subject, DNSNames: parsed.DNSNames, EmailAddresses: parsed.EmailAddresses,
			IPAddresses: parsed.IPAddresses, URIs: parsed.URIs, ExtraExtensions: parsed.Extensions,
		}, resignKey)
		if err != nil {
			return // Go refuses to encode some of what it parsed
		}
		resigned := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})
		call(resigned, validCSR(resigned))
	})
}

// validCSR reports whether csrPEM is a CSR the CA must sign: not too long,
// its first PEM block a CERTIFICATE REQUEST that parses and whose signature
// holds.
func validCSR(csrPEM []byte) bool {
	block, _ := pem.Decode(csrPEM)
	if len(csrPEM) > maxCSRBytes || block == nil || block.Type != "CERTIFICATE REQUEST" {
		return false
	}
	csr, err := x509.ParseCertificateRequest(block.Bytes)
	return err == nil && csr.CheckSignature() == nil
}

func checkLeaf(t *testing.T, chain []string, csrPEM []byte, validity int64, start time.Time, roots *x509.CertPool) {
	t.Helper()
	if len(chain) != 3 {
		t.Fatalf("chain of %d certificates, want leaf, intermediate, root", len(chain))
	}
	block, _ := pem.Decode([]byte(chain[0]))
	if block == nil {
		t.Fatal("leaf is not PEM")
	}
	leaf, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatalf("leaf does not parse: %v", err)
	}
	csrBlock, _ := pem.Decode(csrPEM)
	csr, err := x509.ParseCertificateRequest(csrBlock.Bytes)
	if err != nil {
		t.Fatalf("signed a CSR that does not parse: %v", err)
	}
	if k, ok := leaf.PublicKey.(interface{ Equal(crypto.PublicKey) bool }); !ok || !k.Equal(csr.PublicKey) {
		t.Fatal("leaf is not for the CSR's key")
	}
	if len(leaf.URIs) != 1 || leaf.URIs[0].String() != fuzzIdentity {
		t.Fatalf("leaf URIs %v, want only %s", leaf.URIs, fuzzIdentity)
	}
	if len(leaf.DNSNames)+len(leaf.IPAddresses)+len(leaf.EmailAddresses) != 0 || leaf.Subject.CommonName != "" || len(leaf.Subject.Organization) != 0 {
		t.Fatalf("leaf names more than the identity: DNS %v IP %v email %v subject %q", leaf.DNSNames, leaf.IPAddresses, leaf.EmailAddresses, leaf.Subject)
	}
	if leaf.IsCA || leaf.KeyUsage&(x509.KeyUsageCertSign|x509.KeyUsageCRLSign) != 0 {
		t.Fatalf("leaf is a CA (IsCA %v, key usage %b)", leaf.IsCA, leaf.KeyUsage)
	}
	for _, e := range leaf.Extensions {
		for _, c := range csr.Extensions {
			own := e.Id.Equal(oidKeyUsage) || e.Id.Equal(oidExtKeyUsage) || e.Id.Equal(oidSAN)
			if !own && e.Id.Equal(c.Id) && string(e.Value) == string(c.Value) {
				t.Fatalf("leaf copies the CSR's extension %v", e.Id)
			}
		}
	}
	want := fuzzDefaultTTL
	if validity > 0 {
		want = fuzzMaxTTL
		if validity < int64(fuzzMaxTTL/time.Second) {
			want = time.Duration(validity) * time.Second
		}
	}
	if life := leaf.NotAfter.Sub(start); life > fuzzMaxTTL+time.Second || life > want+time.Second {
		t.Fatalf("leaf lives %s from now (requested %d s); max %s", life, validity, want)
	}
	if leaf.NotAfter.Sub(leaf.NotBefore) > fuzzMaxTTL+time.Minute+time.Second {
		t.Fatalf("leaf valid %s, max %s (+1m skew)", leaf.NotAfter.Sub(leaf.NotBefore), fuzzMaxTTL)
	}
	inter := x509.NewCertPool()
	inter.AppendCertsFromPEM([]byte(chain[1]))
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, CurrentTime: start,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Fatalf("leaf does not verify through the chain: %v", err)
	}
}
