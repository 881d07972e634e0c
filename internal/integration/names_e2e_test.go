//go:build integration

package integration

import (
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
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
	const webIP = "10.96.0.60"
	// "web" resolves as kube-dns would answer it in namespace sample.
	m := startMeshPods(t, "hzn", "10.48.0", webIP+" web web.sample", []meshPod{
		{name: "sleep", ip: "10.48.0.10", sa: "sleep"},
		{name: "web-0", ip: "10.48.0.11", sa: "web"},
		{name: "db-0", ip: "10.48.0.20", sa: "db"},
		{name: "db-1", ip: "10.48.0.21", sa: "db", plain: true},
	})
	m.service("web", webIP, httpPort, "web-0")
	m.service("db", corev1.ClusterIPNone, httpPort, "db-0", "db-1")
	m.startDiscovery(nil)
	for _, w := range []string{"web-0", "db-0", "db-1"} {
		m.startApp(w, w+".app.log", "-version", "v1", "-instance", w)
	}
	for _, w := range []string{"sleep", "web-0", "db-0"} {
		m.startSidecar(w)
	}
	waitFor(t, 60*time.Second, "sleep's Envoy to get db's pod chains and web's endpoint", func() bool {
		return strings.Contains(m.admin("sleep", "/listeners"), "virtualOutbound") &&
			strings.Contains(m.admin("sleep", "/config_dump"), "outbound|5000|pod-mtls|db.sample.svc.cluster.local|10.48.0.20:5000") &&
			strings.Contains(m.admin("sleep", "/clusters"), "outbound|5000||web.sample.svc.cluster.local::10.48.0.11:5000")
	})
	for _, w := range []string{"web-0", "db-0"} {
		waitFor(t, 60*time.Second, w+"'s Envoy to get its inbound listener", func() bool {
			return strings.Contains(m.admin(w, "/listeners"), "virtualInbound")
		})
	}
	get := func(url string) string {
		t.Helper()
		out, err := m.call("sleep", url)
		if err != nil {
			t.Fatalf("GET %s: %v: %s\n%s", url, err, out, m.envoyLog("sleep"))
		}
		return strings.TrimSpace(out)
	}

	// logged waits for a line of w's access log (Envoy writes it a moment
	// after the response) that contains want.
	logged := func(w, want string) {
		t.Helper()
		waitFor(t, 10*time.Second, w+"'s access log to show "+want, func() bool { return strings.Contains(m.envoyLog(w), want) })
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
	m.requireNoNACK()
}
