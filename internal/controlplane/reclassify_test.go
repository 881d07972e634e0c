package controlplane

import (
	"strings"
	"testing"
	"time"

	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"

	"github.com/horizonmesh/horizon/internal/source/kube"
	"github.com/horizonmesh/horizon/internal/testing/adsclient"
)

// A sidecar whose workload starts serving a port after its proxy connected
// (a Service selecting it was added, or its endpoint appeared) gets the
// inbound cluster and listener for it on the same stream; when the
// endpoint goes, they go. Only the streams of the workloads whose
// endpoints changed are classified again.
func TestSidecarFollowsItsServedPorts(t *testing.T) {
	st := kube.NewStore()
	st.Upsert(incrementalService("helloworld", "10.96.0.10"), "")
	st.Upsert(incrementalSlice("helloworld", "10.1.0.1"), "")
	cp := newLocal(st)
	addr := serveReady(t, cp)

	dial := func(id, ip string) *adsclient.Client {
		return dialSidecar(t, addr, adsclient.Node(id, "", "c1"), ip, resource.ClusterType, resource.ListenerType)
	}
	hasInbound := func(want bool) func(*discovery.DiscoveryResponse) bool {
		return func(r *discovery.DiscoveryResponse) bool {
			cl, err := adsclient.Clusters(r)
			if err != nil {
				t.Fatal(err)
			}
			_, ok := cl["inbound|8080||"]
			return ok == want
		}
	}
	// The new workload at 10.1.0.9 serves nothing yet; another, at
	// 10.1.0.1, serves 8080 and is not touched by what follows.
	fresh, other := dial("sidecar~10.1.0.9~new.ns~ns.svc.cluster.local", "10.1.0.9"), dial("sidecar~10.1.0.1~hw.ns~ns.svc.cluster.local", "10.1.0.1")
	if _, err := fresh.Wait(resource.ClusterType, 10*time.Second, hasInbound(false)); err != nil {
		t.Fatal(err)
	}
	if _, err := other.Wait(resource.ClusterType, 10*time.Second, hasInbound(true)); err != nil {
		t.Fatal(err)
	}
	views := func() string {
		var out []string
		for _, s := range cp.Tracker.Streams() {
			out = append(out, s.Proxy+" "+s.Types[resource.ClusterType].View+" "+s.Types[resource.ListenerType].View)
		}
		return strings.Join(out, "; ")
	}

	// 10.1.0.9 becomes an endpoint of helloworld: its proxy gets inbound
	// 8080, cluster and listener, on its stream.
	st.Upsert(incrementalSlice("helloworld", "10.1.0.1", "10.1.0.9"), "")
	cp.ClusterChanged("c1")
	if _, err := fresh.Wait(resource.ClusterType, 10*time.Second, hasInbound(true)); err != nil {
		t.Fatalf("%v (views: %s)", err, views())
	}
	if _, err := fresh.Wait(resource.ListenerType, 10*time.Second, func(r *discovery.DiscoveryResponse) bool {
		return strings.Contains(r.String(), "inbound|8080||")
	}); err != nil {
		t.Fatalf("no inbound listener chain for 8080: %v (views: %s)", err, views())
	}
	if v := views(); !strings.Contains(v, "sidecar~10.1.0.9~new.ns~ns.svc.cluster.local sidecar;cluster=c1;inbound=8080/http/permissive sidecar;cluster=c1;inbound=8080/http/permissive") {
		t.Errorf("syncz does not show the moved view: %s", v)
	}
	// The endpoint goes: so do the inbound cluster and listener.
	otherResponses := other.Count(resource.ClusterType)
	st.Upsert(incrementalSlice("helloworld", "10.1.0.1"), "")
	cp.ClusterChanged("c1")
	if _, err := fresh.Wait(resource.ClusterType, 10*time.Second, hasInbound(false)); err != nil {
		t.Fatalf("%v (views: %s)", err, views())
	}
	if n := other.Count(resource.ClusterType); n != otherResponses {
		t.Errorf("the untouched workload's proxy got %d more CDS responses", n-otherResponses)
	}
}
