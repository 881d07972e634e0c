package ca

import (
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"net/url"
	"time"
)

// maxCSRBytes bounds a CSR before it is parsed.
const maxCSRBytes = 64 << 10

// Identity is a workload identity: spiffe://<trust-domain>/ns/<ns>/sa/<sa>.
func Identity(trustDomain, namespace, serviceAccount string) *url.URL {
	return &url.URL{Scheme: "spiffe", Host: trustDomain, Path: "/ns/" + namespace + "/sa/" + serviceAccount}
}

// SignWorkload signs a workload certificate for csrPEM's public key. The
// certificate carries only id, whatever names the CSR asks for: identity
// comes from the caller's authenticated token, never from the CSR. The
// lifetime is ttl, cut to the signing certificate's own expiry.
func (a *Authority) SignWorkload(csrPEM []byte, id *url.URL, ttl time.Duration) (certPEM []byte, err error) {
	if len(csrPEM) == 0 || len(csrPEM) > maxCSRBytes {
		return nil, fmt.Errorf("CSR is empty or larger than %d bytes", maxCSRBytes)
	}
	block, _ := pem.Decode(csrPEM)
	if block == nil || block.Type != "CERTIFICATE REQUEST" {
		return nil, errors.New("CSR is not a PEM CERTIFICATE REQUEST")
	}
	csr, err := x509.ParseCertificateRequest(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("CSR does not parse: %w", err)
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, fmt.Errorf("CSR signature is invalid: %w", err)
	}
	return a.sign(csr.PublicKey, ttl, func(t *x509.Certificate) {
		t.URIs = []*url.URL{id}
		t.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
	})
}

// SignServer signs a serving certificate for the control plane itself: its
// SPIFFE id plus the DNS names and IPs agents dial.
func (a *Authority) SignServer(pub any, id *url.URL, dnsNames []string, ips []net.IP, ttl time.Duration) ([]byte, error) {
	return a.sign(pub, ttl, func(t *x509.Certificate) {
		t.URIs = []*url.URL{id}
		t.DNSNames, t.IPAddresses = dnsNames, ips
		t.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
	})
}

func (a *Authority) sign(pub any, ttl time.Duration, fill func(*x509.Certificate)) ([]byte, error) {
	if ttl <= 0 {
		return nil, errors.New("certificate lifetime must be positive")
	}
	now := a.now()
	notAfter := now.Add(ttl)
	if notAfter.After(a.cert.NotAfter) {
		notAfter = a.cert.NotAfter
	}
	tmpl := &x509.Certificate{
		SerialNumber: randomSerial(),
		NotBefore:    now.Add(-time.Minute), // small clock skew between hosts
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
	}
	fill(tmpl)
	der, err := x509.CreateCertificate(rand.Reader, tmpl, a.cert, pub, a.key)
	if err != nil {
		return nil, fmt.Errorf("sign: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), nil
}
