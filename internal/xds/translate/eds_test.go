package translate

import (
	"fmt"
	"net/netip"
	"testing"

	"github.com/horizonmesh/horizon/internal/model"
)

const exampleHost = "example.ns.svc.cluster.local"

// exampleMesh is the worked example: service example.ns port 80 with
// target port 8080. Gateways: network1 1.1.1.1:80 (cluster1a); network2
// 2.2.2.2:80 (cluster2a) and 2.2.2.20:80 (cluster2b); network3 3.3.3.3:443
// (cluster3); network4 none. Endpoints: cluster1a 10.0.0.1, cluster1b 10.0.0.2
// (network1); cluster2a 20.0.0.1; cluster2b 20.0.0.2, 20.0.0.3 (network2);
// cluster4 40.0.0.1 (network4).
func exampleMesh(t testing.TB, mtls bool) *model.Mesh {
	t.Helper()
	return exampleMeshWith(t, mtls, nil, nil)
}

// exampleMeshWith is exampleMesh with a locality per cluster, endpoint
// labels version=v1 (v2 for 20.0.0.3) and DestinationRules.
func exampleMeshWith(t testing.TB, mtls bool, loc map[model.ClusterID]model.Locality, rules []*model.DestinationRule) *model.Mesh {
	t.Helper()
	eps := map[model.ClusterID][]string{
		"cluster1a": {"10.0.0.1"}, "cluster1b": {"10.0.0.2"},
		"cluster2a": {"20.0.0.1"}, "cluster2b": {"20.0.0.2", "20.0.0.3"},
		"cluster3": nil, "cluster4": {"40.0.0.1"},
	}
	gws := map[model.ClusterID]struct {
		network, addr, port string
	}{
		"cluster1a": {"network1", "1.1.1.1", "80"},
		"cluster2a": {"network2", "2.2.2.2", "80"},
		"cluster2b": {"network2", "2.2.2.20", "80"},
		"cluster3":  {"network3", "3.3.3.3", "443"},
	}
	var clusters []*model.ClusterSnapshot
	for id, addrs := range eps {
		svc := &model.ClusterService{Name: "example", Namespace: "ns",
			Ports: []model.ServicePort{{Name: "http", Port: 80, Protocol: "TCP"}}, Endpoints: map[uint32][]*model.Endpoint{}}
		for _, a := range addrs {
			e := &model.Endpoint{Address: netip.MustParseAddr(a), Port: 8080, MTLS: mtls, Locality: loc[id]}
			if loc != nil {
				e.Labels = map[string]string{"version": "v1"}
				if a == "20.0.0.3" {
					e.Labels["version"] = "v2"
				}
			}
			svc.Endpoints[80] = append(svc.Endpoints[80], e)
		}
		snap := &model.ClusterSnapshot{ID: id, Services: []*model.ClusterService{svc}}
		if gw, ok := gws[id]; ok {
			snap.Services = append(snap.Services, &model.ClusterService{Name: "gw", Namespace: "istio-system",
				Labels:       map[string]string{model.NetworkLabel: gw.network, model.GatewayPortLabel: gw.port},
				Ports:        []model.ServicePort{{Name: "tls", Port: 15443}},
				LoadBalancer: []string{gw.addr}})
		}
		clusters = append(clusters, snap)
	}
	nets := &model.MeshNetworks{Networks: []*model.NetworkConfig{
		{Name: "network1", Registries: []model.ClusterID{"cluster1a", "cluster1b"}},
		{Name: "network2", Registries: []model.ClusterID{"cluster2a", "cluster2b"}},
		{Name: "network3", Registries: []model.ClusterID{"cluster3"}},
		{Name: "network4", Registries: []model.ClusterID{"cluster4"}},
	}}
	m, diags := model.Build(model.BuildInput{Clusters: clusters, Networks: nets, DestinationRules: rules})
	if err := diags.Err(); err != nil {
		t.Fatal(err)
	}
	return m
}

// weights flattens a load assignment to "addr:port" → weight, checking that
// every locality weight is the sum of its members.
func weights(t *testing.T, m *model.Mesh, network string) map[string]uint32 {
	t.Helper()
	cla := LoadAssignment(m, EDSView{Network: network}, m.Service(exampleHost), 80)
	if err := cla.ValidateAll(); err != nil {
		t.Fatalf("invalid ClusterLoadAssignment: %v", err)
	}
	out := map[string]uint32{}
	for _, loc := range cla.Endpoints {
		var sum uint32
		for _, lb := range loc.LbEndpoints {
			sa := lb.GetEndpoint().GetAddress().GetSocketAddress()
			key := fmt.Sprintf("%s:%d", sa.GetAddress(), sa.GetPortValue())
			if _, dup := out[key]; dup {
				t.Errorf("%s listed twice", key)
			}
			out[key] = lb.GetLoadBalancingWeight().GetValue()
			sum += out[key]
		}
		if got := loc.GetLoadBalancingWeight().GetValue(); got != sum {
			t.Errorf("locality %v weight %d, members sum to %d", loc.Locality, got, sum)
		}
	}
	return out
}

func TestSplitHorizonExample(t *testing.T) {
	tests := []struct {
		name    string
		mtls    bool
		network string
		want    map[string]uint32
	}{
		{"network1", true, "network1", map[string]uint32{
			"10.0.0.1:8080": 2, "10.0.0.2:8080": 2, "2.2.2.2:80": 2, "2.2.2.20:80": 4, "40.0.0.1:8080": 2}},
		{"network3", true, "network3", map[string]uint32{
			"1.1.1.1:80": 4, "2.2.2.2:80": 2, "2.2.2.20:80": 4, "40.0.0.1:8080": 2}},
		{"network2", true, "network2", map[string]uint32{
			"1.1.1.1:80": 4, "20.0.0.1:8080": 2, "20.0.0.2:8080": 2, "20.0.0.3:8080": 2, "40.0.0.1:8080": 2}},
		// A proxy with no network still reaches every network with gateways
		// through them (the walkthrough's local cluster has no network name).
		{"no network", true, "", map[string]uint32{
			"1.1.1.1:80": 4, "2.2.2.2:80": 2, "2.2.2.20:80": 4, "40.0.0.1:8080": 2}},
		{"network1 without mTLS", false, "network1", map[string]uint32{
			"10.0.0.1:8080": 2, "10.0.0.2:8080": 2, "40.0.0.1:8080": 2}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := exampleMesh(t, tt.mtls)
			if got := m.ScaleFactor(); got != 2 {
				t.Fatalf("scale factor = %d, want 2", got)
			}
			got := weights(t, m, tt.network)
			if fmt.Sprint(got) != fmt.Sprint(tt.want) {
				t.Errorf("endpoints for %q:\n got  %v\n want %v", tt.network, got, tt.want)
			}
		})
	}
}

func TestGatewayEndpointsAreMTLS(t *testing.T) {
	m := exampleMesh(t, true)
	cla := LoadAssignment(m, EDSView{Network: "network3"}, m.Service(exampleHost), 80)
	for _, lb := range cla.Endpoints[0].LbEndpoints {
		tls := lb.GetMetadata().GetFilterMetadata()[TransportSocketMatchKey].GetFields()["tlsMode"].GetStringValue()
		if tls != TLSModeIstio {
			t.Errorf("%v: tlsMode %q, want istio", lb.GetEndpoint().GetAddress(), tls)
		}
	}
}
