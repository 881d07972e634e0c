package controlplane

import (
	"net/netip"
	"testing"

	"github.com/horizonmesh/horizon/internal/model"
)

// A Service whose port changes protocol (a rename from http to tcp, an
// appProtocol added) moves its workloads' sidecars: their inbound view
// carries the protocol, though no endpoint changed.
func TestProtocolChangeReclassifies(t *testing.T) {
	addr := netip.MustParseAddr("10.1.0.1")
	mesh := func(sp model.ServicePort) *model.Mesh {
		m, diags := model.Build(model.BuildInput{Clusters: []*model.ClusterSnapshot{{ID: "c1", Services: []*model.ClusterService{{
			Name: "db", Namespace: "ns", Ports: []model.ServicePort{sp},
			Endpoints: map[uint32][]*model.Endpoint{sp.Port: {{Address: addr, Port: 6379, Namespace: "ns", PodName: "db-0"}}},
		}}}}})
		if len(diags) != 0 {
			t.Fatal(diags)
		}
		return m
	}
	http := mesh(model.ServicePort{Name: "http", Port: 80, Protocol: "TCP"})
	if got := changedEndpointAddrs(http, mesh(model.ServicePort{Name: "http", Port: 80, Protocol: "TCP"})); len(got) != 0 {
		t.Errorf("nothing changed, yet %v", got)
	}
	for _, sp := range []model.ServicePort{
		{Name: "tcp", Port: 80, Protocol: "TCP"},
		{Name: "http", Port: 80, Protocol: "TCP", AppProtocol: "redis"},
	} {
		if got := changedEndpointAddrs(http, mesh(sp)); !got[endpointAddr{"c1", addr}] {
			t.Errorf("%+v: the workload is not reclassified (%v)", sp, got)
		}
	}
}
