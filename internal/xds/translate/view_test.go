package translate

import (
	"maps"
	"slices"
	"testing"

	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
)

func TestPortsAndLabelsRoundTrip(t *testing.T) {
	got := PortsOf([]uint32{9080, 5000, 9080, 7000}, []uint32{9080})
	ports, tcp := got.List()
	if got != "5000/http,7000/http,9080/tcp" || !slices.Equal(ports, []uint32{5000, 7000, 9080}) || !slices.Equal(tcp, []uint32{9080}) {
		t.Errorf("PortsOf: %q %v %v", got, ports, tcp)
	}
	if ports, tcp := PortsOf(nil, nil).List(); PortsOf(nil, nil) != "" || ports != nil || tcp != nil {
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
	sidecar := Proxy{Network: "n1", Cluster: "c1", Inbound: []uint32{5000, 9000}, InboundTCP: []uint32{9000}, Labels: map[string]string{"app": "a"}, Namespace: "sample"}
	router := Proxy{Role: RoleRouter, Network: "n1", Cluster: "c1", Labels: map[string]string{"istio": "eastwestgateway"}}
	for _, c := range []struct {
		typ  string
		p    Proxy
		want View
		str  string
	}{
		{resource.EndpointType, sidecar, View{Network: "n1"}, "network=n1"},
		{resource.ClusterType, sidecar, View{Cluster: "c1", Inbound: "5000/http,9000/tcp"}, "sidecar;cluster=c1;inbound=5000/http,9000/tcp"},
		{resource.ListenerType, sidecar, View{Cluster: "c1", Inbound: "5000/http,9000/tcp"}, "sidecar;cluster=c1;inbound=5000/http,9000/tcp"},
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
