//go:build integration

package integration

import (
	"fmt"
	"os"
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

// TestBareNamesAndHeadlessPodsEndToEnd: a sidecar (sleep, namespace
// sample) calls
//   - http://web:5000 by its bare name: routed through the mesh to web's
//     pod (mTLS: web's inbound log shows sleep's identity);
//   - a headless service's pods by their IPs: db-0, which has a sidecar,
//     over mTLS (its inbound log shows sleep's identity), always db-0,
//     never another pod of the service; db-1, which has none, in
//     plaintext, always db-1.
//
// Each workload runs in its own network namespace with the real Envoy;
// discovery and a real kube-apiserver hold the objects.
func TestBareNamesAndHeadlessPodsEndToEnd(t *testing.T) {
	netlab.Require(t)
	envoy := envoyBinary(t)
	dir := buildBinaries(t)
	agent := filepath.Join(dir, "horizon-agent")

	lab := netlab.New(t, "hzn", "10.48.0.1/24")
	lab.RootLink("10.48.0.254/24")
	const webIP = "10.96.0.60"
	workloads := []struct {
		name, ip, sa, svc string
		sidecar           bool
	}{
		{"sleep", "10.48.0.10", "sleep", "", true},
		{"web-0", "10.48.0.11", "web", "web", true},
		{"db-0", "10.48.0.20", "db", "db", true},
		{"db-1", "10.48.0.21", "db", "db", false},
	}
	ns := map[string]string{}
	for _, w := range workloads {
		// "web" resolves as kube-dns would answer it in namespace sample.
		ns[w.name] = lab.Host(w.name, w.ip+"/24", "10.48.0.1", webIP+" web web.sample")
	}

	c1 := kubeharness.Start(t, kubeharness.Options{Name: "cluster1"})
	namespace(t, c1, "istio-system", nil)
	namespace(t, c1, "sample", nil)
	files, err := catest.New("mesh")
	must(t, err)
	installCACerts(t, c1, files)
	for name, clusterIP := range map[string]string{"web": webIP, "db": corev1.ClusterIPNone} {
		_, err = c1.Client.CoreV1().Services("sample").Create(ctx, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "sample"},
			Spec: corev1.ServiceSpec{ClusterIP: clusterIP, Ports: []corev1.ServicePort{{Name: "http", Port: 5000}}, Selector: map[string]string{"app": name}}}, metav1.CreateOptions{})
		must(t, err)
	}
	bySvc := map[string]*discoveryv1.EndpointSlice{}
	for _, w := range workloads {
		must(t, createSA(c1, "sample", w.sa))
		labels := map[string]string{"app": w.sa}
		if w.sidecar {
			labels["security.istio.io/tlsMode"] = "istio"
		}
		p, err := c1.Client.CoreV1().Pods("sample").Create(ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: w.name, Namespace: "sample", Labels: labels},
			Spec: corev1.PodSpec{ServiceAccountName: w.sa, Containers: []corev1.Container{{Name: "app", Image: "x"}}}}, metav1.CreateOptions{})
		must(t, err)
		p.Status.PodIP = w.ip
		_, err = c1.Client.CoreV1().Pods("sample").UpdateStatus(ctx, p, metav1.UpdateOptions{})
		must(t, err)
		if w.svc == "" {
			continue
		}
		if bySvc[w.svc] == nil {
			bySvc[w.svc] = &discoveryv1.EndpointSlice{ObjectMeta: metav1.ObjectMeta{Name: w.svc + "-1", Namespace: "sample",
				Labels: map[string]string{"kubernetes.io/service-name": w.svc}}, AddressType: discoveryv1.AddressTypeIPv4,
				Ports: []discoveryv1.EndpointPort{{Name: ptr.To("http"), Port: ptr.To[int32](5000)}}}
		}
		bySvc[w.svc].Endpoints = append(bySvc[w.svc].Endpoints, discoveryv1.Endpoint{Addresses: []string{w.ip},
			Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)}, TargetRef: &corev1.ObjectReference{Kind: "Pod", Namespace: "sample", Name: w.name}})
	}
	for _, sl := range bySvc {
		_, err = c1.Client.DiscoveryV1().EndpointSlices("sample").Create(ctx, sl, metav1.CreateOptions{})
		must(t, err)
	}

	d := startDiscoveryWith(t, c1, nil, true, func(c *bootstrap.Config) {
		c.SecureAddr, c.SecureSANs, c.XDSAddr = "10.48.0.254:15012", []string{"10.48.0.254"}, ""
	})
	rootFile := filepath.Join(dir, "root-cert.pem")
	must(t, os.WriteFile(rootFile, files[ca.RootCertFile], 0o644))
	for _, w := range workloads {
		if w.name != "sleep" {
			lab.Start(ns[w.name], 0, filepath.Join(dir, w.name+".app.log"), filepath.Join(dir, "helloworld"), "-version", "v1", "-instance", w.name)
		}
		if !w.sidecar {
			continue
		}
		work := filepath.Join(dir, w.name)
		must(t, os.MkdirAll(work, 0o755))
		tokenFile := filepath.Join(dir, w.name+".token")
		must(t, os.WriteFile(tokenFile, []byte(token(t, c1, "sample", w.sa, "istio-ca")), 0o644))
		must(t, os.Chown(work, proxyUID, proxyUID))
		lab.In(ns[w.name], agent, "agent", "iptables", "--proxy-uid", fmt.Sprint(proxyUID))
		lab.Start(ns[w.name], proxyUID, filepath.Join(dir, w.name+".agent.log"), agent, "agent",
			"--namespace", "sample", "--service-account", w.sa, "--cluster-id", "cluster1", "--ip", w.ip,
			"--label", "app="+w.sa, "--discovery-address", "10.48.0.254:15012", "--root-cert", rootFile,
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
	waitFor(t, 60*time.Second, "sleep's Envoy to get db's pod chains and web's endpoint", func() bool {
		return strings.Contains(admin("sleep", "/listeners"), "virtualOutbound") &&
			strings.Contains(admin("sleep", "/config_dump"), "outbound|5000|pod-mtls|db.sample.svc.cluster.local|10.48.0.20:5000") &&
			strings.Contains(admin("sleep", "/clusters"), "outbound|5000||web.sample.svc.cluster.local::10.48.0.11:5000")
	})
	for _, w := range []string{"web-0", "db-0"} {
		waitFor(t, 60*time.Second, w+"'s Envoy to get its inbound listener", func() bool {
			return strings.Contains(admin(w, "/listeners"), "virtualInbound")
		})
	}
	get := func(url string) string {
		t.Helper()
		out, err := lab.Try(ns["sleep"], 0, "curl", "-s", "-f", "-m", "5", url)
		if err != nil {
			t.Fatalf("GET %s: %v: %s\n%s", url, err, out, tail(filepath.Join(dir, "sleep", "envoy.log")))
		}
		return strings.TrimSpace(out)
	}

	// logged waits for a line of w's access log (Envoy writes it a moment
	// after the response) that contains want.
	logged := func(w, want string) {
		t.Helper()
		path := filepath.Join(dir, w, "envoy.log")
		waitFor(t, 10*time.Second, w+"'s access log to show "+want, func() bool { return strings.Contains(tail(path), want) })
	}

	// The bare name, through the mesh.
	if out := get("http://web:5000/hello"); out != "Hello version: v1, instance: web-0" {
		t.Errorf("http://web:5000: %q", out)
	}
	logged("sleep", `"web:5000" upstream_host=10.48.0.11:5000 upstream_cluster=outbound|5000||web.sample.svc.cluster.local`)
	logged("web-0", `"web:5000" upstream_host=127.0.0.1:5000 upstream_cluster=inbound|5000|| downstream_local=10.48.0.11:5000 peer_san=spiffe://cluster.local/ns/sample/sa/sleep`)

	// Headless pods by IP: each request reaches the pod it names.
	for range 5 {
		if out := get("http://10.48.0.20:5000/hello"); out != "Hello version: v1, instance: db-0" {
			t.Fatalf("db-0's IP answered %q", out)
		}
		if out := get("http://10.48.0.21:5000/hello"); out != "Hello version: v1, instance: db-1" {
			t.Fatalf("db-1's IP answered %q", out)
		}
	}
	logged("db-0", `"10.48.0.20:5000" upstream_host=127.0.0.1:5000 upstream_cluster=inbound|5000|| downstream_local=10.48.0.20:5000 peer_san=spiffe://cluster.local/ns/sample/sa/sleep`)
	logged("sleep", "upstream_host=10.48.0.20:5000 upstream_cluster=outbound|5000|pod-mtls|db.sample.svc.cluster.local")
	logged("sleep", "upstream_host=10.48.0.21:5000 upstream_cluster=outbound|5000|pod|db.sample.svc.cluster.local")
	if syncz := d.get(t, "/debug/syncz"); strings.Contains(syncz, "lastNACK") {
		t.Errorf("a proxy rejected config:\n%s", syncz)
	}
}
