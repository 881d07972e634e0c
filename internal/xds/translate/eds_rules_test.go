package translate

import (
	"math"
	"net/netip"
	"strings"
	"testing"

	"github.com/horizonmesh/horizon/internal/model"
)

func ep(addr string, cluster model.ClusterID, loc model.Locality, mtls bool, weight uint32) *model.Endpoint {
	return &model.Endpoint{Address: netip.MustParseAddr(addr), Port: 8080, Cluster: cluster, Locality: loc, MTLS: mtls, Weight: weight}
}

func buildMesh(t *testing.T, eps map[model.ClusterID][]*model.Endpoint, gateways map[model.ClusterID][]string, nets *model.MeshNetworks) *model.Mesh {
	t.Helper()
	var clusters []*model.ClusterSnapshot
	ids := map[model.ClusterID]bool{}
	for id := range eps {
		ids[id] = true
	}
	for id := range gateways {
		ids[id] = true
	}
	for id := range ids {
		snap := &model.ClusterSnapshot{ID: id}
		if list := eps[id]; len(list) > 0 {
			snap.Services = append(snap.Services, &model.ClusterService{Name: "example", Namespace: "ns",
				Ports: []model.ServicePort{{Name: "http", Port: 80}}, Endpoints: map[uint32][]*model.Endpoint{80: list}})
		}
		if gws := gateways[id]; len(gws) > 0 {
			snap.Services = append(snap.Services, &model.ClusterService{Name: "gw", Namespace: "istio-system",
				Labels: map[string]string{model.NetworkLabel: gws[0]}, Ports: []model.ServicePort{{Port: 15443}}, LoadBalancer: gws[1:]})
		}
		clusters = append(clusters, snap)
	}
	m, diags := model.Build(model.BuildInput{Clusters: clusters, Networks: nets})
	if err := diags.Err(); err != nil {
		t.Fatal(err)
	}
	return m
}

type lbw struct {
	locality string
	addr     string
	weight   uint32
}

func flatten(t *testing.T, m *model.Mesh, network string) []lbw {
	t.Helper()
	cla := LoadAssignment(m, EDSView{Network: network}, m.Service(exampleHost), 80)
	if err := cla.ValidateAll(); err != nil {
		t.Fatal(err)
	}
	var out []lbw
	for _, loc := range cla.Endpoints {
		l := model.Locality{Region: loc.Locality.Region, Zone: loc.Locality.Zone, Subzone: loc.Locality.SubZone}.String()
		for _, lb := range loc.LbEndpoints {
			sa := lb.GetEndpoint().GetAddress().GetSocketAddress()
			out = append(out, lbw{l, netip.AddrPortFrom(netip.MustParseAddr(sa.Address), uint16(sa.GetPortValue())).String(), lb.GetLoadBalancingWeight().GetValue()})
		}
	}
	return out
}

