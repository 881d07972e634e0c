//go:build integration

package integration

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/horizonmesh/horizon/internal/bootstrap"
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
	const clusterIP = "10.96.0.50"
	workloads := []meshPod{
		{name: "sleep", ip: "10.44.0.10", sa: "sleep"},
		{name: "hw1", ip: "10.44.0.11", sa: "helloworld"},
		{name: "hw1b", ip: "10.44.0.12", sa: "helloworld"},
	}
	m := startMeshPods(t, "hze", "10.44.0", clusterIP+" helloworld.sample helloworld.sample.svc.cluster.local", workloads)
	// Kubernetes: the objects a controller-manager would make.
	m.service("helloworld", clusterIP, httpPort, "hw1", "hw1b")

	// Discovery, TLS only, on the lab's root address; STRICT mTLS by
	// default (PERMISSIVE, the default default, is
	// TestPeerAuthenticationEndToEnd's).
	m.startDiscovery(func(c *bootstrap.Config) { c.DefaultMTLSMode = "STRICT" })
	for _, w := range workloads {
		if w.sa == "helloworld" {
			m.startApp(w.name, w.name+".app.log", "-version", "v1", "-instance", w.name)
		}
		m.startSidecar(w.name)
	}
	for _, w := range workloads {
		waitFor(t, 60*time.Second, w.name+"'s Envoy to get its config", func() bool {
			ok := strings.Contains(m.admin(w.name, "/clusters"), "outbound|5000||helloworld.sample.svc.cluster.local::10.44.0.12:5000")
			if w.sa == "helloworld" { // serving pods get an inbound listener
				ok = ok && strings.Contains(m.admin(w.name, "/listeners"), "virtualInbound")
			}
			return ok
		})
	}
	// The kubelet's readiness probe (from outside the pod, not captured:
	// here the proxy uid from sleep's namespace) reaches each agent's
	// status port past inbound capture: ready, as Envoy has its config.
	for _, w := range workloads {
		out, err := m.callUncaptured("sleep", "http://"+w.ip+":15021/healthz/ready")
		if err != nil || strings.TrimSpace(out) != "ready" {
			t.Errorf("%s's readiness: %q, %v; want 200 ready", w.name, out, err)
		}
	}
	if dump := m.admin("sleep", "/config_dump"); !strings.Contains(dump, "dynamic_listeners") || !strings.Contains(dump, "dynamic_active_clusters") {
		t.Errorf("sleep's listeners and clusters are not dynamic (from ADS)")
	}

	// 20 requests from sleep through its sidecar, mTLS to either pod.
	seen := map[string]int{}
	for i := range 20 {
		out, err := m.call("sleep", "http://helloworld.sample:5000/hello")
		if err != nil {
			t.Fatalf("request %d: %v: %s\n%s", i, err, out, m.envoyLog("sleep"))
		}
		seen[strings.TrimSpace(out)]++
	}
	t.Logf("answers over 20 requests: %v", seen)
	if seen["Hello version: v1, instance: hw1"] == 0 || seen["Hello version: v1, instance: hw1b"] == 0 {
		t.Errorf("answers: %v; want both pods", seen)
	}
	sleepLog := m.envoyLog("sleep")
	if lines := strings.Split(strings.TrimSpace(sleepLog), "\n"); len(lines) > 0 {
		t.Logf("sleep's access log, last line: %s", lines[len(lines)-1])
	}
	if !strings.Contains(sleepLog, "downstream_local="+clusterIP+":5000") || !strings.Contains(sleepLog, "upstream_host=10.44.0.1") {
		t.Errorf("sleep's access log should show the ClusterIP as local address (capture) and a pod as upstream:\n%s", sleepLog)
	}
	if hwLog := m.envoyLog("hw1") + m.envoyLog("hw1b"); !strings.Contains(hwLog, "peer_san=spiffe://cluster.local/ns/sample/sa/sleep") {
		t.Errorf("helloworld's inbound log should show sleep's identity:\n%s", hwLog)
	}
	// A client without a mesh certificate (the proxy uid is not captured,
	// so this is plain HTTP to the pod) is refused by the pod's sidecar
	// (STRICT).
	if out, err := m.callUncaptured("sleep", "http://10.44.0.11:5000/hello"); err == nil {
		t.Errorf("a plaintext client was answered: %s", out)
	}
	m.requireNoNACK()
}

func tail(path string) string {
	b, _ := os.ReadFile(path)
	s := string(b)
	if len(s) > 4000 {
		s = s[len(s)-4000:]
	}
	return s
}
