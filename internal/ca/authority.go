// Package ca is Horizon's certificate authority: it signs workload
// certificates carrying SPIFFE identities, from a plug-in CA (the
// walkthrough's cacerts: a shared root, an intermediate per cluster) or, for
// trying things out, a self-signed root.
package ca

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"time"
)

// The cacerts file names, as Istio's plug-in CA Secret has them.
const (
	CACertFile    = "ca-cert.pem"
	CAKeyFile     = "ca-key.pem"
	RootCertFile  = "root-cert.pem"
	CertChainFile = "cert-chain.pem"
)

// Authority signs certificates with a CA key.
type Authority struct {
	cert    *x509.Certificate
	key     crypto.Signer
	chain   []*x509.Certificate // ca-cert and its intermediates, up to (not including) the root
	roots   *x509.CertPool
	rootPEM []byte
	now     func() time.Time
}

// Load reads and verifies cacerts from files (a directory, or a Secret's
// data): the key must match ca-cert.pem, and ca-cert.pem with cert-chain.pem
// must chain to root-cert.pem. Any failure is an error: a control plane must
// not start with a CA whose certificates nobody could verify.
func Load(files map[string][]byte) (*Authority, error) {
	for _, f := range []string{CACertFile, CAKeyFile, RootCertFile, CertChainFile} {
		if len(files[f]) == 0 {
			return nil, fmt.Errorf("cacerts: %s is missing or empty", f)
		}
	}
	cert, err := parseCert(files[CACertFile])
	if err != nil {
		return nil, fmt.Errorf("cacerts: %s: %w", CACertFile, err)
	}
	if !cert.IsCA {
		return nil, fmt.Errorf("cacerts: %s is not a CA certificate", CACertFile)
	}
	key, err := parseKey(files[CAKeyFile])
	if err != nil {
		return nil, fmt.Errorf("cacerts: %s: %w", CAKeyFile, err)
	}
	if !publicKeysEqual(key.Public(), cert.PublicKey) {
		return nil, fmt.Errorf("cacerts: %s does not match the key in %s", CAKeyFile, CACertFile)
	}
	roots, err := parseCerts(files[RootCertFile])
	if err != nil {
		return nil, fmt.Errorf("cacerts: %s: %w", RootCertFile, err)
	}
	chain, err := parseCerts(files[CertChainFile])
	if err != nil {
		return nil, fmt.Errorf("cacerts: %s: %w", CertChainFile, err)
	}
	pool := x509.NewCertPool()
	for _, r := range roots {
		pool.AddCert(r)
	}
	inter := x509.NewCertPool()
	var chainOut []*x509.Certificate
	for _, c := range chain {
		if isRoot(c, roots) {
			continue // some cert-chain.pem files end with the root itself
		}
		inter.AddCert(c)
		chainOut = append(chainOut, c)
	}
	if len(chainOut) == 0 || !chainOut[0].Equal(cert) {
		// The chain handed to workloads must start with the signing cert.
		chainOut = append([]*x509.Certificate{cert}, chainOut...)
	}
	if _, err := cert.Verify(x509.VerifyOptions{Roots: pool, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		return nil, fmt.Errorf("cacerts: %s does not chain to %s through %s: %w", CACertFile, RootCertFile, CertChainFile, err)
	}
	return &Authority{cert: cert, key: key, chain: chainOut, roots: pool, rootPEM: files[RootCertFile], now: time.Now}, nil
}

// LoadDir reads cacerts from a directory.
func LoadDir(dir string) (*Authority, error) {
	files := map[string][]byte{}
	for _, f := range []string{CACertFile, CAKeyFile, RootCertFile, CertChainFile} {
		b, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("cacerts: %w", err)
		}
		files[f] = b
	}
	return Load(files)
}

// SelfSigned creates a self-signed root for trustDomain that signs directly.
// Workloads of different control planes will not trust each other: use
// cacerts for anything but a trial.
func SelfSigned(trustDomain string) (*Authority, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: randomSerial(), Subject: pkix.Name{Organization: []string{trustDomain}, CommonName: "Horizon self-signed root"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(10 * 365 * 24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, err
	}
	cert, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &Authority{cert: cert, key: key, chain: []*x509.Certificate{cert}, roots: pool,
		rootPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), now: time.Now}, nil
}

// RootPEM returns the root certificate(s) workloads trust.
func (a *Authority) RootPEM() []byte { return a.rootPEM }

// Roots returns the trust roots as a pool.
func (a *Authority) Roots() *x509.CertPool { return a.roots }

// ChainPEM returns the signing certificate and its intermediates (the
// cert-chain.pem part of every workload's chain).
func (a *Authority) ChainPEM() []string {
	out := make([]string, 0, len(a.chain))
	for _, c := range a.chain {
		out = append(out, string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})))
	}
	return out
}

// WorkloadChain is what a workload receives: its leaf, the signing
// certificate and intermediates (cert-chain.pem), and the root last, as
// Istio agents expect.
func (a *Authority) WorkloadChain(leafPEM []byte) []string {
	out := append([]string{string(leafPEM)}, a.ChainPEM()...)
	if last := a.chain[len(a.chain)-1]; !a.isOwnRoot(last) {
		out = append(out, string(a.rootPEM))
	}
	return out
}

func (a *Authority) isOwnRoot(c *x509.Certificate) bool {
	roots, err := parseCerts(a.rootPEM)
	return err == nil && isRoot(c, roots)
}

func parseCert(b []byte) (*x509.Certificate, error) {
	certs, err := parseCerts(b)
	if err != nil {
		return nil, err
	}
	return certs[0], nil
}

func parseCerts(b []byte) ([]*x509.Certificate, error) {
	var out []*x509.Certificate
	for {
		var block *pem.Block
		block, b = pem.Decode(b)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		return nil, errors.New("no PEM certificate found")
	}
	return out, nil
}

func parseKey(b []byte) (crypto.Signer, error) {
	block, _ := pem.Decode(b)
	if block == nil {
		return nil, errors.New("no PEM key found")
	}
	var k any
	var err error
	switch block.Type {
	case "RSA PRIVATE KEY":
		k, err = x509.ParsePKCS1PrivateKey(block.Bytes)
	case "EC PRIVATE KEY":
		k, err = x509.ParseECPrivateKey(block.Bytes)
	default:
		k, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	}
	if err != nil {
		return nil, err
	}
	s, ok := k.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("unsupported key type %T", k)
	}
	return s, nil
}

func publicKeysEqual(a, b crypto.PublicKey) bool {
	ea, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && ea.Equal(b)
}

func isRoot(c *x509.Certificate, roots []*x509.Certificate) bool {
	for _, r := range roots {
		if bytes.Equal(c.Raw, r.Raw) {
			return true
		}
	}
	return false
}

func randomSerial() *big.Int {
	n, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	return n
}
