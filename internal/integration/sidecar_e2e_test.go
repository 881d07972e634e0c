//go:build integration

package integration

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/horizonmesh/horizon/internal/bootstrap"
	"github.com/horizonmesh/horizon/internal/ca"
	"github.com/horizonmesh/horizon/internal/ca/catest"
	"github.com/horizonmesh/horizon/internal/testing/kubeharness"
	"github.com/horizonmesh/horizon/internal/testing/netlab"
)

const proxyUID = 1337

// buildBinaries builds horizon (the CLI), horizon-discovery, horizon-agent
// and helloworld into a directory the proxy
// uid can read.
func buildBinaries(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "hz-e2e-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	must(t, os.Chmod(dir, 0o755))
	for _, b := range []string{"horizon", "horizon-discovery", "horizon-agent", "helloworld"} {
		if out, err := exec.Command("go", "build", "-o", filepath.Join(dir, b), "../../cmd/"+b).CombinedOutput(); err != nil {
			t.Fatalf("build %s: %v\n%s", b, err, out)
		}
	}
	return dir
}

// TestSidecarsMutualTLSEndToEnd is the secure-sidecars issue's end-to-end
// test on one network: sleep and two helloworld v1 pods, each in its own
// network namespace with capture, agent and the real Envoy; discovery and a
// real kube-apiserver hold the Pods, Services, EndpointSlices and
// ServiceAccounts.
func TestSidecarsMutualTLSEndToEnd(t *testing.T) {
	netlab.Require(t)
	envoy := envoyBinary(t)
	dir := buildBinaries(t)
	agent := filepath.Join(dir, "horizon-agent")

	// Network: 10.44.0.0/24 on one bridge; the test (discovery) at .254.
	lab := netlab.New(t, "hze", "10.44.0.1/24")
	lab.RootLink("10.44.0.254/24")
	const clusterIP = "10.96.0.50"
	hosts := clusterIP + " helloworld.sample helloworld.sample.svc.cluster.local"
	workloads := []struct{ name, ip, sa, version string }{
		{"sleep", "10.44.0.10", "sleep", ""},
		{"hw1", "10.44.0.11", "helloworld", "v1"},
		{"hw1b", "10.44.0.12", "helloworld", "v1"},
	}
	ns := map[string]string{}
	for _, w := range workloads {
		ns[w.name] = lab.Host(w.name, w.ip+"/24", "10.44.0.1", hosts)
	}

	// Kubernetes: the objects a controller-manager and kubelets would make.
	c1 := kubeharness.Start(t, kubeharness.Options{Name: "cluster1"})
	namespace(t, c1, "istio-system", nil)
	namespace(t, c1, "sample", nil)
	files, err := catest.New("mesh")
	must(t, err)
	installCACerts(t, c1, files)
	_, err = c1.Client.CoreV1().Services("sample").Create(ctx, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "helloworld", Namespace: "sample"},
		Spec: corev1.ServiceSpec{ClusterIP: clusterIP, Ports: []corev1.ServicePort{{Name: "http", Port: 5000}}, Selector: map[string]string{"app": "helloworld"}}}, metav1.CreateOptions{})
	must(t, err)
	slice := &discoveryv1.EndpointSlice{ObjectMeta: metav1.ObjectMeta{Name: "helloworld-1", Namespace: "sample",
		Labels: map[string]string{"kubernetes.io/service-name": "helloworld"}}, AddressType: discoveryv1.AddressTypeIPv4,
		Ports: []discoveryv1.EndpointPort{{Name: ptr.To("http"), Port: ptr.To[int32](5000)}}}
	for _, w := range workloads {
		must(t, createSA(c1, "sample", w.sa))
		p, err := c1.Client.CoreV1().Pods("sample").Create(ctx, &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: w.name, Namespace: "sample", Labels: map[string]string{"app": map[bool]string{true: "helloworld", false: "sleep"}[w.version != ""], "security.istio.io/tlsMode": "istio"}},
			Spec:       corev1.PodSpec{ServiceAccountName: w.sa, Containers: []corev1.Container{{Name: "app", Image: "x"}}}}, metav1.CreateOptions{})
		must(t, err)
		p.Status.PodIP = w.ip
		_, err = c1.Client.CoreV1().Pods("sample").UpdateStatus(ctx, p, metav1.UpdateOptions{})
		must(t, err)
		if w.version != "" {
			slice.Endpoints = append(slice.Endpoints, discoveryv1.Endpoint{Addresses: []string{w.ip},
				Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)}, TargetRef: &corev1.ObjectReference{Kind: "Pod", Namespace: "sample", Name: w.name}})
		}
	}
	_, err = c1.Client.DiscoveryV1().EndpointSlices("sample").Create(ctx, slice, metav1.CreateOptions{})
	must(t, err)

	// Discovery, TLS only, on the lab's root address; STRICT mTLS by
	// default (PERMISSIVE, the default default, is
	// TestPeerAuthenticationEndToEnd's).
	d := startDiscoveryWith(t, c1, nil, true, func(c *bootstrap.Config) {
		c.SecureAddr, c.SecureSANs, c.XDSAddr = "10.44.0.254:15012", []string{"10.44.0.254"}, ""
		c.DefaultMTLSMode = "STRICT"
	})

	rootFile := filepath.Join(dir, "root-cert.pem")
	must(t, os.WriteFile(rootFile, files[ca.RootCertFile], 0o644))
	for _, w := range workloads {
		work := filepath.Join(dir, w.name)
		must(t, os.MkdirAll(work, 0o755))
		tokenFile := filepath.Join(dir, w.name+".token")
		must(t, os.WriteFile(tokenFile, []byte(token(t, c1, "sample", w.sa, "istio-ca")), 0o644))
		must(t, os.Chown(work, proxyUID, proxyUID))
		lab.In(ns[w.name], agent, "agent", "iptables", "--proxy-uid", fmt.Sprint(proxyUID))
		if w.version != "" {
			lab.Start(ns[w.name], 0, filepath.Join(dir, w.name+".app.log"), filepath.Join(dir, "helloworld"), "-version", w.version, "-instance", w.name)
		}
		lab.Start(ns[w.name], proxyUID, filepath.Join(dir, w.name+".agent.log"), agent, "agent",
			"--namespace", "sample", "--service-account", w.sa, "--cluster-id", "cluster1", "--ip", w.ip,
			"--label", "app="+w.name, "--discovery-address", "10.44.0.254:15012", "--root-cert", rootFile,
			"--token-file", tokenFile, "--envoy-path", envoy, "--work-dir", work, "--drain", "1s")
	}
	t.Cleanup(func() {
		if t.Failed() {
			for _, w := range workloads {
				t.Logf("--- %s agent log:\n%s\n--- %s envoy log:\n%s", w.name, tail(filepath.Join(dir, w.name+".agent.log")),
					w.name, tail(filepath.Join(dir, w.name, "envoy.log")))
			}
		}
	})
	admin := func(w, path string) string {
		out, _ := lab.Try(ns[w], 0, "curl", "-s", "-m", "2", "http://127.0.0.1:15000"+path)
		return out
	}
	for _, w := range workloads {
		waitFor(t, 60*time.Second, w.name+"'s Envoy to get its config", func() bool {
			ok := strings.Contains(admin(w.name, "/clusters"), "outbound|5000||helloworld.sample.svc.cluster.local::10.44.0.12:5000")
			if w.version != "" { // serving pods get an inbound listener
				ok = ok && strings.Contains(admin(w.name, "/listeners"), "virtualInbound")
			}
			return ok
		})
	}
	// The kubelet's readiness probe (from outside the pod, not captured:
	// here the proxy uid from sleep's namespace) reaches each agent's
	// status port past inbound capture: ready, as Envoy has its config.
	for _, w := range workloads {
		out, err := lab.Try(ns["sleep"], proxyUID, "curl", "-s", "-f", "-m", "3", "http://"+w.ip+":15021/healthz/ready")
		if err != nil || strings.TrimSpace(out) != "ready" {
			t.Errorf("%s's readiness: %q, %v; want 200 ready", w.name, out, err)
		}
	}
	if dump := admin("sleep", "/config_dump"); !strings.Contains(dump, "dynamic_listeners") || !strings.Contains(dump, "dynamic_active_clusters") {
		t.Errorf("sleep's listeners and clusters are not dynamic (from ADS)")
	}

	// 20 requests from sleep through its sidecar, mTLS to either pod.
	seen := map[string]int{}
	for i := range 20 {
		out, err := lab.Try(ns["sleep"], 0, "curl", "-s", "-f", "-m", "5", "http://helloworld.sample:5000/hello")
		if err != nil {
			t.Fatalf("request %d: %v: %s\n%s", i, err, out, tail(filepath.Join(dir, "sleep", "envoy.log")))
		}
		seen[strings.TrimSpace(out)]++
	}
	t.Logf("answers over 20 requests: %v", seen)
	if seen["Hello version: v1, instance: hw1"] == 0 || seen["Hello version: v1, instance: hw1b"] == 0 {
		t.Errorf("answers: %v; want both pods", seen)
	}
	sleepLog := tail(filepath.Join(dir, "sleep", "envoy.log"))
	if lines := strings.Split(strings.TrimSpace(sleepLog), "\n"); len(lines) > 0 {
		t.Logf("sleep's access log, last line: %s", lines[len(lines)-1])
	}
	if !strings.Contains(sleepLog, "downstream_local="+clusterIP+":5000") || !strings.Contains(sleepLog, "upstream_host=10.44.0.1") {
		t.Errorf("sleep's access log should show the ClusterIP as local address (capture) and a pod as upstream:\n%s", sleepLog)
	}
	if hwLog := tail(filepath.Join(dir, "hw1", "envoy.log")) + tail(filepath.Join(dir, "hw1b", "envoy.log")); !strings.Contains(hwLog, "peer_san=spiffe://cluster.local/ns/sample/sa/sleep") {
		t.Errorf("helloworld's inbound log should show sleep's identity:\n%s", hwLog)
	}
	// A client without a mesh certificate (the proxy uid is not captured,
	// so this is plain HTTP to the pod) is refused by the pod's sidecar
	// (STRICT).
	if out, err := lab.Try(ns["sleep"], proxyUID, "curl", "-s", "-f", "-m", "3", "http://10.44.0.11:5000/hello"); err == nil {
		t.Errorf("a plaintext client was answered: %s", out)
	}
	if syncz := d.get(t, "/debug/syncz"); strings.Contains(syncz, "lastNACK") {
		t.Errorf("a proxy rejected config:\n%s", syncz)
	}
}

func tail(path string) string {
	b, _ := os.ReadFile(path)
	s := string(b)
	if len(s) > 4000 {
		s = s[len(s)-4000:]
	}
	return s
}
