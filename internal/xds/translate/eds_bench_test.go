package translate

import (
	"fmt"
	"net/netip"
	"testing"

	"github.com/horizonmesh/horizon/internal/model"
)

// benchMesh is one service with n endpoints spread over 3 networks (one
// cluster each, 4 localities per cluster), every network with gateways: one,
// two and three, so S = 6.
func benchMesh(b *testing.B, n int) *model.Mesh {
	b.Helper()
	var clusters []*model.ClusterSnapshot
	var nets model.MeshNetworks
	for c := 0; c < 3; c++ {
		id := model.ClusterID(fmt.Sprintf("cluster%d", c))
		network := fmt.Sprintf("network%d", c)
		nets.Networks = append(nets.Networks, &model.NetworkConfig{Name: network, Registries: []model.ClusterID{id}})
		svc := &model.ClusterService{Name: "big", Namespace: "ns", Ports: []model.ServicePort{{Name: "http", Port: 80}},
			Endpoints: map[uint32][]*model.Endpoint{}}
		for i := c; i < n; i += 3 {
			svc.Endpoints[80] = append(svc.Endpoints[80], &model.Endpoint{
				Address:  netip.AddrFrom4([4]byte{10, byte(c), byte(i >> 8), byte(i)}),
				Port:     8080,
				Locality: model.Locality{Region: "r", Zone: fmt.Sprintf("z%d", i%4)},
				MTLS:     i%10 != 0,
			})
		}
		gw := &model.ClusterService{Name: "gw", Namespace: "istio-system", Labels: map[string]string{model.NetworkLabel: network},
			Ports: []model.ServicePort{{Port: 15443}}}
		for g := 0; g <= c; g++ {
			gw.LoadBalancer = append(gw.LoadBalancer, fmt.Sprintf("203.0.113.%d", 10*c+g+1))
		}
		clusters = append(clusters, &model.ClusterSnapshot{ID: id, Services: []*model.ClusterService{svc, gw}})
	}
	m, diags := model.Build(model.BuildInput{Clusters: clusters, Networks: &nets})
	if err := diags.Err(); err != nil {
		b.Fatal(err)
	}
	return m
}

// BenchmarkLoadAssignment10k builds the EDS of a 10,000-endpoint service for
// a proxy on network0: a third direct, the rest folded into gateways.
func BenchmarkLoadAssignment10k(b *testing.B) {
	const n = 10000
	m := benchMesh(b, n)
	svc := m.Service("big.ns.svc.cluster.local")
	if got := len(svc.Endpoints[80]); got != n {
		b.Fatalf("endpoints = %d", got)
	}
	for _, network := range []string{"network0", ""} {
		b.Run("view="+network, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				LoadAssignment(m, EDSView{Network: network}, svc, 80)
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/n, "ns/endpoint")
		})
	}
}

// BenchmarkBuild10k measures assembling the model itself (merging clusters,
// resolving networks and gateways) for the same service.
func BenchmarkBuild10k(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		benchMesh(b, 10000)
	}
}
