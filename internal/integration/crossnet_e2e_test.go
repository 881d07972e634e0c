//go:build integration

package integration

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/horizonmesh/horizon/internal/ca"
	"github.com/horizonmesh/horizon/internal/ca/catest"
	"github.com/horizonmesh/horizon/internal/testing/kubeharness"
)

// identityFiles writes a workload certificate for sample/sleep signed by
// the CA of files, readable by the proxy uid.
func identityFiles(t *testing.T, dir, name string, files catest.Files) (certFile, keyFile string) {
	t.Helper()
	other, err := ca.Load(files)
	must(t, err)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	must(t, err)
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
	must(t, err)
	leaf, err := other.SignWorkload(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: csr}), ca.Identity("cluster.local", "sample", "sleep"), time.Hour)
	must(t, err)
	kder, err := x509.MarshalECPrivateKey(key)
	must(t, err)
	certFile, keyFile = filepath.Join(dir, name+".pem"), filepath.Join(dir, name+".key")
	must(t, os.WriteFile(certFile, []byte(strings.Join(other.WorkloadChain(leaf), "")), 0o644))
	must(t, os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o644))
	return certFile, keyFile
}

func podWith(t *testing.T, c *kubeharness.Cluster, ns, name, ip, sa string, labels map[string]string) {
	t.Helper()
	podOnNode(t, c, ns, name, ip, sa, "", labels)
}

// podOnNode is podWith scheduled on a node (whose Node object, if any,
// gives the pod's locality).
func podOnNode(t *testing.T, c *kubeharness.Cluster, ns, name, ip, sa, node string, labels map[string]string) {
	t.Helper()
	l := map[string]string{"security.istio.io/tlsMode": "istio"}
	for k, v := range labels {
		l[k] = v
	}
	createPod(t, c, ns, name, ip, sa, node, l)
}

func serviceWith(t *testing.T, c *kubeharness.Cluster, ns, name, clusterIP, portName string, port int32, labels map[string]string, lb string) {
	t.Helper()
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: labels},
		Spec: corev1.ServiceSpec{ClusterIP: clusterIP, Ports: []corev1.ServicePort{{Name: portName, Port: port}}}}
	if lb != "" {
		svc.Spec.Type = corev1.ServiceTypeLoadBalancer
	}
	created, err := c.Client.CoreV1().Services(ns).Create(ctx, svc, metav1.CreateOptions{})
	must(t, err)
	if lb != "" {
		created.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: lb}}
		_, err = c.Client.CoreV1().Services(ns).UpdateStatus(ctx, created, metav1.UpdateOptions{})
		must(t, err)
	}
}

// endpoints writes a Service's EndpointSlice: pod name → IP on port.
func endpoints(t *testing.T, c *kubeharness.Cluster, ns, svc, portName string, port int32, pods map[string]string) {
	t.Helper()
	endpointSlice(t, c, ns, svc, []corev1.ServicePort{{Name: portName, Port: port}}, pods)
}

