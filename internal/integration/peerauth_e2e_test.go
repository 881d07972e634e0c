//go:build integration

package integration

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
)

// TestPeerAuthenticationEndToEnd: real PeerAuthentication objects on a
// real kube-apiserver decide how a workload's sidecar (agent, real Envoy,
// capture) takes inbound connections. web serves HTTP on 5000, TCP on
// 9000, and HTTPS with its own certificate on 8443 (an `https` port);
// sleep is in the mesh (sidecar); outsider is a bare process in its own
// network namespace, not in the mesh (no sidecar, no capture).
//   - no policy (the default, PERMISSIVE): outsider reaches all three
//     ports, 5000 and 9000 in plaintext and 8443 with TLS to web's own
//     certificate (passed through, not terminated, by web's sidecar);
//     sleep reaches all three over mTLS (its identity in web's log), on
//     8443 web's own TLS inside the mesh's;
//   - namespace policy STRICT: outsider is refused on all three; sleep
//     still gets through over mTLS;
//   - plus a workload policy with port 9000 DISABLE: outsider reaches 9000
//     (not 5000); sleep reaches 9000 too, sent plaintext by its sidecar
//     (auto mTLS respects DISABLE: there is no mTLS chain left there).
func TestPeerAuthenticationEndToEnd(t *testing.T) {
	const clusterIP, webIP = "10.96.0.60", "10.45.0.11"
	m := startMeshPods(t, "hzp", "10.45.0", clusterIP+" web.sample web.sample.svc.cluster.local", []meshPod{
		{name: "sleep", ip: "10.45.0.10", sa: "sleep"},
		{name: "web", ip: webIP, sa: "web"},
	})
	m.host("outsider", "10.45.0.20")
	applyIstioCRDs(t, m.c1) // before discovery: it watches what the API server serves
	waitFor(t, 30*time.Second, "security.istio.io/v1 to be served", func() bool {
		_, err := m.c1.Client.Discovery().ServerResourcesForGroupVersion("security.istio.io/v1")
		return err == nil
	})
	m.service("web", clusterIP, []corev1.ServicePort{{Name: "http", Port: 5000}, {Name: "tcp", Port: 9000}, {Name: "https", Port: 8443}}, "web")
	appCA, appCert, appKey := appTLSFiles(t, "web.sample")

	// Discovery as installed: the default mode, PERMISSIVE.
	m.startDiscovery(nil)
	m.startSidecar("sleep")
	m.startSidecar("web")
	for _, port := range []string{"5000", "9000"} {
		m.startApp("web", "web."+port+".log", "-addr", ":"+port, "-version", "v1", "-instance", "web-"+port)
	}
	m.startApp("web", "web.8443.log", "-addr", ":8443", "-version", "v1", "-instance", "web-8443", "-tls-cert", appCert, "-tls-key", appKey)
	waitFor(t, 60*time.Second, "both Envoys to get their config", func() bool {
		return strings.Contains(m.admin("sleep", "/clusters"), "outbound|9000||web.sample.svc.cluster.local::"+webIP+":9000") &&
			strings.Contains(m.admin("web", "/listeners"), "virtualInbound")
	})

	// get fetches /hello from a port as a client: the outsider straight to
	// the pod, sleep by the Service name through its sidecar.
	// On 8443 curl speaks TLS and verifies web's own certificate (only the
	// app holds its key): the TLS is the app's end to end.
	get := func(from, port string) (string, error) {
		if port == "8443" {
			args := []string{"curl", "-s", "-f", "-m", "5", "--cacert", appCA}
			if from == "outsider" {
				args = append(args, "--resolve", "web.sample:8443:"+webIP)
			}
			return m.lab.Try(m.ns[from], 0, append(args, "https://web.sample:8443/hello")...)
		}
		url := "http://web.sample:" + port + "/hello"
		if from == "outsider" {
			url = "http://" + webIP + ":" + port + "/hello"
		}
		return m.call(from, url)
	}
	reaches := func(from, port string) bool {
		out, err := get(from, port)
		return err == nil && strings.Contains(out, "instance: web-"+port)
	}
	// meshedTLS checks that sleep reaches port over mTLS: web's inbound
	// access log names sleep's identity for a connection to that port.
	identity := "peer_san=spiffe://cluster.local/ns/sample/sa/sleep"
	logged := func(port string) int {
		return strings.Count(m.envoyLog("web"), "downstream_local="+webIP+":"+port+" "+identity)
	}
	meshedTLS := func(phase, port string) {
		t.Helper()
		before := logged(port)
		if out, err := get("sleep", port); err != nil || !strings.Contains(out, "instance: web-"+port) {
			t.Fatalf("%s: sleep to %s: %v %q", phase, port, err, out)
		}
		waitFor(t, 10*time.Second, phase+": web's log of sleep's mTLS connection to "+port, func() bool { return logged(port) > before })
	}

	// PERMISSIVE (no policy): both clients on every port.
	for _, port := range []string{"5000", "9000", "8443"} {
		waitFor(t, 30*time.Second, "PERMISSIVE: the outsider's plaintext to "+port, func() bool { return reaches("outsider", port) })
		meshedTLS("PERMISSIVE", port)
	}

	// STRICT for the namespace, by a real PeerAuthentication.
	applyObject(t, m.c1, "peerauthentications", `apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: sample}
spec: {mtls: {mode: STRICT}}
`)
	for _, port := range []string{"5000", "9000", "8443"} {
		waitFor(t, 30*time.Second, "STRICT: the outsider refused on "+port, func() bool { return !reaches("outsider", port) })
		meshedTLS("STRICT", port)
	}

	// Port 9000 of web DISABLE: plaintext for everyone there, sleep's
	// sidecar included; 5000 stays STRICT.
	applyObject(t, m.c1, "peerauthentications", `apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: web, namespace: sample}
spec:
  selector: {matchLabels: {app: web}}
  portLevelMtls:
    9000: {mode: DISABLE}
`)
	waitFor(t, 30*time.Second, "DISABLE: the outsider's plaintext to 9000", func() bool { return reaches("outsider", "9000") })
	// Until its EDS drops the endpoint's tlsMode, sleep's sidecar speaks
	// mTLS to a port with no mTLS chain left, and fails.
	waitFor(t, 30*time.Second, "DISABLE: sleep's sidecar to send 9000 plaintext", func() bool { return reaches("sleep", "9000") })
	if reaches("outsider", "5000") {
		t.Error("DISABLE on 9000: the outsider reached the STRICT port 5000")
	}
	meshedTLS("STRICT beside DISABLE", "5000")
}

// appTLSFiles writes an application's own TLS files for name: a CA
// certificate, and a server certificate it signed with its key; their
// paths.
func appTLSFiles(t *testing.T, name string) (caFile, certFile, keyFile string) {
	t.Helper()
	dir := t.TempDir()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	must(t, err)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "app CA"}, IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour)}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	must(t, err)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	must(t, err)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: name}, DNSNames: []string{name},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caTmpl, &key.PublicKey, caKey)
	must(t, err)
	keyDER, err := x509.MarshalECPrivateKey(key)
	must(t, err)
	caFile, certFile, keyFile = filepath.Join(dir, "app-ca.pem"), filepath.Join(dir, "app.pem"), filepath.Join(dir, "app-key.pem")
	must(t, os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), 0o644))
	must(t, os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644))
	must(t, os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600))
	return caFile, certFile, keyFile
}
