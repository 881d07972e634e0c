package translate

import (
	"maps"
	"net/netip"
	"slices"
	"testing"

	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"

	"github.com/horizonmesh/horizon/internal/model"
)

func TestPortsAndLabelsRoundTrip(t *testing.T) {
	in := []WorkloadPort{{Port: 9080, TCP: true, Mode: model.MTLSStrict}, {Port: 5000, Mode: model.MTLSPermissive},
		{Port: 9080, Mode: model.MTLSDisable}, {Port: 7000, Mode: model.MTLSDisable}, {Port: 8000}}
	got := PortsOf(in)
	want := []WorkloadPort{{Port: 5000, Mode: model.MTLSPermissive}, {Port: 7000, Mode: model.MTLSDisable},
		{Port: 8000, Mode: model.DefaultMTLSMode}, {Port: 9080, TCP: true, Mode: model.MTLSStrict}}
	if got != "5000/http/permissive,7000/http/disable,8000/http/permissive,9080/tcp/strict" || !slices.Equal(got.List(), want) {
		t.Errorf("PortsOf: %q %v", got, got.List())
	}
	if PortsOf(nil) != "" || PortsOf(nil).List() != nil {
		t.Error("no ports is the empty set")
	}
	ls := map[string]string{"istio": "eastwestgateway", "topology.istio.io/network": "network1"}
	labels := LabelsOf(ls)
	if got := labels; got != "istio=eastwestgateway,topology.istio.io/network=network1" || !maps.Equal(got.Map(), ls) {
		t.Errorf("LabelsOf: %q %v", got, got.Map())
	}
	if LabelsOf(map[string]string{"b": "2", "a": "1"}) != LabelsOf(map[string]string{"a": "1", "b": "2"}) {
		t.Error("the same labels make different keys")
	}
}

// Which proxies share a view, type by type.
func TestViewOf(t *testing.T) {
	sidecar := Proxy{Network: "n1", Cluster: "c1", Inbound: []WorkloadPort{{Port: 5000, Mode: model.MTLSStrict}, {Port: 9000, TCP: true, Mode: model.MTLSPermissive}}, Labels: map[string]string{"app": "a"}, Namespace: "sample"}
	router := Proxy{Role: RoleRouter, Network: "n1", Cluster: "c1", Labels: map[string]string{"istio": "eastwestgateway"}}
	for _, c := range []struct {
		typ  string
		p    Proxy
		want View
		str  string
	}{
		{resource.EndpointType, sidecar, View{Network: "n1"}, "network=n1"},
		{resource.ClusterType, sidecar, View{Cluster: "c1", Inbound: "5000/http/strict,9000/tcp/permissive"}, "sidecar;cluster=c1;inbound=5000/http/strict,9000/tcp/permissive"},
		{resource.ListenerType, sidecar, View{Cluster: "c1", Inbound: "5000/http/strict,9000/tcp/permissive"}, "sidecar;cluster=c1;inbound=5000/http/strict,9000/tcp/permissive"},
		{resource.RouteType, sidecar, View{Cluster: "c1", Namespace: "sample"}, "sidecar;cluster=c1;inbound=;namespace=sample"},
		{resource.EndpointType, router, View{Role: RoleRouter, Network: "n1"}, "router;network=n1"},
		{resource.ClusterType, router, View{Role: RoleRouter, Network: "n1", Labels: "istio=eastwestgateway"}, "router;network=n1;labels=istio=eastwestgateway"},
	} {
		got, ok := ViewOf(c.typ, c.p)
		if !ok || got != c.want || got.String() != c.str {
			t.Errorf("ViewOf(%s, %s): %+v %q ok=%v, want %+v %q", c.typ, c.p.Role, got, got.String(), ok, c.want, c.str)
		}
	}
	if _, ok := ViewOf(resource.RouteType, router); ok {
		t.Error("routers get routes")
	}
	if _, ok := ViewOf(resource.SecretType, sidecar); ok {
		t.Error("secrets are served by the agent, not discovery")
	}
}

// A sidecar whose Pod no Service selects is located by its Pod: its EDS
// view carries its Node's locality, while its clusters and listeners are
// those of a proxy whose workload serves nothing — the same views as a
// proxy the mesh does not know at all.
func TestProxyOfServicelessPod(t *testing.T) {
	pods := (*model.PodTable)(nil).Apply([]model.PodUpdate{{Ref: model.PodRef{Namespace: "sample", Name: "client"},
		Pod: &model.Pod{Namespace: "sample", Name: "client", ServiceAccount: "sa",
			Addresses: []netip.Addr{netip.MustParseAddr("10.0.0.7")}, Locality: model.Locality{Region: "r1", Zone: "z2"}}}})
	m, _ := model.Build(model.BuildInput{Clusters: []*model.ClusterSnapshot{{ID: "c1", Pods: pods,
		Services: []*model.ClusterService{{Name: "svc", Namespace: "sample", Ports: []model.ServicePort{{Name: "http", Port: 80}}}}}}})
	claim := Claim{Network: "n1", Cluster: "c1", IPs: []netip.Addr{netip.MustParseAddr("10.0.0.7")}}
	p, claimed := ProxyOf(m, claim)
	if claimed || !p.Located || p.Locality.Zone != "z2" || p.Namespace != "sample" {
		t.Fatalf("proxy %+v (claimed %v): want located in r1/z2, namespace sample", p, claimed)
	}
	unknown, _ := ProxyOf(m, Claim{Network: "n1", Cluster: "c1", IPs: []netip.Addr{netip.MustParseAddr("10.0.0.99")}})
	for _, typ := range []string{resource.ClusterType, resource.ListenerType} {
		v, _ := ViewOf(typ, p)
		u, _ := ViewOf(typ, unknown)
		if v != u {
			t.Errorf("%s: view %v, want that of a workload serving nothing, %v", typ, v, u)
		}
	}
	if v, _ := ViewOf(resource.EndpointType, p); v != (View{Network: "n1", Cluster: "c1", Locality: model.Locality{Region: "r1", Zone: "z2"}, Located: true}) {
		t.Errorf("EDS view %v", v)
	}
}
