//go:build integration

package integration

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"testing"
	"time"

	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"
	securityv1alpha1 "istio.io/api/security/v1alpha1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/horizonmesh/horizon/internal/bootstrap"
	"github.com/horizonmesh/horizon/internal/ca"
	"github.com/horizonmesh/horizon/internal/testing/adsclient"
)

// Two discovery replicas on the same clusters, without cacerts: they share
// one self-signed root, so a certificate from one is accepted by the other
// (its TLS port serves that proxy), and when one stops, a proxy gets the
// same config from the other.
func TestTwoReplicasServeOneMesh(t *testing.T) {
	m := startMesh(t)
	m.joinCluster2(t, "iks")
	must(t, createSA(m.c1, "sample", "sleep"))
	replica := func() (*discoveryProc, string) {
		addr := pickAddr(t)
		d := startDiscoveryWith(t, m.c1, nil, true, func(c *bootstrap.Config) {
			c.SecureAddr, c.SecureSANs = addr, []string{"localhost"}
		})
		return d, addr
	}
	a, aSecure := replica()
	_, bSecure := replica()
	secret, err := m.c1.Client.CoreV1().Secrets("istio-system").Get(ctx, bootstrap.SelfSignedSecretName, metav1.GetOptions{})
	must(t, err)
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(secret.Data[ca.RootCertFile]) {
		t.Fatal("no root in the shared Secret")
	}

	// A workload certificate from replica A...
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	csrDER, _ := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
	conn, err := grpc.NewClient(aSecure, grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: roots, ServerName: "localhost"})))
	must(t, err)
	defer conn.Close()
	md := metadata.Pairs("authorization", "Bearer "+token(t, m.c1, "sample", "sleep", "istio-ca"), ca.ClusterIDHeader, "cluster1")
	resp, err := securityv1alpha1.NewIstioCertificateServiceClient(conn).CreateCertificate(metadata.NewOutgoingContext(ctx, md),
		&securityv1alpha1.IstioCertificateRequest{Csr: string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: csrDER}))})
	must(t, err)
	var chain [][]byte
	for _, p := range resp.CertChain {
		b, _ := pem.Decode([]byte(p))
		chain = append(chain, b.Bytes)
	}
	// ...is what B's TLS port accepts: B serves that proxy.
	node := adsclient.NodeWithIdentity("sidecar~10.1.0.9~sleep.sample~sample.svc.cluster.local", "network1", "cluster1", "sample", "sleep")
	dialSecure := func(addr string) *adsclient.Client {
		c, err := adsclient.DialWith(addr, node, grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{
			RootCAs: roots, ServerName: "localhost", Certificates: []tls.Certificate{{Certificate: chain, PrivateKey: key}}})))
		must(t, err)
		t.Cleanup(c.Close)
		_ = c.Request(resource.ClusterType, nil, "", "", "")
		_ = c.Request(resource.EndpointType, []string{hw}, "", "", "")
		return c
	}
	fromA := dialSecure(aSecure)
	waitEDS(t, fromA, map[string]uint32{"10.1.0.5:5000": 1, "198.51.100.2:15443": 1})
	fromB := dialSecure(bSecure)
	waitEDS(t, fromB, map[string]uint32{"10.1.0.5:5000": 1, "198.51.100.2:15443": 1})

	// A stops: its proxy's stream ends with a status; reconnected to B it
	// gets the same resources A served.
	last := func(c *adsclient.Client, typ string) *discovery.DiscoveryResponse {
		r, err := c.Wait(typ, 10*time.Second, func(*discovery.DiscoveryResponse) bool { return true })
		must(t, err)
		return r
	}
	aCDS, aEDS := last(fromA, resource.ClusterType), last(fromA, resource.EndpointType)
	a.stop()
	waitFor(t, 10*time.Second, "A's stream to end", func() bool { return fromA.Err() != nil })
	again := dialSecure(bSecure)
	waitEDS(t, again, map[string]uint32{"10.1.0.5:5000": 1, "198.51.100.2:15443": 1})
	for _, pair := range [][2]*discovery.DiscoveryResponse{{aCDS, last(again, resource.ClusterType)}, {aEDS, last(again, resource.EndpointType)}} {
		if !sameResources(pair[0], pair[1]) {
			t.Errorf("%s from B differs from A's", pair[0].GetTypeUrl())
		}
	}
}

// sameResources compares two responses' resources, ignoring versions.
func sameResources(x, y *discovery.DiscoveryResponse) bool {
	if len(x.Resources) != len(y.Resources) {
		return false
	}
	set := func(r *discovery.DiscoveryResponse) map[string]bool {
		m := map[string]bool{}
		for _, a := range r.Resources {
			b, _ := proto.MarshalOptions{Deterministic: true}.Marshal(a)
			m[string(b)] = true
		}
		return m
	}
	xs, ys := set(x), set(y)
	for k := range xs {
		if _, ok := ys[k]; !ok {
			return false
		}
	}
	return true
}
