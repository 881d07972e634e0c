//go:build integration

package integration

import (
	"fmt"
	"strings"
	"testing"
	"time"

	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func cluster2Since(d *discoveryProc) time.Time {
	for _, c := range d.cp.Clusters() {
		if c.ID == "cluster2" {
			return c.Since
		}
	}
	return time.Time{}
}

// TestWalkthroughAcrossClusters covers the discovery issue's tests 1-4 on two
// real API servers: join through a Secret, scale, edit meshNetworks live,
// rotate and delete the Secret.
func TestWalkthroughAcrossClusters(t *testing.T) {
	m := startMesh(t)
	walkthroughAcrossClusters(t, m, startDiscovery(t, m.c1, nil, true))
}

// walkthroughAcrossClusters runs the walkthrough's steps against d.
func walkthroughAcrossClusters(t *testing.T, m *mesh, d *discoveryProc) {
	n1 := proxy(t, d, "sleep-n1.sample", "network1")
	n2 := proxy(t, d, "sleep-n2.sample", "network2")
	waitEDS(t, n1, map[string]uint32{"10.1.0.5:5000": 1})

	// 1. cluster2 joins through its Secret (a TokenRequest token, RBAC-limited).
	m.joinCluster2(t, "iks")
	waitEDS(t, n1, map[string]uint32{"10.1.0.5:5000": 1, "198.51.100.2:15443": 1})
	waitEDS(t, n2, map[string]uint32{"10.1.0.5:5000": 1, "10.2.0.5:5000": 1})

	// 2. Scaling helloworld v2: the gateway's weight follows; clusters are
	// not rebuilt.
	if _, err := n1.Wait(resource.ClusterType, 10*time.Second, func(*discovery.DiscoveryResponse) bool { return true }); err != nil {
		t.Fatal(err)
	}
	cdsResponses := n1.Count(resource.ClusterType)
	cdsBuilds := metricValue(t, d, `horizon_xds_builds_total{type="cds"}`)
	pod(t, m.c2, "sample", "helloworld-v2-b", "10.2.0.6", map[string]string{"app": "helloworld", "version": "v2"})
	slice(t, m.c2, "sample", "helloworld", map[string]string{"helloworld-v2": "10.2.0.5", "helloworld-v2-b": "10.2.0.6"})
	waitEDS(t, n1, map[string]uint32{"10.1.0.5:5000": 1, "198.51.100.2:15443": 2})
	waitEDS(t, n2, map[string]uint32{"10.1.0.5:5000": 1, "10.2.0.5:5000": 1, "10.2.0.6:5000": 1})
	if got := n1.Count(resource.ClusterType); got != cdsResponses {
		t.Errorf("CDS re-sent on an endpoint change: %d → %d", cdsResponses, got)
	}
	if got := metricValue(t, d, `horizon_xds_builds_total{type="cds"}`); got != cdsBuilds {
		t.Errorf("CDS rebuilt on an endpoint change: %v → %v", cdsBuilds, got)
	}

	// 3. The walkthrough's step 4: edit the gateway address in the istio
	// ConfigMap; then an invalid edit, rejected, the previous address stays.
	meshNetworksConfigMap(t, m.c1, "networks:\n  network2:\n    endpoints:\n    - fromRegistry: cluster2\n    gateways:\n    - address: 198.51.100.22\n      port: 15443\n")
	waitEDS(t, n1, map[string]uint32{"10.1.0.5:5000": 1, "198.51.100.22:15443": 2})
	before := len(n1.Responses())
	meshNetworksConfigMap(t, m.c1, "networks:\n  network2:\n    endpoints:\n    - fromRegistry: cluster2\n    gateways:\n    - address: 198.51.100.23\n      port: 0\n")
	waitFor(t, 10*time.Second, "the invalid edit to be reported", func() bool {
		return strings.Contains(d.get(t, "/debug/clusters"), "out of range")
	})
	time.Sleep(300 * time.Millisecond)
	if got := weightsOf(n1.Responses()[len(n1.Responses())-1]); len(n1.Responses()) != before || got["198.51.100.22:15443"] != 2 {
		t.Errorf("after an invalid edit: %d new responses, EDS %v", len(n1.Responses())-before, got)
	}

	// 4. Rotate the Secret to a new kubeconfig: no EDS response in between
	// may lack cluster2's endpoints. Then delete it: withdrawn.
	from1, from2 := len(n1.Responses()), len(n2.Responses())
	since := cluster2Since(d)
	m.joinCluster2(t, "iks") // a fresh token: new kubeconfig bytes
	waitFor(t, 30*time.Second, "the rotated kubeconfig to take over", func() bool { return cluster2Since(d).After(since) })
	time.Sleep(300 * time.Millisecond)
	checkAll := func(c []*discovery.DiscoveryResponse, want string) {
		for i, r := range c {
			if r.GetTypeUrl() == resource.EndpointType {
				if w := weightsOf(r); w[want] == 0 {
					t.Errorf("response %d during rotation lacks %s: %v", i, want, w)
				}
			}
		}
	}
	checkAll(n1.Responses()[from1:], "198.51.100.22:15443")
	checkAll(n2.Responses()[from2:], "10.2.0.6:5000")

	if err := m.c1.Client.CoreV1().Secrets("istio-system").Delete(ctx, "iks", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitEDS(t, n1, map[string]uint32{"10.1.0.5:5000": 1})
	waitEDS(t, n2, map[string]uint32{"10.1.0.5:5000": 1})
}

// TestUnreachableRemoteNeverBlocksLocal is the discovery issue's test 5.
func TestUnreachableRemoteNeverBlocksLocal(t *testing.T) {
	m := startMesh(t)
	kc, err := m.c2.KubeconfigFor(ctx, "istio-system", "istio-multi", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	dead := []byte(strings.Replace(string(kc), m.c2.URL, "https://127.0.0.1:1", 1))
	remoteSecret(t, m.c1, "dead", "cluster2", dead)
	start := time.Now()
	d := startDiscovery(t, m.c1, nil, false)
	waitFor(t, 20*time.Second, "ready despite the unreachable remote", d.cp.Ready)
	t.Logf("ready after %s (remote sync timeout 5s)", time.Since(start).Round(time.Millisecond))
	n1 := proxy(t, d, "sleep.sample", "network1")
	waitEDS(t, n1, map[string]uint32{"10.1.0.5:5000": 1})
	waitFor(t, 20*time.Second, "the error in /debug/clusters", func() bool {
		body := d.get(t, "/debug/clusters")
		return strings.Contains(body, `"id": "cluster2"`) && strings.Contains(body, "not synced after")
	})
}

// TestProxyBeforeLocalSync is the discovery issue's test 6: the control
// plane's own credentials cannot list yet (RBAC), so it has not synced.
func TestProxyBeforeLocalSync(t *testing.T) {
	m := startMesh(t)
	if err := createSA(m.c1, "istio-system", "horizon"); err != nil {
		t.Fatal(err)
	}
	kc, err := m.c1.KubeconfigFor(ctx, "istio-system", "horizon", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	d := startDiscovery(t, m.c1, kc, false)
	early := proxy(t, d, "early.sample", "network1")
	_, err = early.Wait(resource.ClusterType, 10*time.Second, func(*discovery.DiscoveryResponse) bool { return true })
	if err == nil || !strings.Contains(err.Error(), "Unavailable") {
		t.Fatalf("before sync: %v, want Unavailable", err)
	}
	if err := bindClusterAdmin(m.c1, "istio-system", "horizon"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 60*time.Second, "ready once RBAC allows the sync", d.cp.Ready)
	late := proxy(t, d, "late.sample", "network1")
	waitEDS(t, late, map[string]uint32{"10.1.0.5:5000": 1})
	if r, err := late.Wait(resource.ClusterType, 10*time.Second, func(*discovery.DiscoveryResponse) bool { return true }); err != nil || len(r.Resources) == 0 {
		t.Fatalf("full CDS after sync: %v", err)
	}
}

func metricValue(t testing.TB, d *discoveryProc, series string) float64 {
	t.Helper()
	for _, line := range strings.Split(d.get(t, "/metrics"), "\n") {
		if rest, ok := strings.CutPrefix(line, series+" "); ok {
			var v float64
			_, _ = fmt.Sscan(rest, &v) // a malformed value stays 0, which the caller reports
			return v
		}
	}
	return 0
}
