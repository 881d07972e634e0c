//go:build integration

package integration

import (
	"bytes"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/horizonmesh/horizon/internal/bootstrap"
	"github.com/horizonmesh/horizon/internal/ca"
	"github.com/horizonmesh/horizon/internal/ca/catest"
	"github.com/horizonmesh/horizon/internal/k8sproc"
	"github.com/horizonmesh/horizon/internal/testing/kubeharness"
)

// pilotAgentBinary is Istio's own pilot-agent (scripts/istiod.sh
// pilot-agent); see istioBinary.
func pilotAgentBinary(t *testing.T) string {
	t.Helper()
	return istioBinary(t, "HORIZON_PILOT_AGENT", "pilot-agent")
}

// istioBinary is the Istio binary name that environment variable env
// names, built unmodified from the istio.io/istio pinned in tools/istiod
// (scripts/istiod.sh name); without it the test is skipped locally and
// fails under CI=true or HORIZON_REQUIRE_E2E=1 (what `make integration`
// sets).
func istioBinary(t *testing.T, env, name string) string {
	t.Helper()
	p := os.Getenv(env)
	if _, err := os.Stat(p); p == "" || err != nil {
		msg := env + " is not set to Istio's " + name + ": run " +
			"`export " + env + "=$(scripts/istiod.sh " + name + " | tail -1)/" + name + "` (or `make integration`)"
		if kubeharness.Required() {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	return p
}

// TestIstioAgentGetsItsCertificateFromHorizon: Istio's pilot-agent, as an
// injected Istio sidecar runs it (the istio-token TokenRequest token with
// audience istio-ca, the istio-ca-root-cert root, ISTIO_META_CLUSTER_ID,
// the discovery address the istiod Service would give, its own RSA key and
// CSR), obtains its workload certificate from `horizon-discovery discovery`'s CA with
// nothing changed on either side: Horizon's default serving certificate
// carries istiod.istio-system.svc, the name the agent checks; the agent's
// ClusterID header (or none: an empty one means the local cluster, as for
// istiod) and bearer token are accepted, checked by a real TokenReview; the
// certificate names only the token's service account and chains to the
// mesh root.
func TestIstioAgentGetsItsCertificateFromHorizon(t *testing.T) {
	agent := pilotAgentBinary(t)
	c1, files := istioSampleCluster(t)
	must(t, createSA(c1, "sample", "sleep"))
	ports, err := k8sproc.FreePorts(1)
	must(t, err)
	secure := "127.0.0.1:" + strconv.Itoa(ports[0])
	// The TLS port's SANs are left at their defaults: what a user who
	// points the istiod name at Horizon gets.
	start := time.Now()
	startDiscoveryWith(t, c1, nil, true, func(c *bootstrap.Config) { c.SecureAddr = secure })
	t.Logf("discovery ready in %s", time.Since(start).Round(time.Millisecond))

	for _, tt := range []struct{ name, clusterID string }{
		{"ISTIO_META_CLUSTER_ID=cluster1", "cluster1"},
		// Without it the agent sends an empty ClusterID, which istiod (and
		// Horizon) take for the local cluster.
		{"no ISTIO_META_CLUSTER_ID", ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			chainPEM, keyPEM, rootPEM := runIstioAgent(t, agent, ports[0], tt.clusterID,
				token(t, c1, "sample", "sleep", "istio-ca"), files[ca.RootCertFile])
			checkAgentCert(t, chainPEM, keyPEM, rootPEM, files[ca.RootCertFile])
		})
	}
}

// istioSampleCluster starts cluster1 with namespaces istio-system and
// sample and the mesh's CA certificates (cacerts) installed, where each
// Istio test begins.
func istioSampleCluster(t *testing.T) (*kubeharness.Cluster, catest.Files) {
	t.Helper()
	c1 := kubeharness.Start(t, kubeharness.Options{Name: "cluster1"})
	namespace(t, c1, "istio-system", nil)
	namespace(t, c1, "sample", nil)
	files, err := catest.New("mesh")
	must(t, err)
	installCACerts(t, c1, files)
	return c1, files
}

// runIstioAgent runs pilot-agent as an Istio-injected sleep pod in
// namespace sample would, with CA and discovery at localhost:port, until it
// has written its workload certificate, key and root (OUTPUT_CERTS).
func runIstioAgent(t *testing.T, agent string, port int, clusterID, token string, root []byte) (chainPEM, keyPEM, rootPEM []byte) {
	t.Helper()
	// What an Istio-injected pod mounts, relative to the agent's working
	// directory (pilot-agent reads ./var/run/secrets/...).
	work := t.TempDir()
	istioPodFiles(t, work, token, root)
	out := filepath.Join(work, "out")
	must(t, os.Mkdir(out, 0o700)) // OUTPUT_CERTS writes into it, does not make it

	// The discovery address is "localhost:PORT", for which pilot-agent
	// checks the name istiod.istio-system.svc (as for an in-cluster istiod);
	// CA_ADDR is left unset, so the CA is the discovery address, as in a
	// default Istio install.
	status, err := k8sproc.FreePorts(1)
	must(t, err)
	proxyConfig, err := json.Marshal(map[string]any{
		"discoveryAddress": "localhost:" + strconv.Itoa(port),
		"statusPort":       status[0],
	})
	must(t, err)
	logPath := filepath.Join(work, "pilot-agent.log")
	logFile, err := os.Create(logPath)
	must(t, err)
	defer logFile.Close()
	cmd := exec.Command(agent, "proxy", "sidecar")
	cmd.Dir = work
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.Env = []string{
		"PATH=" + os.Getenv("PATH"), "HOME=" + work,
		"PROXY_CONFIG=" + string(proxyConfig),
		"POD_NAME=sleep-0", "POD_NAMESPACE=sample", "SERVICE_ACCOUNT=sleep", "INSTANCE_IP=127.0.0.1",
		"JWT_POLICY=third-party-jwt",
		// No Envoy: the agent still fetches (and renews) its workload
		// certificate at start, and OUTPUT_CERTS writes it out.
		"DISABLE_ENVOY=true",
		"OUTPUT_CERTS=" + out,
	}
	if clusterID != "" {
		cmd.Env = append(cmd.Env, "ISTIO_META_CLUSTER_ID="+clusterID)
	}
	agentStart := time.Now()
	must(t, cmd.Start())
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() { stopPilotAgent(t, cmd, exited, logPath, 60) })

	// The agent writes key.pem, cert-chain.pem, then root-cert.pem, each
	// atomically: wait until all three are there and the key is the
	// certificate's.
	waitFor(t, 60*time.Second, "pilot-agent's certificate in "+out, func() bool {
		select {
		case err := <-exited:
			exited <- err
			t.Fatalf("pilot-agent exited before it had a certificate: %v", err)
		default:
		}
		read := func(name string) []byte { b, _ := os.ReadFile(filepath.Join(out, name)); return b }
		keyPEM, chainPEM, rootPEM = read("key.pem"), read("cert-chain.pem"), read("root-cert.pem")
		_, err := tls.X509KeyPair(chainPEM, keyPEM)
		return err == nil && len(rootPEM) > 0
	})
	t.Logf("pilot-agent had its certificate %s after it started", time.Since(agentStart).Round(time.Millisecond))
	return chainPEM, keyPEM, rootPEM
}