// TestAcrossIsolatedNetworks is the walkthrough for real: network1
// (cluster1, with discovery) and network2 (cluster2) share no route to each
// other's pods; sidecars talk mTLS end to end through the other network's
// gateway, which routes on SNI without decrypting; cluster2's proxies reach
// discovery only through cluster1's gateway.
func TestAcrossIsolatedNetworks(t *testing.T) {
	x := startCrossnet(t, crossnetOptions{Prefix: "hzx", Net1: "10.1.0", Net2: "10.2.0"})
	lab, ns, dir, hello, files, c2, d := x.lab, x.ns, x.dir, x.hello, x.files, x.c2, x.d
	const clusterIP = crossnetClusterIP
	admin := x.admin

	call := x.call
	// 1. From network1: v1 locally, v2 through cluster2's gateway.
	seen := map[string]int{}
	for i := range 40 {
		out, err := call("sleep1")
		if err != nil {
			t.Fatalf("request %d: %v %s", i, err, out)
		}
		seen[out]++
	}
	t.Logf("sleep1 (network1), 40 requests: %v", seen)
	if seen["Hello version: v1, instance: hw1"] < 10 || seen["Hello version: v2, instance: hw2"] < 10 {
		t.Errorf("want v1 and v2 at least 10 times each: %v", seen)
	}
	log1 := tail(filepath.Join(dir, "sleep1", "envoy.log"))
	for _, line := range strings.Split(strings.TrimSpace(log1), "\n") {
		if !strings.Contains(line, "GET /hello") {
			continue
		}
		if !strings.Contains(line, "downstream_local="+clusterIP+":5000") ||
			!(strings.Contains(line, "upstream_host=203.0.113.20:15443") || strings.Contains(line, "upstream_host=10.1.0.11:5000")) {
			t.Errorf("sleep1 access log line: %s", line)
		}
	}
	// 2. v2's inbound log shows sleep's identity: mTLS end to end.
	if l := tail(filepath.Join(dir, "hw2", "envoy.log")); !strings.Contains(l, "peer_san=spiffe://cluster.local/ns/sample/sa/sleep") {
		t.Errorf("hw2's inbound log lacks sleep's identity:\n%s", l)
	}
	// 3. No direct route from network1 to the v2 pod.
	if out, err := lab.Try(ns["sleep1"], proxyUID, "curl", "-s", "-m", "3", "http://10.2.0.11:5000/hello"); err == nil {
		t.Errorf("network1 reached the v2 pod directly: %s", out)
	}
	// 4. Symmetric: from network2, v1 answers through cluster1's gateway.
	seen = map[string]int{}
	for range 20 {
		out, err := call("sleep2")
		if err != nil {
			t.Fatalf("from sleep2: %v %s", err, out)
		}
		seen[out]++
	}
	t.Logf("sleep2 (network2), 20 requests: %v", seen)
	if seen["Hello version: v1, instance: hw1"] == 0 {
		t.Errorf("v1 never answered network2: %v", seen)
	}
	// 5. Without a mesh certificate, a valid SNI reaches no v2; an unknown
	// SNI is closed by the gateway.
	otherFiles, err := catest.New("other-mesh")
	must(t, err)
	otherCert, otherKey := identityFiles(t, dir, "foreign", otherFiles)
	// Control: the same probe with a certificate of this mesh is answered
	// by v2 — so the refusals below are the mesh's doing, not the network's.
	meshCert, meshKey := identityFiles(t, dir, "mesh-sleep", files)
	if out, err := lab.Try(ns["sleep1"], proxyUID, hello, "-probe", "203.0.113.20:15443", "-sni", hwSNI, "-cert", meshCert, "-key", meshKey); err != nil || !strings.Contains(out, "Hello version: v2") {
		t.Errorf("a mesh client through the gateway was not answered by v2: %v %s", err, out)
	}
	for _, probe := range [][]string{
		{"-sni", hwSNI},
		{"-sni", hwSNI, "-cert", otherCert, "-key", otherKey}, // a certificate from another root
		{"-sni", "outbound_.5000_._.unknown.sample.svc.cluster.local"},
	} {
		args := append([]string{hello, "-probe", "203.0.113.20:15443"}, probe...)
		if out, err := lab.Try(ns["sleep1"], proxyUID, args...); err == nil || strings.Contains(out, "Hello") {
			t.Errorf("probe %v answered: %s", probe, out)
		}
	}
	// 6. The gateway's passthrough chains carry no TLS context.
	listeners := admin("gw2", "/config_dump?resource=dynamic_listeners")
	if !strings.Contains(listeners, `"outbound_.5000_._.helloworld.sample.svc.cluster.local"`) || strings.Contains(listeners, "transport_socket") {
		t.Errorf("gw2's passthrough chains should exist and carry no TLS context:\n%.3000s", listeners)
	}
	if syncz := d.get(t, "/debug/syncz"); strings.Contains(syncz, "lastNACK") {
		t.Errorf("a proxy rejected config:\n%s", syncz)
	}
	// 7. Scale v2 to zero: every answer from v1; back to one: v2 again.
	begin := time.Now()
	endpoints(t, c2, "sample", "helloworld", "http", 5000, nil)
	// Converged = the start of the first run of 10 answers, all from v1
	// (v1 answers about half the time before, so one v1 answer proves
	// nothing); failures before that are counted, not fatal.
	var converged time.Duration
	var streakStart time.Time
	failures := 0
	for streak := 0; streak < 10; {
		at := time.Now()
		out, err := call("sleep1")
		switch {
		case err == nil && strings.Contains(out, "v1"):
			if streak == 0 {
				streakStart = at
			}
			streak++
		default:
			if err != nil {
				failures++
			}
			streak = 0
		}
		if time.Since(begin) > 30*time.Second {
			t.Fatal("did not converge to v1 only")
		}
	}
	converged = streakStart.Sub(begin)
	for i := range 20 {
		if out, err := call("sleep1"); err != nil || !strings.Contains(out, "v1") {
			t.Errorf("after scaling v2 to zero, request %d: %v %s", i, err, out)
		}
	}
	t.Logf("scale v2 to zero: only v1 answers from %s after the EndpointSlice write (%d failed requests while converging)", converged.Round(time.Millisecond), failures)
	endpoints(t, c2, "sample", "helloworld", "http", 5000, map[string]string{"hw2": "10.2.0.11"})
	waitFor(t, 30*time.Second, "v2 to answer again", func() bool {
		out, _ := call("sleep1")
		return strings.Contains(out, "v2")
	})
	// 8. cluster2's sidecars got config and certificates through cluster1's
	// gateway (they have no other way to discovery).
	for _, w := range []string{"hw2", "sleep2", "gw2"} {
		if a := tail(filepath.Join(dir, w+".agent.log")); !strings.Contains(a, "workload certificate") {
			t.Errorf("%s has no certificate:\n%s", w, a)
		}
	}
}
