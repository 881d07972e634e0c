//go:build integration

package integration

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"

	"github.com/horizonmesh/horizon/internal/bootstrap"
	"github.com/horizonmesh/horizon/internal/controlplane"
)

// debugCluster is a cluster as /debug/clusters shows it.
func debugCluster(t testing.TB, d *discoveryProc, id string) controlplane.ClusterStatus {
	t.Helper()
	var body struct {
		Clusters []controlplane.ClusterStatus `json:"clusters"`
	}
	if err := json.Unmarshal([]byte(d.get(t, "/debug/clusters")), &body); err != nil {
		t.Fatal(err)
	}
	for _, c := range body.Clusters {
		if c.ID == id {
			return c
		}
	}
	return controlplane.ClusterStatus{}
}

// TestStaleRemoteCluster: cluster2's API server stops. A discovery with
// the default settings keeps serving cluster2's last endpoints however
// long (fail static); one with --stale-endpoint-ttl 3s withdraws them
// after 3s (an ADS client gets the EDS without them). Both show the
// staleness growing in /debug/clusters and horizon_remote_cluster_stale_seconds;
// when the API server is back, cluster2's endpoints return and the
// staleness is 0.
func TestStaleRemoteCluster(t *testing.T) {
	const ttl = 3 * time.Second
	m := startMesh(t)
	m.joinCluster2(t, "iks")
	static := startDiscovery(t, m.c1, nil, true)
	withTTL := startDiscoveryWith(t, m.c1, nil, true, func(c *bootstrap.Config) { c.StaleEndpointTTL = ttl })

	full1 := map[string]uint32{"10.1.0.5:5000": 1, "198.51.100.2:15443": 1} // network1: v2 through network2's gateway
	full2 := map[string]uint32{"10.1.0.5:5000": 1, "10.2.0.5:5000": 1}      // network2: v2 directly
	local := map[string]uint32{"10.1.0.5:5000": 1}
	s1, s2 := proxy(t, static, "sleep-s1.sample", "network1"), proxy(t, static, "sleep-s2.sample", "network2")
	t1, t2 := proxy(t, withTTL, "sleep-t1.sample", "network1"), proxy(t, withTTL, "sleep-t2.sample", "network2")
	waitEDS(t, s1, full1)
	waitEDS(t, s2, full2)
	waitEDS(t, t1, full1)
	waitEDS(t, t2, full2)
	for _, d := range []*discoveryProc{static, withTTL} {
		if c := debugCluster(t, d, "cluster2"); c.StaleSeconds != 0 || !c.UnreachableSince.IsZero() || c.Withdrawn {
			t.Fatalf("cluster2 before the stop: %+v", c)
		}
		if v := metricValue(t, d, `horizon_remote_cluster_stale_seconds{cluster="cluster2"}`); v != 0 {
			t.Fatalf("stale gauge before the stop: %v", v)
		}
	}
	from1, from2 := len(s1.Responses()), len(s2.Responses())

	// SIGKILL, as a crash or a lost network: it stops answering at once
	// (a SIGTERMed one answers through its shutdown delay).
	stopped := time.Now()
	m.c2.StopAPIServer(true)
	t.Logf("cluster2's kube-apiserver killed in %s", time.Since(stopped).Round(time.Millisecond))

	// The TTL: the ADS clients of withTTL get cluster2's endpoints removed.
	waitEDS(t, t1, local)
	waitEDS(t, t2, local)
	withdrawn := time.Since(stopped)
	c := debugCluster(t, withTTL, "cluster2")
	if !c.Withdrawn || c.StaleSeconds < ttl.Seconds() || c.UnreachableSince.Before(stopped) {
		t.Errorf("withTTL's cluster2 once withdrawn: %+v; want withdrawn, stale >= %s, unreachable since after %s", c, ttl, stopped)
	}
	if withdrawn < ttl {
		t.Errorf("withdrawn %s after the stop, before the TTL %s", withdrawn, ttl)
	}
	t.Logf("cluster2 withdrawn %s after its API server was stopped (TTL %s); unreachable seen at +%s",
		withdrawn.Round(time.Millisecond), ttl, c.UnreachableSince.Sub(stopped).Round(time.Millisecond))

	// The default keeps serving them (fail static), the age growing.
	waitFor(t, 30*time.Second, "static's cluster2 stale for longer than the TTL", func() bool {
		return debugCluster(t, static, "cluster2").StaleSeconds > ttl.Seconds()+1
	})
	first := debugCluster(t, static, "cluster2")
	if first.Withdrawn || first.UnreachableSince.IsZero() {
		t.Errorf("static's cluster2: %+v; want stale, not withdrawn", first)
	}
	g1 := metricValue(t, static, `horizon_remote_cluster_stale_seconds{cluster="cluster2"}`)
	waitFor(t, 10*time.Second, "the stale gauge to grow", func() bool {
		return metricValue(t, static, `horizon_remote_cluster_stale_seconds{cluster="cluster2"}`) >= g1+1
	})
	if g1 <= ttl.Seconds() {
		t.Errorf("static's stale gauge %v, want > %v", g1, ttl.Seconds())
	}
	for _, p := range []struct {
		name  string
		rs    []*discovery.DiscoveryResponse
		want  map[string]uint32
		after int
	}{{"network1", s1.Responses(), full1, from1}, {"network2", s2.Responses(), full2, from2}} {
		for i, r := range p.rs[p.after:] {
			if r.GetTypeUrl() == resource.EndpointType && fmt.Sprint(weightsOf(r)) != fmt.Sprint(p.want) {
				t.Errorf("static's %s client got EDS %v while cluster2 was down (response %d); want %v kept", p.name, weightsOf(r), i, p.want)
			}
		}
		if last := lastEDS(p.rs); fmt.Sprint(last) != fmt.Sprint(p.want) {
			t.Errorf("static's %s client holds %v, want %v", p.name, last, p.want)
		}
	}

	// The API server is back: cluster2's endpoints return, staleness 0.
	restored := time.Now()
	if err := m.c2.StartAPIServer(); err != nil {
		t.Fatal(err)
	}
	waitEDS(t, t1, full1)
	waitEDS(t, t2, full2)
	t.Logf("cluster2 back at withTTL's clients %s after its API server was started", time.Since(restored).Round(time.Millisecond))
	for name, d := range map[string]*discoveryProc{"static": static, "withTTL": withTTL} {
		waitFor(t, 30*time.Second, name+"'s cluster2 answering again", func() bool {
			c := debugCluster(t, d, "cluster2")
			return c.StaleSeconds == 0 && !c.Withdrawn && c.UnreachableSince.IsZero() && c.Error == ""
		})
		if v := metricValue(t, d, `horizon_remote_cluster_stale_seconds{cluster="cluster2"}`); v != 0 {
			t.Errorf("%s's stale gauge after the return: %v", name, v)
		}
	}
}

// lastEDS is the helloworld endpoints of the last EDS response in rs.
func lastEDS(rs []*discovery.DiscoveryResponse) map[string]uint32 {
	for i := len(rs) - 1; i >= 0; i-- {
		if rs[i].GetTypeUrl() == resource.EndpointType {
			return weightsOf(rs[i])
		}
	}
	return nil
}
