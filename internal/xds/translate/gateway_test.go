package translate

import (
	"slices"
	"testing"

	"github.com/horizonmesh/horizon/internal/model"
)

func TestGatewayAutoPassthrough(t *testing.T) {
	m := exampleMesh(t, true) // example.ns port 80; gw.istio-system 15443; networks 1-4
	v := GatewayView{Network: "network2", Gateways: []*model.IstioGateway{{
		Name: "cross-network", Namespace: "istio-system", Selector: map[string]string{"istio": "eastwestgateway"},
		Servers: []model.GatewayServer{
			{Port: 15443, Protocol: "TLS", TLSMode: model.TLSModeAutoPassthrough, Hosts: []string{"ns/*"}},
			{Port: 8443, Protocol: "TLS", TLSMode: "SIMPLE", Hosts: []string{"*"}}, // not passthrough: ignored
			{Port: 9443, Protocol: "TLS", TLSMode: model.TLSModeAutoPassthrough, Hosts: []string{"nomatch/*"}},
		},
	}}}
	lds := GatewayLDS(m, v)
	if len(lds) != 1 || lds[0].Name != "gateway_15443" {
		t.Fatalf("listeners: %v", lds)
	}
	l := lds[0]
	if err := l.ValidateAll(); err != nil {
		t.Fatal(err)
	}
	if l.ListenerFilters[0].Name != "envoy.filters.listener.tls_inspector" || l.DefaultFilterChain != nil {
		t.Errorf("listener filters %v, default chain %v (unknown SNIs must be closed)", l.ListenerFilters, l.DefaultFilterChain)
	}
	wantSNI := "outbound_.80_._.example.ns.svc.cluster.local"
	if len(l.FilterChains) != 1 {
		t.Fatalf("chains: %d (only ns/* hosts admitted)", len(l.FilterChains))
	}
	fc := l.FilterChains[0]
	if !slices.Equal(fc.FilterChainMatch.ServerNames, []string{wantSNI}) || !slices.Equal(fc.FilterChainMatch.ApplicationProtocols, MeshALPN) {
		t.Errorf("chain match %v", fc.FilterChainMatch)
	}
	if fc.TransportSocket != nil {
		t.Error("a passthrough chain must not terminate TLS")
	}

	cds := GatewayCDS(m, v)
	if len(cds) != 1 || cds[0].Name != wantSNI || cds[0].TransportSocket != nil || len(cds[0].TransportSocketMatches) != 0 {
		t.Fatalf("clusters: %v", cds)
	}
	for _, cla := range GatewayEDS(m, v) {
		if err := cla.ValidateAll(); err != nil {
			t.Fatal(err)
		}
		if cla.ClusterName != wantSNI {
			continue
		}
		got := map[string]bool{}
		for _, loc := range cla.Endpoints {
			for _, lb := range loc.LbEndpoints {
				got[lb.GetEndpoint().GetAddress().GetSocketAddress().GetAddress()] = true
			}
		}
		// network2's own pods only, never another network's or a gateway.
		if len(got) != 3 || !got["20.0.0.1"] || !got["20.0.0.2"] || !got["20.0.0.3"] {
			t.Errorf("gateway EDS endpoints: %v", got)
		}
	}
}