func TestSplitHorizonRules(t *testing.T) {
	east := model.Locality{Region: "us-east", Zone: "a"}
	west := model.Locality{Region: "us-west", Zone: "b", Subzone: "rack1"}
	nets := &model.MeshNetworks{Networks: []*model.NetworkConfig{
		{Name: "n1", Registries: []model.ClusterID{"c1"}},
		{Name: "n2", Registries: []model.ClusterID{"c2"}},
	}}
	tests := []struct {
		name     string
		eps      map[model.ClusterID][]*model.Endpoint
		gateways map[model.ClusterID][]string
		network  string
		want     []lbw
	}{
		{
			name: "no gateways anywhere: every endpoint as is, mTLS or not",
			eps: map[model.ClusterID][]*model.Endpoint{
				"c1": {ep("10.0.0.1", "c1", east, false, 0)},
				"c2": {ep("20.0.0.1", "c2", east, true, 3)},
			},
			network: "n1",
			want:    []lbw{{"us-east/a/", "10.0.0.1:8080", 1}, {"us-east/a/", "20.0.0.1:8080", 3}},
		},
		{
			name: "gateway stands in the locality of each endpoint it replaces",
			eps: map[model.ClusterID][]*model.Endpoint{
				"c1": {ep("10.0.0.1", "c1", east, true, 0)},
				"c2": {ep("20.0.0.1", "c2", east, true, 0), ep("20.0.0.2", "c2", west, true, 0), ep("20.0.0.3", "c2", west, true, 0)},
			},
			gateways: map[model.ClusterID][]string{"c2": {"n2", "2.2.2.2"}},
			network:  "n1",
			want: []lbw{
				{"us-east/a/", "10.0.0.1:8080", 1}, {"us-east/a/", "2.2.2.2:15443", 1},
				{"us-west/b/rack1", "2.2.2.2:15443", 2},
			},
		},
		{
			name: "non-mTLS remote endpoint dropped, mTLS one through the gateway",
			eps: map[model.ClusterID][]*model.Endpoint{
				"c2": {ep("20.0.0.1", "c2", east, false, 0), ep("20.0.0.2", "c2", east, true, 0)},
			},
			gateways: map[model.ClusterID][]string{"c2": {"n2", "2.2.2.2"}},
			network:  "n1",
			want:     []lbw{{"us-east/a/", "2.2.2.2:15443", 1}},
		},
		{
			name: "same network: direct even without mTLS",
			eps: map[model.ClusterID][]*model.Endpoint{
				"c2": {ep("20.0.0.1", "c2", east, false, 0)},
			},
			gateways: map[model.ClusterID][]string{"c2": {"n2", "2.2.2.2"}},
			network:  "n2",
			want:     []lbw{{"us-east/a/", "20.0.0.1:8080", 1}},
		},
		{
			name: "endpoint on no network goes out directly",
			eps: map[model.ClusterID][]*model.Endpoint{
				"c9": {ep("90.0.0.1", "c9", east, false, 0)},
			},
			gateways: map[model.ClusterID][]string{"c2": {"n2", "2.2.2.2"}},
			network:  "n1",
			want:     []lbw{{"us-east/a/", "90.0.0.1:8080", 1}},
		},
		{
			name: "two gateways in one cluster split the weight; S=2",
			eps: map[model.ClusterID][]*model.Endpoint{
				"c2": {ep("20.0.0.1", "c2", east, true, 5)},
			},
			gateways: map[model.ClusterID][]string{"c2": {"n2", "2.2.2.3", "2.2.2.2"}},
			network:  "n1",
			want:     []lbw{{"us-east/a/", "2.2.2.2:15443", 5}, {"us-east/a/", "2.2.2.3:15443", 5}},
		},
		{
			name: "weight times scale is capped at the uint32 maximum",
			eps: map[model.ClusterID][]*model.Endpoint{
				"c1": {ep("10.0.0.1", "c1", east, true, math.MaxUint32)},
			},
			gateways: map[model.ClusterID][]string{"c2": {"n2", "2.2.2.3", "2.2.2.2"}},
			network:  "n1",
			want:     []lbw{{"us-east/a/", "10.0.0.1:8080", math.MaxUint32}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := buildMesh(t, tt.eps, tt.gateways, nets)
			got := flatten(t, m, tt.network)
			if len(got) != len(tt.want) {
				t.Fatalf("got %v, want %v", got, tt.want)
			}
			for i := range got {
				if got[i] != tt.want[i] {
					t.Errorf("[%d] got %v, want %v (all: %v)", i, got[i], tt.want[i], got)
				}
			}
		})
	}
}

func TestClusterName(t *testing.T) {
	name := ClusterName(1080, "svc.ns.svc.cluster.local")
	if name != "outbound|1080||svc.ns.svc.cluster.local" {
		t.Fatalf("ClusterName = %q", name)
	}
	port, host, err := ParseClusterName(name)
	if err != nil || port != 1080 || host != "svc.ns.svc.cluster.local" {
		t.Fatalf("ParseClusterName = %d, %q, %v", port, host, err)
	}
	for _, bad := range []string{"", "outbound|80|svc", "inbound|80||h", "outbound|0||h", "outbound|x||h", "outbound|80|sub|h", "outbound|70000||h"} {
		if _, _, err := ParseClusterName(bad); err == nil {
			t.Errorf("ParseClusterName(%q) succeeded", bad)
		}
	}
}

func TestCDSValid(t *testing.T) {
	m := exampleMesh(t, true)
	cds := CDS(m, Options{})
	if len(cds) == 0 {
		t.Fatal("no clusters")
	}
	for _, c := range cds {
		if err := c.ValidateAll(); err != nil {
			t.Errorf("%s: %v", c.Name, err)
		}
	}
	var names []string
	for _, c := range cds {
		names = append(names, c.Name)
	}
	if want := "PassthroughCluster outbound|15443||gw.istio-system.svc.cluster.local outbound|80||example.ns.svc.cluster.local"; strings.Join(names, " ") != want {
		t.Errorf("clusters: %v", names)
	}
	example := cds[2]
	if len(example.TransportSocketMatches) != 2 {
		t.Fatalf("transport socket matches: %v", example.TransportSocketMatches)
	}
}