// istioPodFiles writes into dir what an Istio-injected pod mounts there
// (pilot-agent reads ./var/run/secrets/... from its working directory):
// the istio-token token and the istio-ca-root-cert root. write adds a file
// below dir the same way.
func istioPodFiles(t *testing.T, dir, token string, root []byte) (write func(rel string, data []byte)) {
	t.Helper()
	write = func(rel string, data []byte) {
		p := filepath.Join(dir, rel)
		must(t, os.MkdirAll(filepath.Dir(p), 0o755))
		must(t, os.WriteFile(p, data, 0o600))
	}
	write("var/run/secrets/tokens/istio-token", []byte(token))
	write("var/run/secrets/istio/root-cert.pem", root)
	return write
}

// stopPilotAgent stops the pilot-agent cmd runs, whose Wait's result
// exited receives: SIGTERM, then a kill if it has not exited within 10 s;
// if t has failed, it logs the last n lines of the agent's log at logPath.
func stopPilotAgent(t *testing.T, cmd *exec.Cmd, exited chan error, logPath string, n int) {
	_ = cmd.Process.Signal(syscall.SIGTERM)
	var exit error
	select {
	case exit = <-exited:
	case <-time.After(10 * time.Second):
		_ = cmd.Process.Kill()
		exit = <-exited
	}
	if t.Failed() {
		b, _ := os.ReadFile(logPath)
		t.Logf("pilot-agent (exit: %v) log:\n%s", exit, lastLines(b, n))
	}
}

// checkAgentCert: the agent's certificate names only sample/sleep, is for
// its RSA key, chains to the mesh root, and its root-cert.pem is that root.
func checkAgentCert(t *testing.T, chainPEM, keyPEM, rootPEM, meshRoot []byte) {
	t.Helper()
	chain := certs(t, chainPEM)
	leaf := chain[0]
	if len(leaf.URIs) != 1 || leaf.URIs[0].String() != "spiffe://cluster.local/ns/sample/sa/sleep" {
		t.Errorf("URI SANs %v, want only spiffe://cluster.local/ns/sample/sa/sleep", leaf.URIs)
	}
	pair, err := tls.X509KeyPair(chainPEM, keyPEM)
	must(t, err)
	if _, ok := pair.PrivateKey.(*rsa.PrivateKey); !ok {
		t.Errorf("the agent's key is %T; Istio's default is RSA (the CSR this test is about)", pair.PrivateKey)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(meshRoot)
	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth}}); err != nil {
		t.Errorf("the agent's certificate does not chain to Horizon's root: %v", err)
	}
	if got := certs(t, rootPEM); !got[len(got)-1].Equal(certs(t, meshRoot)[0]) {
		t.Errorf("the agent's root-cert.pem is %s, not the mesh root", got[len(got)-1].Subject)
	}
}

func certs(t *testing.T, b []byte) []*x509.Certificate {
	t.Helper()
	var out []*x509.Certificate
	for {
		var block *pem.Block
		if block, b = pem.Decode(b); block == nil {
			break
		}
		c, err := x509.ParseCertificate(block.Bytes)
		must(t, err)
		out = append(out, c)
	}
	if len(out) == 0 {
		t.Fatal(errors.New("no PEM certificate"))
	}
	return out
}

func lastLines(b []byte, n int) []byte {
	lines := bytes.Split(bytes.TrimRight(b, "\n"), []byte("\n"))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return bytes.Join(lines, []byte("\n"))
}
