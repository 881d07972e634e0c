package agent

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	securityv1alpha1 "istio.io/api/security/v1alpha1"

	"github.com/horizonmesh/horizon/internal/xds/translate"
)

// Identity is the workload's key and certificate chain.
type Identity struct {
	KeyPEM   []byte
	ChainPEM []byte // leaf first, then intermediates (root excluded)
	RootPEM  []byte
	NotAfter time.Time
	Leaf     *x509.Certificate
	// Received is when the agent got the certificate (zero: its NotBefore).
	// The CA backdates NotBefore for clock skew, which for a short-lived
	// certificate may put its half life in the past already.
	Received time.Time
}

// CertClient obtains workload certificates from discovery's CSR service.
type CertClient struct {
	Addr       string // discovery's TLS address
	ServerName string // expected in its certificate
	RootPEM    []byte // the mesh root, to trust discovery
	TokenFile  string // the workload's service-account token (audience istio-ca)
	ClusterID  string
	TTL        time.Duration
}

// Fetch creates a private key locally (it never leaves the agent) and gets
// it certified.
func (c *CertClient) Fetch(ctx context.Context) (*Identity, error) {
	token, err := os.ReadFile(c.TokenFile)
	if err != nil {
		return nil, fmt.Errorf("token: %w", err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	csrDER, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
	if err != nil {
		return nil, err
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(c.RootPEM) {
		return nil, errors.New("no root certificate to trust discovery with")
	}
	// ALPN "istio" too: through a network gateway the connection is routed
	// by a passthrough chain that matches the mesh ALPN list.
	conn, err := grpc.NewClient(c.Addr, grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{
		RootCAs: roots, ServerName: c.ServerName, MinVersion: tls.VersionTLS12, NextProtos: []string{"h2", translate.MeshALPN[0]}})))
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+strings.TrimSpace(string(token)), "clusterid", c.ClusterID)
	resp, err := securityv1alpha1.NewIstioCertificateServiceClient(conn).CreateCertificate(ctx, &securityv1alpha1.IstioCertificateRequest{
		Csr: string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: csrDER})), ValidityDuration: int64(c.TTL.Seconds())})
	if err != nil {
		return nil, fmt.Errorf("CSR: %w", err)
	}
	if len(resp.CertChain) < 2 {
		return nil, fmt.Errorf("CSR: a chain of %d certificates", len(resp.CertChain))
	}
	block, _ := pem.Decode([]byte(resp.CertChain[0]))
	if block == nil {
		return nil, errors.New("CSR: the leaf is not PEM")
	}
	leaf, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, err
	}
	if !key.PublicKey.Equal(leaf.PublicKey) {
		return nil, errors.New("CSR: the certificate is not for our key")
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, err
	}
	n := len(resp.CertChain)
	return &Identity{
		KeyPEM:   pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}),
		ChainPEM: []byte(strings.Join(resp.CertChain[:n-1], "")),
		RootPEM:  []byte(resp.CertChain[n-1]),
		NotAfter: leaf.NotAfter,
		Leaf:     leaf,
	}, nil
}

// RenewAt is when to rotate: half-way through the certificate's life, as
// counted from when it was received if that is later than its NotBefore.
func (id *Identity) RenewAt() time.Time {
	start := id.Leaf.NotBefore
	if id.Received.After(start) {
		start = id.Received
	}
	return start.Add(id.NotAfter.Sub(start) / 2)
}
