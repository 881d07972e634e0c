package bootstrap

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	securityv1alpha1 "istio.io/api/security/v1alpha1"

	"github.com/horizonmesh/horizon/internal/ca"
	"github.com/horizonmesh/horizon/internal/ca/catest"
	"github.com/horizonmesh/horizon/internal/controlplane"
	"github.com/horizonmesh/horizon/internal/testing/adsclient"
	"github.com/horizonmesh/horizon/internal/testing/testkit"
)

// secureDiscovery is a fresh discovery (stream counters from 1) serving
// the walkthrough's cluster1 on its TLS port.
type secureDiscovery struct {
	addr string
	xds  string // the plaintext port, when started with one
	ca   *ca.Authority
	cp   *controlplane.ControlPlane
}

// startSecureDiscovery runs discovery on the walkthrough manifests with a
// plug-in CA of files and the TLS port, and the plaintext xDS port too when
// asked; it returns once discovery is ready.
func startSecureDiscovery(t *testing.T, files catest.Files, plaintext bool) *secureDiscovery {
	t.Helper()
	dir := t.TempDir()
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	a, err := ca.LoadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	sl, _ := net.Listen("tcp", "127.0.0.1:0")
	hl, _ := net.Listen("tcp", "127.0.0.1:0")
	cfg := DefaultConfig()
	cfg.Clusters = []string{"cluster1=" + walkthrough + "/cluster1"}
	cfg.XDSAddr, cfg.HTTPAddr, cfg.SecureAddr, cfg.CACertsDir = "", hl.Addr().String(), sl.Addr().String(), dir
	cfg.SecureSANs = []string{"localhost", "127.0.0.1"}
	lis := &Listeners{HTTP: hl, Secure: sl}
	d := &secureDiscovery{addr: sl.Addr().String(), ca: a}
	if plaintext {
		xl, _ := net.Listen("tcp", "127.0.0.1:0")
		lis.XDS, cfg.XDSAddr, d.xds = xl, xl.Addr().String(), xl.Addr().String()
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	started := make(chan *controlplane.ControlPlane, 1)
	lis.Started = func(cp *controlplane.ControlPlane) { started <- cp }
	go func() {
		done <- Run(ctx, cfg, testkit.Logger(), lis)
	}()
	t.Cleanup(func() { cancel(); <-done }) //nolint:errcheck // its result is the test's own concern
	select {
	case d.cp = <-started:
	case err := <-done:
		t.Fatalf("discovery: %v", err)
	}
	testkit.WaitFor(t, "discovery ready", d.cp.Ready)
	return d
}

// workloadTLS returns TLS dial options with a mesh certificate for ns/sa
// (none when ns is ""), trusting the mesh root.
func workloadTLS(t *testing.T, a *ca.Authority, ns, sa string) grpc.DialOption {
	t.Helper()
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(a.RootPEM())
	cfg := &tls.Config{RootCAs: roots, ServerName: "localhost", MinVersion: tls.VersionTLS12}
	if ns != "" {
		key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		csrDER, _ := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
		leaf, err := a.SignWorkload(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: csrDER}), ca.Identity("cluster.local", ns, sa), time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		var chain [][]byte
		for _, p := range a.WorkloadChain(leaf) {
			b, _ := pem.Decode([]byte(p))
			chain = append(chain, b.Bytes)
		}
		cfg.Certificates = []tls.Certificate{{Certificate: chain, PrivateKey: key}}
	}
	return grpc.WithTransportCredentials(credentials.NewTLS(cfg))
}

func TestSecurePortChecksProxyIdentity(t *testing.T) {
	files, err := catest.New("mesh")
	if err != nil {
		t.Fatal(err)
	}
	d := startSecureDiscovery(t, files, false)
	addr, a := d.addr, d.ca
	tests := []struct {
		name           string
		certNS, certSA string
		nodeNS, nodeSA string
		code           codes.Code
	}{
		{"matching identity", "sample", "sleep", "sample", "sleep", codes.OK},
		{"node claims another service account", "sample", "sleep", "sample", "helloworld", codes.PermissionDenied},
		{"no client certificate", "", "", "sample", "sleep", codes.Unauthenticated},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := adsclient.DialWith(addr, adsclient.NodeWithIdentity("p."+tt.nodeNS, "", "cluster1", tt.nodeNS, tt.nodeSA),
				workloadTLS(t, a, tt.certNS, tt.certSA))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			_ = c.Request(resource.ClusterType, nil, "", "", "")
			_, err = c.Wait(resource.ClusterType, 5*time.Second, func(*discovery.DiscoveryResponse) bool { return true })
			if status.Code(err) != tt.code {
				t.Errorf("got %v, want %v", err, tt.code)
			}
		})
	}

	// A certificate from another root does not even complete the handshake.
	otherFiles, _ := catest.New("other")
	other, _ := ca.Load(otherFiles)
	opt := workloadTLS(t, other, "sample", "sleep")
	c, err := adsclient.DialWith(addr, adsclient.NodeWithIdentity("x", "", "", "sample", "sleep"), opt)
	if err == nil {
		_ = c.Request(resource.ClusterType, nil, "", "", "")
		if _, err = c.Wait(resource.ClusterType, 5*time.Second, func(*discovery.DiscoveryResponse) bool { return true }); err == nil {
			t.Error("a client of another root got config")
		}
		c.Close()
	}

	// The CSR service on the same port: a cluster it does not know is refused.
	conn, err := grpc.NewClient(addr, workloadTLS(t, a, "", ""))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx := metadata.NewOutgoingContext(context.Background(), metadata.Pairs("authorization", "Bearer x", ca.ClusterIDHeader, "cluster9"))
	_, err = securityv1alpha1.NewIstioCertificateServiceClient(conn).CreateCertificate(ctx, &securityv1alpha1.IstioCertificateRequest{Csr: "x"})
	if status.Code(err) != codes.Unauthenticated || !strings.Contains(err.Error(), "unknown cluster") {
		t.Errorf("CSR for an unknown cluster: %v", err)
	}
}

func TestBadCACertsRefuseToStart(t *testing.T) {
	files, _ := catest.New("mesh")
	other, _ := catest.New("other")
	files[ca.CAKeyFile] = other[ca.CAKeyFile]
	dir := t.TempDir()
	for name, b := range files {
		_ = os.WriteFile(filepath.Join(dir, name), b, 0o600)
	}
	cfg := DefaultConfig()
	cfg.Clusters = []string{"cluster1=" + walkthrough + "/cluster1"}
	cfg.CACertsDir, cfg.XDSAddr, cfg.HTTPAddr, cfg.SecureAddr = dir, "", "127.0.0.1:0", "127.0.0.1:0"
	err := Run(context.Background(), cfg, testkit.Logger(), nil)
	if err == nil || !strings.Contains(err.Error(), "does not match") {
		t.Fatalf("err = %v, want a key mismatch", err)
	}
}
